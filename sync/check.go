package sync

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/ferrysync/ferry/fetch"
)

// What can be wrong with a published revision on disk, from the mildest.
var (
	// ErrLinkGone: ROOT/NAME is missing or points elsewhere; the tree is
	// there, and is linked again without a fetch.
	ErrLinkGone = errors.New("link missing or moved")
	// ErrLinkTaken: something that is not ferry's link sits at ROOT/NAME.
	// ferry never replaces what it did not make: retrying cannot help.
	ErrLinkTaken = errors.New("not ferry's link")
	// ErrUnverifiable: the manifest is missing or from an older ferry, so
	// there is nothing to check the tree against.
	ErrUnverifiable = errors.New("nothing to check the tree against")
	// ErrTreeDamaged: the tree is missing, replaced, or holds other bytes.
	ErrTreeDamaged = errors.New("tree damaged")

	errLinkMissing = fmt.Errorf("%w: no link", ErrLinkGone)
)

// link reads ROOT/NAME: the revision it shows, or why it does not show
// one of name's revisions. It is ferry's symlink (the symlink publish
// mode) or a directory ferry mirrored (exchange.go), whichever mode
// published it last.
func (s *Store) link(name string) (string, error) {
	if fi, err := os.Lstat(s.LinkPath(name)); err == nil && fi.IsDir() {
		return s.linkExchanged(name)
	}
	return s.symlinked(name)
}

// symlinked reads ROOT/NAME as ferry's symlink.
func (s *Store) symlinked(name string) (string, error) {
	link := s.LinkPath(name)
	fi, err := os.Lstat(link)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("%w: %s is missing", errLinkMissing, link)
	case err != nil:
		return "", fmt.Errorf("link %s: %w", link, err)
	case fi.Mode()&fs.ModeSymlink == 0:
		// readlink(2) would only say "invalid argument".
		return "", fetch.Permanent(fmt.Errorf("%w: %s exists and is not a symlink: ferry owns that name; move it away or name the source differently", ErrLinkTaken, link))
	}
	target, err := os.Readlink(link)
	if err != nil {
		return "", fmt.Errorf("link %s: %w", link, err)
	}
	src, rev, ok := splitTarget(target)
	if !ok || src != name {
		return "", fmt.Errorf("%w: %s points at %q, not at a ferry revision", ErrLinkGone, link, target)
	}
	return rev, nil
}

// treeThere tells whether rev's tree is a real directory.
func (s *Store) treeThere(name, rev string) bool {
	fi, err := os.Lstat(s.revDir(name, rev))
	return err == nil && fi.IsDir()
}

// Current returns the revision ROOT/NAME points at, or "" when there is
// none, or its tree is gone (it is then published afresh). A link that is
// not ferry's, or points at something else, is an error: ferry does not
// take over what it did not make.
func (s *Store) Current(name string) (string, error) {
	rev, err := s.link(name)
	switch {
	case err == nil && s.treeThere(name, rev):
		return rev, nil
	case err == nil, errors.Is(err, errLinkMissing):
		return "", nil
	}
	return "", err
}

// Check tells, with a few lstat and readlink calls and no reading, whether
// what ferry published for name is still in place: ROOT/NAME is ferry's
// link to rev and rev's tree is a real directory. It runs before every
// poll; its error wraps one of the Err variables above.
func (s *Store) Check(name, rev string) error {
	got, err := s.link(name)
	if !s.treeThere(name, rev) {
		return fmt.Errorf("%w: the tree of revision %s is missing", ErrTreeDamaged, rev)
	}
	if err == nil && got != rev {
		err = fmt.Errorf("%w: %s points at revision %s, not %s", ErrLinkGone, s.LinkPath(name), got, rev)
	}
	return err
}

// Relink points ROOT/NAME at rev again, with no fetch: what repairs a
// deleted or moved link whose tree is intact.
func (s *Store) Relink(name, rev string) error { return s.swap(name, rev) }

// Verify compares the published tree of rev, file by file, with what was
// published: the deep check that catches an edit in place. It reads and
// hashes every file, and stops early when ctx is done.
func (s *Store) Verify(ctx context.Context, name, rev string) error {
	m, err := s.readManifest(name, rev)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnverifiable, err)
	}
	// What the app reads, when ROOT/NAME is rev's mirror (exchange mode):
	// its files are the revision's own (hard links), but its names may
	// have been changed on their own. Any other revision, a kept one that
	// a rollback would put back, is read where it is kept.
	tree := s.revDir(name, rev)
	if fi, err := os.Lstat(s.LinkPath(name)); err == nil && fi.IsDir() {
		if shown, err := s.linkExchanged(name); err == nil && shown == rev {
			tree = s.LinkPath(name)
		}
	}
	if err := verifyTree(ctx, tree, m); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %w", ErrTreeDamaged, err)
	}
	return nil
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
