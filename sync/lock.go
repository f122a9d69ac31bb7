package sync

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lockFile is held, with flock(2), by the one ferry that publishes under a
// root. A second one would remove the first one's staging at start and
// race it for every link: it exits instead, naming the holder.
const lockFile = "lock"

// ErrLocked is returned by OpenStore when another process holds the root.
var ErrLocked = errors.New("another ferry publishes under this root")

// lock takes the root's lock for the life of the process (the kernel drops
// it when the process dies, however it dies) and writes our PID into the
// file so that the next one can say who holds it.
func lock(meta *os.File, root string) (*os.File, error) {
	path := filepath.Join(root, metaDir, lockFile)
	fd, err := unix.Openat(int(meta.Fd()), lockFile, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked%s; run one ferry per root (several sources can share one)", ErrLocked, path, holder(path))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// holder names the PID written in the lock file, when there is one.
func holder(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return ""
	}
	return fmt.Sprintf(" by pid %d", pid)
}
