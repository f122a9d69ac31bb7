package sync

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/ferrysync/ferry/fetch"
)

// The layout under the root. Everything but the per-source links lives in
// metaDir, so staging shares the root's filesystem and rename(2) is atomic.
//
//	ROOT/NAME                     -> .ferry/NAME/REV (relative symlink)
//	ROOT/.ferry/NAME/REV/         one immutable tree per published revision
//	ROOT/.ferry/NAME/.meta/REV    the revision's manifest, for reuse
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
	dirPerm      = 0o755
	manifestPerm = 0o644
)

var (
	validName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	validRev  = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$`)
)

// ValidName reports whether name may name a source: it becomes a link in
// the root and a directory under ROOT/.ferry.
func ValidName(name string) bool {
	return validName.MatchString(name) && name != "." && name != ".." && name != metaDir
}

// Store publishes revisions under one root directory.
type Store struct {
	root   string
	limits fetch.Limits
}

// OpenStore prepares root for publishing: it creates ROOT/.ferry and removes
// staging directories and temporary links left by a process that was killed.
func OpenStore(root string, limits fetch.Limits) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("root %s: %w", root, err)
	}
	s := &Store{root: abs, limits: limits.WithDefaults()}
	if err := os.MkdirAll(abs, dirPerm); err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	if err := mkdir(filepath.Join(abs, metaDir)); err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	if err := s.clean(); err != nil {
		return nil, err
	}
	return s, nil
}

// Root returns the absolute root directory.
func (s *Store) Root() string { return s.root }

// clean removes what a killed process may have left: staging directories
// and temporary links. Published revisions are never touched.
func (s *Store) clean() error {
	leftovers := []string{
		filepath.Join("*", stagePrefix+"*"),
		filepath.Join("*", linkPrefix+"*"),
		filepath.Join("*", manifestDir, tmpPrefix+"*"),
	}
	for _, pattern := range leftovers {
		matches, err := filepath.Glob(filepath.Join(s.root, metaDir, pattern))
		if err != nil {
			return err
		}
		for _, m := range matches {
			if err := os.RemoveAll(m); err != nil {
				return fmt.Errorf("remove leftover %s: %w", m, err)
			}
		}
	}
	return nil
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

// Current returns the revision ROOT/NAME points at, or "" when there is none.
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
	prefix := metaDir + "/" + name + "/"
	rev, ok := strings.CutPrefix(target, prefix)
	if !ok || !validRev.MatchString(rev) {
		return "", fmt.Errorf("link %s points at %q, not at a ferry revision", s.LinkPath(name), target)
	}
	if _, err := os.Stat(s.revDir(name, rev)); err != nil {
		// The revision vanished (removed by hand): publish afresh.
		return "", nil
	}
	return rev, nil
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
	return &Stage{store: s, name: name, prev: prev}
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
// time. The current revision is never removed.
func (s *Store) GC(name string, keep int) error {
	if keep < 1 {
		keep = 1
	}
	current, err := s.Current(name)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(s.sourceDir(name))
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
		// a kill must never leave a partial tree under a revision's name,
		// where a later publish of the same revision would reuse it. The
		// stage prefix makes the next start remove what is left.
		doomed := filepath.Join(s.sourceDir(name), stagePrefix+"gc-"+randomSuffix())
		if err := os.Rename(s.revDir(name, r.rev), doomed); err != nil {
			errs = append(errs, fmt.Errorf("gc %s: %w", r.rev, err))
			continue
		}
		os.Remove(s.manifestPath(name, r.rev))
		if err := os.RemoveAll(doomed); err != nil {
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

// syncDir fsyncs a directory so that entries created or renamed in it are
// durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
