package sync

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	gosync "sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferrysync/ferry/fetch"
)

// The layout under the root. Everything but the per-source links lives in
// metaDir, so staging shares the root's filesystem and rename(2) is atomic.
//
//	ROOT/NAME                     -> .ferry/NAME/REV (relative symlink)
//	ROOT/.ferry/lock              held by the one ferry publishing here
//	ROOT/.ferry/NAME/REV/         one immutable tree per published revision
//	ROOT/.ferry/NAME/.meta/REV    the revision's manifest, for reuse and checks
//	ROOT/.ferry/NAME/.state/      private to the source (object store, validators)
//	ROOT/.ferry/NAME/.stage-*     staging, removed at start
//	ROOT/.ferry/NAME/.link-*      temporary links, removed at start
const (
	metaDir      = ".ferry"
	manifestDir  = ".meta"
	stateDir     = ".state"
	stagePrefix  = ".stage-"
	linkPrefix   = ".link-"
	tmpPrefix    = ".tmp-"
	manifestPerm = 0o644
)

// Store publishes revisions under one root directory. It holds the root's
// lock until Close.
type Store struct {
	root   string
	limits fetch.Limits
	meta   *os.File // ROOT/.ferry, opened without following a symlink
	lock   *os.File

	mu        gosync.Mutex
	manifests map[string]cachedManifest // by source: the last one written
}

