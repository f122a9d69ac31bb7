package sync

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"

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
//	ROOT/.ferry/.generations/     the generation link's sets (generation.go)
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
	modes     map[string]PublishMode    // by source; symlink when absent
	bySource  map[string]fetch.Limits   // by source; the Store's limits when absent
	genLink   string                    // the generation link's name, or ""
	gen       Generation                // what it points at: GC keeps these revisions
	genMu     gosync.Mutex              // held by GC and by a generation's swap
}

// setLimits gives source name limits of its own; a zero field keeps the
// Store's.
func (s *Store) setLimits(name string, l fetch.Limits) {
	l = fetch.Limits{
		MaxBytes:    cmp.Or(l.MaxBytes, s.limits.MaxBytes),
		MaxFiles:    cmp.Or(l.MaxFiles, s.limits.MaxFiles),
		MaxFileSize: cmp.Or(l.MaxFileSize, s.limits.MaxFileSize),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bySource == nil {
		s.bySource = map[string]fetch.Limits{}
	}
	s.bySource[name] = l
}

// limitsOf returns the limits of source name.
func (s *Store) limitsOf(name string) fetch.Limits {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.bySource[name]; ok {
		return l
	}
	return s.limits
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

// mkdir creates a directory readable by all, whatever the umask: the app
// reading the tree may run as another user.
func mkdir(p string) error {
	if err := os.Mkdir(p, dirPerm); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return err
	}
	return os.Chmod(p, dirPerm)
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
		errs = append(errs, removeMatching(dir, stagePrefix, linkPrefix, mirrorPrefix, tmpPrefix))
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

// makeSourceDir opens ROOT/.ferry/NAME as openSourceDir does, creating it
// first when it is missing.
func (s *Store) makeSourceDir(name string) (*os.File, error) {
	dir, err := s.openSourceDir(name)
	if errors.Is(err, fs.ErrNotExist) {
		dir, err = mkdirAt(s.meta, name)
		if errors.Is(err, fs.ErrExist) { // made meanwhile
			dir, err = s.openSourceDir(name)
		}
	}
	return dir, err
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

// Begin starts a staging area for the next revision of source name. prev is
// the published revision whose unchanged files may be reused.
func (s *Store) Begin(name, prev string) *Stage {
	return s.begin(name, prev, nil)
}

func (s *Store) begin(name, prev string, log *slog.Logger) *Stage {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Stage{store: s, name: name, prev: prev, prevDir: s.revDir(name, prev), limits: s.limitsOf(name), log: log, async: newAsync()}
}

// swap points ROOT/NAME at rev: a new link under a random name, renamed over
// the old one, then the root fsynced so the swap survives a power cut.
func (s *Store) swap(name, rev string) error {
	if s.exchanges(name) {
		return s.swapExchange(name, rev)
	}
	link := s.LinkPath(name)
	mirror := false
	if fi, err := os.Lstat(link); err == nil && fi.Mode()&os.ModeSymlink == 0 {
		if _, err := s.linkExchanged(name); !fi.IsDir() || err != nil {
			// Someone else's file or directory: retrying will not move it.
			return fetch.Permanent(fmt.Errorf("%s exists and is not a symlink; refusing to replace it", link))
		}
		mirror = true // published in exchange mode: exchanged for the link below
	}
	tmp := filepath.Join(s.sourceDir(name), linkPrefix+randomSuffix())
	target := metaDir + "/" + name + "/" + rev
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("create link: %w", err)
	}
	if mirror {
		return s.swapMirrorForLink(name, filepath.Base(tmp))
	}
	return s.renameLink(tmp, link)
}

// renameLink renames the new link tmp over link, atomically, and fsyncs
// the root so the swap survives a power cut; tmp goes on failure.
func (s *Store) renameLink(tmp, link string) error {
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("swap link %s: %w", link, err)
	}
	return syncDir(s.root)
}

func randomSuffix() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}
