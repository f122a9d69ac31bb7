package sync

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Removal never follows a symlink it did not create. Everything ferry
// deletes (staging, old revisions, the trees of removed sources) is reached
// from a directory descriptor, one component at a time, each opened with
// O_NOFOLLOW: a symlink planted anywhere under ROOT/.ferry (by hand, by a
// compromised app) is removed as a link, and what it points at is never
// touched, even if it is swapped in while the removal runs.

// openDirAt opens the directory name inside dir without following a
// symlink at name. A symlink there fails with ENOTDIR or ELOOP.
func openDirAt(dir *os.File, name string) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir.Name(), name)), nil
}

// mkdirAt creates the directory name inside dir, readable by every user
// whatever the umask (the app may run as another), and returns it open.
// An entry already there is an error: whoever put it there is not ferry,
// and it is never used, nor followed.
func mkdirAt(dir *os.File, name string) (*os.File, error) {
	if err := unix.Mkdirat(int(dir.Fd()), name, dirPerm); err != nil {
		return nil, &os.PathError{Op: "mkdir", Path: filepath.Join(dir.Name(), name), Err: err}
	}
	sub, err := openDirAt(dir, name)
	if err != nil {
		return nil, err
	}
	if err := sub.Chmod(dirPerm); err != nil {
		sub.Close()
		return nil, err
	}
	return sub, nil
}

// openDirNoFollow opens path as a directory, refusing a symlink at its last
// component; the components before it are the user's (ROOT may well be a
// symlink) and are followed.
func openDirNoFollow(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// removeAllAt removes name inside dir and, when it is a directory, all it
// holds, never following a symlink. A missing name is not an error.
func removeAllAt(dir *os.File, name string) error {
	err := unix.Unlinkat(int(dir.Fd()), name, 0)
	switch {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM):
		return &os.PathError{Op: "unlink", Path: name, Err: err}
	}
	sub, err := openDirAt(dir, name)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	err = removeChildren(sub)
	sub.Close()
	if err != nil {
		return fmt.Errorf("%s/%w", name, err)
	}
	if err := unix.Unlinkat(int(dir.Fd()), name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "rmdir", Path: name, Err: err}
	}
	return nil
}

// removeChildren empties dir, in batches so a huge directory never sits in
// memory whole.
func removeChildren(dir *os.File) error {
	for {
		names, err := dir.Readdirnames(256)
		for _, n := range names {
			if err := removeAllAt(dir, n); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) || (err == nil && len(names) == 0) {
			return nil
		}
		if err != nil {
			return err
		}
		// Entries were removed under the open directory: start over from
		// its beginning rather than trust the offset.
		if _, err := dir.Seek(0, io.SeekStart); err != nil {
			return err
		}
	}
}

// renameAt renames old to new, both inside dir.
func renameAt(dir *os.File, oldName, newName string) error {
	if err := unix.Renameat(int(dir.Fd()), oldName, int(dir.Fd()), newName); err != nil {
		return &os.LinkError{Op: "rename", Old: oldName, New: newName, Err: err}
	}
	return nil
}

// exchangeAt swaps the entries a and b inside dir in one atomic step
// (renameat2 RENAME_EXCHANGE). It fails with EINVAL or ENOSYS where the
// filesystem or kernel cannot.
func exchangeAt(dir *os.File, a, b string) error {
	if err := unix.Renameat2(int(dir.Fd()), a, int(dir.Fd()), b, unix.RENAME_EXCHANGE); err != nil {
		return &os.LinkError{Op: "exchange", Old: a, New: b, Err: err}
	}
	return nil
}
