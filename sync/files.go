package sync

import (
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// A first publish of a large tree creates thousands of files, and creating
// files is what it spends its time on: each syscall saved per file counts.
// os.OpenFile costs eight fcntl calls and a failed epoll_ctl per regular
// file (the runtime tries to register it with its poller); a blocking
// descriptor from open(2), wrapped with os.NewFile, costs one fcntl.

// createFile creates a new file at p, open for writing, with mode (the
// umask permitting).
func createFile(p string, mode fs.FileMode) (*os.File, error) {
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, uint32(mode.Perm()))
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// settle gives the open file f its mode, when the umask narrowed what
// open(2) was asked for, and returns the file's state once nothing more
// will change it. The usual umask (022) leaves a revision's read-only modes
// whole: the fstat, needed for the stamp anyway, is then all it costs.
func settle(f *os.File, mode fs.FileMode) (fs.FileInfo, error) {
	fi, err := f.Stat()
	if err != nil || fi.Mode().Perm() == mode.Perm() {
		return fi, err
	}
	if err := f.Chmod(mode); err != nil {
		return nil, err
	}
	return f.Stat()
}

// syncFS flushes every file and directory written under dir to disk, and
// the rest of its filesystem with them: one syncfs(2) where a publish
// would otherwise fsync each file and directory (5,000 journal commits for
// a 5,000-file tree, against one). Errors of the writeback are reported
// (Linux 5.8 and later).
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return &os.PathError{Op: "syncfs", Path: dir, Err: err}
	}
	return nil
}
