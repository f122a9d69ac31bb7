package sync

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// A revision is staged in a directory ferry creates under ROOT/.ferry/NAME,
// where another writer of the volume could plant a symlink while the fetch
// runs: the names of the directories a source will create are the
// origin's, and can be guessed. Every path inside the staging directory is
// therefore resolved from its open descriptor, following no symlink:
// openat2 with RESOLVE_NO_SYMLINKS|RESOLVE_BENEATH (Linux 5.6) in one
// call, else one openat(O_NOFOLLOW) per directory on the way. What is
// created is created with O_EXCL or mkdirat, so an entry already there
// (which ferry did not make) is refused rather than used.

// errInTheWay is an entry of a staging directory that ferry did not make:
// a symlink on a path, or a name already taken.
var errInTheWay = errors.New("an entry ferry did not make is in the way (another writer of this volume?)")

// noOpenat2 is set once openat2 is found missing (an older kernel, or a
// seccomp profile that refuses it): the slower walk is used from then on.
var noOpenat2 atomic.Bool

const resolveBeneath = unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_BENEATH

// openBeneath opens rel, a clean slash path, inside dir.
func openBeneath(dir *os.File, rel string, flags int, perm uint32) (int, error) {
	if !noOpenat2.Load() {
		how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Mode: uint64(perm), Resolve: resolveBeneath}
		fd, err := unix.Openat2(int(dir.Fd()), rel, &how)
		if err != unix.ENOSYS && err != unix.EPERM {
			return fd, inTheWay(dir, rel, err)
		}
		noOpenat2.Store(true)
	}
	parent, base, err := parentBeneath(dir, rel)
	if err != nil {
		return -1, err
	}
	defer parent.close()
	fd, err := unix.Openat(parent.fd, base, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	return fd, inTheWay(dir, rel, err)
}

// dirFD is a directory's descriptor, closed by close unless it is
// borrowed (the staging directory's own).
type dirFD struct {
	fd       int
	borrowed bool
}

func (d dirFD) close() {
	if !d.borrowed {
		unix.Close(d.fd)
	}
}

// parentBeneath opens the directory that holds rel, and returns it with
// rel's last element.
func parentBeneath(dir *os.File, rel string) (dirFD, string, error) {
	parent, base := path.Split(rel)
	parent = strings.TrimSuffix(parent, "/")
	if parent == "" {
		return dirFD{fd: int(dir.Fd()), borrowed: true}, base, nil
	}
	const flags = unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC
	if !noOpenat2.Load() {
		fd, err := unix.Openat2(int(dir.Fd()), parent, &unix.OpenHow{Flags: flags, Resolve: resolveBeneath})
		if err != unix.ENOSYS && err != unix.EPERM {
			return dirFD{fd: fd}, base, inTheWay(dir, parent, err)
		}
		noOpenat2.Store(true)
	}
	cur := dirFD{fd: int(dir.Fd()), borrowed: true}
	for elem := range strings.SplitSeq(parent, "/") {
		fd, err := unix.Openat(cur.fd, elem, flags|unix.O_NOFOLLOW, 0)
		cur.close()
		if err != nil {
			return dirFD{}, "", inTheWay(dir, parent, err)
		}
		cur = dirFD{fd: fd}
	}
	return cur, base, nil
}

// inTheWay words a failure to resolve or create rel in dir: a symlink on
// the way (ELOOP, or ENOTDIR where O_DIRECTORY met one), an escape
// (EXDEV), or a name taken (EEXIST) is errInTheWay.
func inTheWay(dir *os.File, rel string, err error) error {
	if err == nil {
		return nil
	}
	p := filepath.Join(dir.Name(), filepath.FromSlash(rel))
	switch {
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.EXDEV), errors.Is(err, unix.EEXIST), errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%s: %w", p, errInTheWay)
	}
	return &os.PathError{Op: "open", Path: p, Err: err}
}

// createBeneath creates the file rel inside dir, open for writing, with
// mode (the umask permitting).
func createBeneath(dir *os.File, rel string, mode fs.FileMode) (*newFile, error) {
	fd, err := openBeneath(dir, rel, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, uint32(mode.Perm()))
	if err != nil {
		return nil, err
	}
	return &newFile{fd: fd, path: filepath.Join(dir.Name(), filepath.FromSlash(rel))}, nil
}

// mkdirBeneath creates the directory rel inside dir, readable by every
// user whatever the umask.
func mkdirBeneath(dir *os.File, rel string) error {
	parent, base, err := parentBeneath(dir, rel)
	if err != nil {
		return err
	}
	defer parent.close()
	if err := unix.Mkdirat(parent.fd, base, dirPerm); err != nil {
		return inTheWay(dir, rel, err)
	}
	fd, err := unix.Openat(parent.fd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return inTheWay(dir, rel, err)
	}
	defer unix.Close(fd)
	return fchmod(fd, dirPerm, filepath.Join(dir.Name(), filepath.FromSlash(rel)))
}

func fchmod(fd int, perm uint32, name string) error {
	if err := unix.Fchmod(fd, perm); err != nil {
		return &os.PathError{Op: "chmod", Path: name, Err: err}
	}
	return nil
}

// linkBeneath hard-links the file src (a path outside dir, checked by the
// caller) as rel inside dir, and, when st is not nil, reads the state of
// the new link into it.
func linkBeneath(src string, dir *os.File, rel string, st *unix.Stat_t) error {
	parent, base, err := parentBeneath(dir, rel)
	if err != nil {
		return err
	}
	defer parent.close()
	if err := unix.Linkat(unix.AT_FDCWD, src, parent.fd, base, 0); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return inTheWay(dir, rel, err)
		}
		return &os.LinkError{Op: "link", Old: src, New: filepath.Join(dir.Name(), filepath.FromSlash(rel)), Err: err}
	}
	if st == nil {
		return nil
	}
	if err := unix.Fstatat(parent.fd, base, st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "lstat", Path: filepath.Join(dir.Name(), filepath.FromSlash(rel)), Err: err}
	}
	return nil
}

// symlinkBeneath creates the symlink rel inside dir, pointing at target.
func symlinkBeneath(target string, dir *os.File, rel string) error {
	parent, base, err := parentBeneath(dir, rel)
	if err != nil {
		return err
	}
	defer parent.close()
	if err := unix.Symlinkat(target, parent.fd, base); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return inTheWay(dir, rel, err)
		}
		return &os.LinkError{Op: "symlink", Old: target, New: filepath.Join(dir.Name(), filepath.FromSlash(rel)), Err: err}
	}
	return nil
}

// removeBeneath removes the file rel inside dir, if it is there.
func removeBeneath(dir *os.File, rel string) {
	if parent, base, err := parentBeneath(dir, rel); err == nil {
		unix.Unlinkat(parent.fd, base, 0)
		parent.close()
	}
}