// OpenStore prepares root for publishing: it creates ROOT/.ferry, takes the
// root's lock (ErrLocked when another ferry holds it), and removes staging
// directories and temporary links left by a process that was killed.
// ROOT/.ferry must be a real directory: ferry removes old revisions there,
// and a symlink would point that removal elsewhere.
func OpenStore(root string, limits fetch.Limits) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("root %s: %w", root, err)
	}
	if _, err := os.Stat(abs); errors.Is(err, fs.ErrNotExist) {
		// A root ferry creates is readable by the app whatever the umask;
		// one that exists is the user's, and left as it is.
		if err := os.MkdirAll(abs, dirPerm); err != nil {
			return nil, fmt.Errorf("root: %w", err)
		}
		if err := os.Chmod(abs, dirPerm); err != nil {
			return nil, fmt.Errorf("root: %w", err)
		}
	}
	s := &Store{root: abs, limits: limits.WithDefaults()}
	if s.meta, err = openRealDir(filepath.Join(abs, metaDir), true); err != nil {
		return nil, err
	}
	// Made by hand or by an older ferry, it may be narrower than the app,
	// running as another user, needs to reach the revisions.
	if err := s.meta.Chmod(dirPerm); err != nil {
		s.meta.Close()
		return nil, fmt.Errorf("%s: %w", s.meta.Name(), err)
	}
	if s.lock, err = lock(s.meta, abs); err != nil {
		s.meta.Close()
		return nil, err
	}
	if err := s.clean(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the root's lock.
func (s *Store) Close() error {
	var err error
	if s.lock != nil {
		err = s.lock.Close()
		s.lock = nil
	}
	if s.meta != nil {
		s.meta.Close()
		s.meta = nil
	}
	return err
}

// openRealDir opens p, which must be a real directory (never a symlink),
// creating it first when create is set, with the published directory mode.
func openRealDir(p string, create bool) (*os.File, error) {
	if create {
		if err := mkdir(p); err != nil {
			return nil, fmt.Errorf("create %s: %w", p, err)
		}
	}
	f, err := openDirNoFollow(p)
	if err == nil {
		return f, nil
	}
	if fi, lerr := os.Lstat(p); lerr == nil {
		if fi.Mode()&fs.ModeSymlink != 0 {
			return nil, fmt.Errorf("%s is a symlink: ferry keeps revisions there and removes old ones, so it must be a real directory; remove the link", p)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("%s exists and is not a directory: ferry needs that name for its revisions; move it away", p)
		}
	}
	return nil, err
}

// Root returns the absolute root directory.
func (s *Store) Root() string { return s.root }

// clean removes what a killed process may have left: staging directories
// and temporary links, and temporary manifests. Published revisions are
// never touched.
func (s *Store) clean() error {
	names, err := readDirNames(s.meta)
	if err != nil {
		return fmt.Errorf("clean %s: %w", filepath.Join(s.root, metaDir), err)
	}
	var errs []error
	for _, name := range names {
		dir, err := openDirAt(s.meta, name)
		if err != nil {
			continue // the lock file, or anything else that is not a source
		}
		errs = append(errs, removeMatching(dir, stagePrefix, linkPrefix))
		if meta, err := openDirAt(dir, manifestDir); err == nil {
			errs = append(errs, removeMatching(meta, tmpPrefix))
			meta.Close()
		}
		dir.Close()
	}
	return errors.Join(errs...)
}

// removeMatching removes the entries of dir whose names start with one of
// the prefixes.
func removeMatching(dir *os.File, prefixes ...string) error {
	names, err := readDirNames(dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		for _, p := range prefixes {
			if strings.HasPrefix(n, p) {
				if err := removeAllAt(dir, n); err != nil {
					return fmt.Errorf("remove leftover %s: %w", filepath.Join(dir.Name(), n), err)
				}
				break
			}
		}
	}
	return nil
}

func readDirNames(dir *os.File) ([]string, error) {
	if _, err := dir.Seek(0, 0); err != nil {
		return nil, err
	}
	return dir.Readdirnames(-1)
}

// Prepare readies the root for exactly these sources, before the first
// sync: each gets ROOT/.ferry/NAME as a real, world-traversable directory
// (its .state and .meta must not be symlinks either), and what belongs to
// a source no longer configured (its link in ROOT and its revisions) is
// removed, with one line each. Nothing else in ROOT is touched.
func (s *Store) Prepare(names []string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	configured := make(map[string]bool, len(names))
	var errs []error
	for _, name := range names {
		configured[name] = true
		errs = append(errs, s.prepareSource(name))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return s.prune(configured, log)
}

func (s *Store) prepareSource(name string) error {
	p := s.sourceDir(name)
	dir, err := openRealDir(p, true)
	if err != nil {
		return err
	}
	defer dir.Close()
	// A directory made by an older ferry, or by hand, may be narrower: the
	// app reading ROOT/NAME as another user must be able to traverse it.
	if err := dir.Chmod(dirPerm); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	for _, sub := range []string{stateDir, manifestDir} {
		fi, err := os.Lstat(filepath.Join(p, sub))
		if err == nil && !fi.IsDir() {
			return fmt.Errorf("%s is not a directory (a symlink?): ferry writes and removes there; remove it", filepath.Join(p, sub))
		}
	}
	return nil
}

// prune removes the links and trees of sources that are not configured.
func (s *Store) prune(configured map[string]bool, log *slog.Logger) error {
	rootDir, err := os.Open(s.root)
	if err != nil {
		return err
	}
	defer rootDir.Close()
	names, err := rootDir.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read %s: %w", s.root, err)
	}
	var errs []error
	for _, n := range names {
		target, err := os.Readlink(filepath.Join(s.root, n))
		if err != nil {
			continue // not a link: not ours
		}
		src, rev, ok := splitTarget(target)
		if !ok || configured[src] || src != n && configured[n] {
			continue
		}
		if err := unix.Unlinkat(int(rootDir.Fd()), n, 0); err != nil {
			errs = append(errs, fmt.Errorf("remove link %s: %w", filepath.Join(s.root, n), err))
			continue
		}
		log.Info("removed the link of a source no longer configured", "link", filepath.Join(s.root, n), "revision", rev)
	}
	dirs, err := readDirNames(s.meta)
	if err != nil {
		return err
	}
	for _, n := range dirs {
		if configured[n] || !ValidName(n) {
			continue
		}
		if fi, err := os.Lstat(filepath.Join(s.root, metaDir, n)); err != nil || !fi.IsDir() {
			continue
		}
		if err := removeAllAt(s.meta, n); err != nil {
			errs = append(errs, fmt.Errorf("remove revisions of %s: %w", n, err))
			continue
		}
		log.Info("removed the revisions of a source no longer configured", "source", n)
	}
	return errors.Join(errs...)
}

// splitTarget reads a link target ferry wrote: .ferry/NAME/REV.
func splitTarget(target string) (name, rev string, ok bool) {
	rest, ok := strings.CutPrefix(target, metaDir+"/")
	if !ok {
		return "", "", false
	}
	name, rev, ok = strings.Cut(rest, "/")
	if !ok || !ValidName(name) || !validRev.MatchString(rev) {
		return "", "", false
	}
	return name, rev, true
}

// LinkPath returns ROOT/NAME, the path applications read.
func (s *Store) LinkPath(name string) string { return filepath.Join(s.root, name) }

// StateDir returns the directory private to source name under root. It is
// not created: a source that keeps state creates it when it first writes.
func StateDir(root, name string) string {
	return filepath.Join(root, metaDir, name, stateDir)
}

func (s *Store) sourceDir(name string) string { return filepath.Join(s.root, metaDir, name) }

func (s *Store) revDir(name, rev string) string { return filepath.Join(s.sourceDir(name), rev) }

// openSourceDir opens ROOT/.ferry/NAME from the root's descriptor, refusing
// a symlink.
func (s *Store) openSourceDir(name string) (*os.File, error) {
	return openDirAt(s.meta, name)
}

// removeSourceEntry removes one entry of the source's directory (a staging
// tree, a doomed revision) without following any symlink.
func (s *Store) removeSourceEntry(name, entry string) error {
	dir, err := s.openSourceDir(name)
	if err != nil {
		return err
	}
	defer dir.Close()
	return removeAllAt(dir, entry)
}

// Current returns the revision ROOT/NAME points at, or "" when there is none
// (or its tree is gone: it is then published afresh).
func (s *Store) Current(name string) (string, error) {
	link := s.LinkPath(name)
	fi, err := os.Lstat(link)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("link %s: %w", link, err)
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		// readlink(2) would only say "invalid argument".
		return "", fmt.Errorf("%s exists and is not a symlink: ferry owns that name; move it away or name the source differently", link)
	}
	target, err := os.Readlink(link)
	if err != nil {
		return "", fmt.Errorf("read link %s: %w", link, err)
	}
	src, rev, ok := splitTarget(target)
	if !ok || src != name {
		return "", fmt.Errorf("link %s points at %q, not at a ferry revision", link, target)
	}
	if fi, err := os.Lstat(s.revDir(name, rev)); err != nil || !fi.IsDir() {
		return "", nil
	}
	return rev, nil
}

