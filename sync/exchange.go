package sync

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ferrysync/ferry/fetch"
)

// PublishMode is how ROOT/NAME shows the current revision.
type PublishMode string

const (
	// PublishSymlink: ROOT/NAME is a relative symlink to .ferry/NAME/REV,
	// renamed over the last one (the default).
	PublishSymlink PublishMode = "symlink"
	// PublishExchange: ROOT/NAME is a real directory, for consumers that
	// cannot follow a symlink. Each revision is mirrored by hard links
	// (its files are read-only and shared with .ferry/NAME/REV, so a
	// mirror costs a link per file and no data) and exchanged with
	// ROOT/NAME by renameat2(RENAME_EXCHANGE): one atomic step.
	PublishExchange PublishMode = "exchange"
)

// The mirrors of exchange mode, in the source's directory:
//
//	ROOT/.ferry/NAME/.mirror-*            a mirror being built, or just swapped out; removed at start
//	ROOT/.ferry/NAME/.retired-RAND-REV    a mirror swapped out, kept for readers still in it
//	                                      while GC keeps REV
//	ROOT/.ferry/NAME/.exchanged           which mirror holds which revision
const (
	mirrorPrefix  = ".mirror-"
	retiredPrefix = ".retired-"
	exchangedFile = ".exchanged"
)

// Validate checks m names a mode.
func (m PublishMode) Validate() error {
	switch m {
	case "", PublishSymlink, PublishExchange:
		return nil
	}
	return fmt.Errorf("publish mode %q: want %s or %s", string(m), PublishSymlink, PublishExchange)
}

// SetPublishMode sets how ROOT/name shows its revision. Exchange mode is
// checked first: where the filesystem cannot exchange two directories it
// is refused, never replaced by something less atomic.
func (s *Store) SetPublishMode(name string, m PublishMode) error {
	if err := m.Validate(); err != nil {
		return err
	}
	if m == PublishExchange {
		if err := s.probeExchange(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.modes == nil {
		s.modes = map[string]PublishMode{}
	}
	s.modes[name] = m
	return nil
}

func (s *Store) exchanges(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.modes[name] == PublishExchange
}

// probeExchange exchanges two empty directories in ROOT/.ferry.
func (s *Store) probeExchange() error {
	a, b := stagePrefix+"probe-a-"+randomSuffix(), stagePrefix+"probe-b-"+randomSuffix()
	for _, n := range []string{a, b} {
		if err := unix.Mkdirat(int(s.meta.Fd()), n, dirPerm); err != nil {
			return fmt.Errorf("probing exchange mode: %w", err)
		}
		defer unix.Unlinkat(int(s.meta.Fd()), n, unix.AT_REMOVEDIR)
	}
	if err := exchangeAt(s.meta, a, b); err != nil {
		return fetch.Permanent(fmt.Errorf("the filesystem of %s cannot exchange two directories atomically (renameat2 RENAME_EXCHANGE: %v): use the symlink publish mode there", s.root, errors.Unwrap(err)))
	}
	return nil
}

// mirrored is one line of .exchanged: the mirror directory, by inode,
// that holds rev.
type mirrored struct {
	rev string
	ino uint64
}

// readExchanged reads which mirrors hold which revisions, newest first.
func (s *Store) readExchanged(name string) ([]mirrored, error) {
	f, err := os.Open(filepath.Join(s.sourceDir(name), exchangedFile))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mirrored
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rev, ino, ok := strings.Cut(sc.Text(), " ")
		n, err := strconv.ParseUint(ino, 10, 64)
		if !ok || err != nil || !validRev(rev) {
			return nil, fmt.Errorf("%s: malformed line %q", exchangedFile, sc.Text())
		}
		out = append(out, mirrored{rev, n})
	}
	return out, sc.Err()
}

// writeExchanged records m as the newest mirror, keeping the line of the
// mirror ROOT/NAME holds now: it is written before the exchange, so
// whichever of the two ROOT/NAME holds after a crash is known. Not simply
// the newest line before: that one may name a mirror whose exchange a
// kill cut short, and after two such kills the mirror really there would
// be forgotten, and ROOT/NAME taken for another's.
func (s *Store) writeExchanged(name string, m mirrored) error {
	lines := []mirrored{m}
	if fi, err := os.Lstat(s.LinkPath(name)); err == nil && fi.IsDir() {
		ino := fi.Sys().(*syscall.Stat_t).Ino
		old, _ := s.readExchanged(name)
		for _, l := range old {
			if l.ino == ino {
				lines = append(lines, l)
				break
			}
		}
	}
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "%s %d\n", l.rev, l.ino)
	}
	dir := s.sourceDir(name)
	tmp := filepath.Join(dir, tmpPrefix+randomSuffix())
	if err := os.WriteFile(tmp, []byte(b.String()), manifestPerm); err != nil {
		return err
	}
	if err := fsyncFile(tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, exchangedFile)); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

