package signal

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ferrysync/ferry/internal/report"
)

// Notifiers find the touch file's NotifyFirst through this interface.
var _ firstNotifier = (*touch)(nil)

// touch sets a file's modification time for each change, for apps that
// watch one file (git-sync's --touch-file).
type touch struct {
	path    string
	target  string // metric label
	log     *slog.Logger
	metrics *metrics
}

// checkTouchFile accepts "" and an absolute path that can name a file:
// relative to what would depend on where ferry was started.
func checkTouchFile(path string) error {
	switch {
	case path == "":
		return nil
	case strings.ContainsRune(path, 0):
		return report.Fieldf("{TouchFile} %q: holds a NUL byte", path)
	case !filepath.IsAbs(path):
		return report.Fieldf("{TouchFile} %q: want an absolute path", path)
	case strings.HasSuffix(path, "/") || filepath.Clean(path) == "/":
		return report.Fieldf("{TouchFile} %q: want the path of a file, not a directory", path)
	}
	return nil
}

// newTouch returns the notifier of o.TouchFile, which o.Validate accepted.
func newTouch(o Options, m *metrics) *touch {
	t := &touch{path: filepath.Clean(o.TouchFile), log: o.Logger, metrics: m}
	t.target = "touch:" + t.path
	m.initTarget(t.target, resultOK, resultFailed)
	return t
}

// Notify touches the file now, once for all of cs; cs only labels the
// log. A failure is logged and counted, not retried: the next change
// touches it again.
func (t *touch) Notify(cs Changes) {
	if err := touchFile(t.path); err != nil {
		t.log.Error("touch file failed", append([]any{"touch_file", t.path}, append(cs.logAttrs(), "error", err)...)...)
		t.metrics.outcome(t.target, cs, resultFailed, err)
		return
	}
	t.log.Info("touched file", append([]any{"touch_file", t.path}, cs.logAttrs()...)...)
	t.metrics.outcome(t.target, cs, resultOK, nil)
}

// NotifyFirst touches the file for a first publish as for a change.
func (t *touch) NotifyFirst(cs Changes) { t.Notify(cs) }

// touchFile sets path's access and modification times to now, creating it
// mode 0644 when missing. A symbolic link at path is refused, never
// followed (ferry did not create it, and may run as another user than
// whoever did); the times are set on the file opened, not on a path that
// could be swapped in between.
func touchFile(path string) error {
	const flags = unix.O_WRONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC
	fd, err := unix.Open(path, flags|unix.O_CREAT|unix.O_EXCL, 0o644)
	created := err == nil
	if errors.Is(err, unix.EEXIST) {
		fd, err = unix.Open(path, flags, 0)
	}
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("touch %s: is a symbolic link, and ferry follows none it did not create", path)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("touch %s: directory %s does not exist", path, filepath.Dir(path))
	case err != nil:
		return fmt.Errorf("touch %s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("touch %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("touch %s: not a regular file", path)
	}
	if created {
		// ferry's umask must not hide the file from an app of another UID.
		if err := unix.Fchmod(fd, 0o644); err != nil {
			return fmt.Errorf("touch %s: %w", path, err)
		}
	}
	// futimens(fd, NULL): utimensat with no path sets the open file's
	// times to now; x/sys has no wrapper that passes a NULL path.
	if _, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, 0, 0, 0, 0); errno != 0 {
		return fmt.Errorf("touch %s: set its times: %w", path, errno)
	}
	return nil
}
