package sync

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

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