// linkExchanged reads ROOT/NAME in exchange mode: the revision its mirror
// holds. ferry's own symlink (left by the symlink mode) is read as such;
// the next publish exchanges it away.
func (s *Store) linkExchanged(name string) (string, error) {
	p := s.LinkPath(name)
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("%w: %s is missing", errLinkMissing, p)
	case err != nil:
		return "", fmt.Errorf("%s: %w", p, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return s.symlinked(name)
	case !fi.IsDir():
		return "", fetch.Permanent(fmt.Errorf("%w: %s exists and is not a symlink or a directory ferry published: ferry owns that name; move it away or name the source differently", ErrLinkTaken, p))
	}
	ino := fi.Sys().(*syscall.Stat_t).Ino
	mirrors, err := s.readExchanged(name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	for _, m := range mirrors {
		if m.ino == ino {
			return m.rev, nil
		}
	}
	return "", fetch.Permanent(fmt.Errorf("%w: %s exists and is not a symlink or a directory ferry published: ferry owns that name; move it away or name the source differently", ErrLinkTaken, p))
}

// swapExchange makes ROOT/NAME a mirror of rev: built by hard links in the
// source's directory, flushed, recorded, then exchanged with what ROOT/NAME
// was (a mirror, or ferry's symlink) in one step. What was swapped out is
// kept as the retired mirror, for a reader still inside it, until the next
// exchange.
func (s *Store) swapExchange(name, rev string) error {
	dir, err := s.openSourceDir(name)
	if err != nil {
		return err
	}
	defer dir.Close()
	out, _ := s.link(name) // what is swapped out, to name its retired mirror
	mirror := mirrorPrefix + randomSuffix()
	ino, err := s.buildMirror(name, rev, mirror)
	if err != nil {
		removeAllAt(dir, mirror)
		return fmt.Errorf("mirror revision %s: %w", rev, err)
	}
	if err := s.writeExchanged(name, mirrored{rev, ino}); err != nil {
		removeAllAt(dir, mirror)
		return fmt.Errorf("record mirror of %s: %w", rev, err)
	}
	root, err := openRealDir(s.root, false)
	if err != nil {
		return err
	}
	defer root.Close()
	return s.exchangeIn(dir, root, name, mirror, out)
}

// exchangeIn puts the entry in (in the source's directory dir) at
// ROOT/name: exchanged with what is there, which is then retired (a
// mirror of revision out, kept for readers still inside it for as long as
// GC keeps out) or removed (a symlink), or renamed there when nothing is.
func (s *Store) exchangeIn(dir, root *os.File, name, in, out string) error {
	swappedOut := in
	err := unix.Renameat2(int(dir.Fd()), in, int(root.Fd()), name, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.ENOENT) { // the first publish: nothing to exchange with
		err = unix.Renameat2(int(dir.Fd()), in, int(root.Fd()), name, unix.RENAME_NOREPLACE)
		swappedOut = ""
	}
	if err != nil {
		removeAllAt(dir, in)
		return fmt.Errorf("exchange %s: %w", s.LinkPath(name), err)
	}
	if err := syncDir(s.root); err != nil {
		return err
	}
	if swappedOut == "" {
		return nil
	}
	if fi, err := os.Lstat(filepath.Join(s.sourceDir(name), swappedOut)); err == nil && !fi.IsDir() {
		return removeAllAt(dir, swappedOut) // ferry's old symlink
	}
	return renameAt(dir, swappedOut, retiredPrefix+randomSuffix()+"-"+out)
}

// retiredRand is the length of the random part of a retired mirror's
// name, with its "-": randomSuffix's 16 hex digits.
const retiredRand = 16 + 1

// retiredRev is the revision a retired mirror's name says it holds, "" for
// none (or one that was not known).
func retiredRev(entry string) string {
	rest, ok := strings.CutPrefix(entry, retiredPrefix)
	if !ok || len(rest) < retiredRand {
		return ""
	}
	return rest[retiredRand:]
}

// swapMirrorForLink puts ferry's symlink, made as link in the source's
// directory, where a mirror of exchange mode is: the source went back to
// the symlink mode.
func (s *Store) swapMirrorForLink(name, link string) error {
	dir, err := s.openSourceDir(name)
	if err != nil {
		return err
	}
	defer dir.Close()
	root, err := openRealDir(s.root, false)
	if err != nil {
		return err
	}
	defer root.Close()
	out, _ := s.link(name)
	return s.exchangeIn(dir, root, name, link, out)
}

// buildMirror creates the directory mirror in the source's directory with
// rev's tree: directories made, files hard-linked, symlinks made again;
// nothing followed, in the tree or in the mirror (beneath.go). It returns
// the mirror's inode.
func (s *Store) buildMirror(name, rev, mirror string) (uint64, error) {
	dir, err := s.openSourceDir(name)
	if err != nil {
		return 0, err
	}
	defer dir.Close()
	dst, err := mkdirAt(dir, mirror)
	if err != nil {
		return 0, err
	}
	defer dst.Close()
	src := s.revDir(name, rev)
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == src {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			return mkdirBeneath(dst, rel)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return symlinkBeneath(link, dst, rel)
		case d.Type().IsRegular():
			return linkBeneath(p, dst, rel, nil)
		}
		return fmt.Errorf("%s: not a file, directory or symlink", p)
	})
	if err != nil {
		return 0, err
	}
	if err := syncFS(dst.Name()); errors.Is(err, unix.ENOSYS) {
		unix.Sync() // a kernel without syncfs: flush everything
	} else if err != nil {
		return 0, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(dst.Fd()), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}