// Check tells whether what ferry published for name is still in place:
// ROOT/NAME is ferry's symlink to rev, and rev's tree is a real directory.
// It costs a few lstat and readlink calls, no hashing, and runs before
// every poll so that a deleted or replaced link or tree is repaired.
func (s *Store) Check(name, rev string) error {
	link := s.LinkPath(name)
	fi, err := os.Lstat(link)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("link %s is missing", link)
	case err != nil:
		return fmt.Errorf("link %s: %w", link, err)
	case fi.Mode()&fs.ModeSymlink == 0:
		return fmt.Errorf("%s was replaced by something that is not ferry's link", link)
	}
	target, err := os.Readlink(link)
	if err != nil {
		return fmt.Errorf("link %s: %w", link, err)
	}
	if want := metaDir + "/" + name + "/" + rev; target != want {
		return fmt.Errorf("link %s points at %q, not at %q", link, target, want)
	}
	if fi, err := os.Lstat(s.revDir(name, rev)); err != nil || !fi.IsDir() {
		return fmt.Errorf("the tree of revision %s is missing", rev)
	}
	return nil
}

// Verify compares the published tree of rev, file by file, with what was
// published: the deep check that catches an edit in place. It reads and
// hashes every file.
func (s *Store) Verify(name, rev string) error {
	m, err := s.readManifest(name, rev)
	if err != nil {
		return err
	}
	return verifyTree(s.revDir(name, rev), m)
}

// publishedAt returns when rev was published (Publish stamps the
// directory), for a revision found at start.
func (s *Store) publishedAt(name, rev string) time.Time {
	fi, err := os.Stat(s.revDir(name, rev))
	if err != nil {
		return time.Now()
	}
	return fi.ModTime()
}

// Begin starts a staging area for the next revision of source name. prev is
// the published revision whose unchanged files may be reused.
func (s *Store) Begin(name, prev string) *Stage {
	return s.begin(name, prev, nil)
}

func (s *Store) begin(name, prev string, log *slog.Logger) *Stage {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Stage{store: s, name: name, prev: prev, log: log}
}

// swap points ROOT/NAME at rev: a new link under a random name, renamed over
// the old one, then the root fsynced so the swap survives a power cut.
func (s *Store) swap(name, rev string) error {
	link := s.LinkPath(name)
	if fi, err := os.Lstat(link); err == nil && fi.Mode()&os.ModeSymlink == 0 {
		// Someone else's file or directory: retrying will not move it.
		return fetch.Permanent(fmt.Errorf("%s exists and is not a symlink; refusing to replace it", link))
	}
	tmp := filepath.Join(s.sourceDir(name), linkPrefix+randomSuffix())
	target := metaDir + "/" + name + "/" + rev
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("create link: %w", err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("swap link %s: %w", link, err)
	}
	return syncDir(s.root)
}

// GC removes the oldest revisions of source name beyond keep, by publish
// time. The current revision is never removed, and nothing is followed
// through a symlink: only real directories under ROOT/.ferry/NAME count.
func (s *Store) GC(name string, keep int) error {
	if keep < 1 {
		keep = 1
	}
	current, err := s.Current(name)
	if err != nil {
		return err
	}
	dir, err := s.openSourceDir(name)
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	defer dir.Close()
	entries, err := dir.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	type revInfo struct {
		rev string
		mod time.Time
	}
	var revs []revInfo
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") || e.Name() == current {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		revs = append(revs, revInfo{e.Name(), info.ModTime()})
	}
	sort.Slice(revs, func(i, j int) bool { return revs[i].mod.After(revs[j].mod) })
	keepOthers := keep - 1
	if current == "" {
		keepOthers = keep
	}
	var errs []error
	for i, r := range revs {
		if i < keepOthers {
			continue
		}
		// Renamed out of the way first, atomically: a removal cut short by
		// a kill must never leave a partial tree under a revision's name.
		// The stage prefix makes the next start remove what is left.
		doomed := stagePrefix + "gc-" + randomSuffix()
		if err := renameAt(dir, r.rev, doomed); err != nil {
			errs = append(errs, fmt.Errorf("gc %s: %w", r.rev, err))
			continue
		}
		os.Remove(s.manifestPath(name, r.rev))
		if err := removeAllAt(dir, doomed); err != nil {
			errs = append(errs, fmt.Errorf("gc %s: %w", r.rev, err))
		}
	}
	return errors.Join(errs...)
}

func randomSuffix() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}
