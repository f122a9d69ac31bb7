package sync

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrOutside is the answer to a path that leaves the revision: "..", an
// absolute path, or a symlink that resolves outside it.
var ErrOutside = errors.New("outside the revision")

// OpenFile opens the file rel of source name's published revision, for
// the pull API, and returns the revision with it. Nothing is followed out
// of the revision: the kernel resolves rel beneath the revision's
// directory (openat2 RESOLVE_BENEATH), symlinks included, as the rules of
// a publish keep them. Only a regular file opens.
func (s *Syncer) OpenFile(name, rel string) (*os.File, string, error) {
	st, ok := s.statusOf(name)
	if !ok {
		return nil, "", fmt.Errorf("no source named %q: %w", name, fs.ErrNotExist)
	}
	if st.Revision == "" {
		return nil, "", fmt.Errorf("source %s has no revision yet: %w", name, fs.ErrNotExist)
	}
	if rel == "" || strings.HasPrefix(rel, "/") {
		return nil, "", fmt.Errorf("%q: %w", rel, ErrOutside)
	}
	dir, err := openRealDir(s.cfg.Store.revDir(name, st.Revision), false)
	if err != nil {
		return nil, "", err
	}
	defer dir.Close()
	fd, err := unix.Openat2(int(dir.Fd()), rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	})
	switch {
	case errors.Is(err, unix.EXDEV):
		return nil, "", fmt.Errorf("%q: %w", rel, ErrOutside)
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
		return nil, "", fmt.Errorf("%q: %w", rel, fs.ErrNotExist)
	case err != nil:
		return nil, "", fmt.Errorf("open %q: %w", rel, err)
	}
	f := os.NewFile(uintptr(fd), rel)
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%q: not a file: %w", rel, fs.ErrNotExist)
	}
	if err != nil {
		f.Close()
		return nil, "", err
	}
	return f, st.Revision, nil
}
