package sync

import (
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// A first publish of a large tree creates thousands of files, and creating
// files is what it spends its time on: each syscall saved per file counts.
// os.OpenFile costs eight fcntl calls and a failed epoll_ctl per regular
// file (the runtime tries to register it with its poller), os.NewFile one
// fcntl and a finalizer; a newFile is open(2)'s descriptor and nothing more:
// open, write, fstat, close.

// newFile is a file ferry has just created (createBeneath), open for
// writing.
type newFile struct {
	fd   int
	path string
}

// Write writes all of b, or fails.
func (f *newFile) Write(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Write(f.fd, b[n:])
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return n, &os.PathError{Op: "write", Path: f.path, Err: err}
		case m == 0:
			return n, &os.PathError{Op: "write", Path: f.path, Err: io.ErrShortWrite}
		}
		n += m
	}
	return n, nil
}

// Close closes the descriptor.
func (f *newFile) Close() error {
	if err := unix.Close(f.fd); err != nil {
		return &os.PathError{Op: "close", Path: f.path, Err: err}
	}
	return nil
}

// settle gives the file its mode, when the umask narrowed what open(2)
// was asked for, and returns its permissions and stamp once nothing more
// will change it. The usual umask (022) leaves a revision's read-only modes
// whole: the fstat, needed for the stamp anyway, is then all it costs.
func (f *newFile) settle(mode fs.FileMode) (fs.FileMode, stamp, error) {
	var st unix.Stat_t
	if err := f.stat(&st); err != nil {
		return 0, stamp{}, err
	}
	if fs.FileMode(st.Mode).Perm() != mode.Perm() {
		if err := unix.Fchmod(f.fd, uint32(mode.Perm())); err != nil {
			return 0, stamp{}, &os.PathError{Op: "chmod", Path: f.path, Err: err}
		}
		if err := f.stat(&st); err != nil {
			return 0, stamp{}, err
		}
	}
	return fs.FileMode(st.Mode).Perm(), statStamp(&st), nil
}

// statStamp is the stamp of what fstat or fstatat found.
func statStamp(st *unix.Stat_t) stamp {
	return stamp{Ino: st.Ino, Ctime: st.Ctim.Nano(), Mtime: st.Mtim.Nano(), Nlink: uint64(st.Nlink)}
}

func (f *newFile) stat(st *unix.Stat_t) error {
	if err := unix.Fstat(f.fd, st); err != nil {
		return &os.PathError{Op: "stat", Path: f.path, Err: err}
	}
	return nil
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
