package sync

import (
	"errors"
	"io"
	"io/fs"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/ferrysync/ferry/fetch"
)

// The rules every entry of a revision obeys, whatever its source: names
// that stay inside the revision, modes that another user can read and
// nobody can write, and limits that fail rather than truncate.

var (
	validName    = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	validRevName = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]*$`)
)

// maxRev bounds a revision's name. It is checked with len rather than
// written in the pattern as {0,127}, which the regexp package would
// compile into 127 copies of the class: 50 KB of heap for good.
const maxRev = 128

// validRev reports whether rev may name a revision's directory.
func validRev(rev string) bool {
	return len(rev) <= maxRev && validRevName.MatchString(rev)
}

// ValidName reports whether name may name a source: it becomes a link in
// the root and a directory under ROOT/.ferry. Names ferry keeps for itself
// there are refused: those starting with a dot (.ferry, .generations, and
// the temporary names that a start clears away) and the lock file's.
func ValidName(name string) bool {
	return validName.MatchString(name) && !strings.HasPrefix(name, ".") && name != lockFile
}

// NameRule says, for messages, which names ValidName accepts.
const NameRule = "letters, digits, '.', '_' and '-', not starting with '.', and not 'lock'"

// Published modes: read-only, so that neither the app nor an operator can
// edit a revision by accident (ferry would otherwise carry the edit into
// the next one), readable by every user, since the app may run as another
// UID, and never setuid. Directories stay writable by ferry alone, which
// must be able to remove old revisions.
const (
	filePerm = 0o444
	execPerm = 0o555
	dirPerm  = 0o755
)

// normalMode gives every file its published mode: executable when any
// execute bit was set.
func normalMode(m fs.FileMode) fs.FileMode {
	if m&0o111 != 0 {
		return execPerm
	}
	return filePerm
}

// refuse is fetch.Refuse: the one form of every refused entry.
var refuse = fetch.Refuse

// fsError marks what the filesystem refuses for good as permanent: a name
// too long for it will be as long on the next attempt.
func fsError(err error) error {
	if errors.Is(err, syscall.ENAMETOOLONG) {
		return fetch.Permanent(err)
	}
	return err
}

// limitWriter fails the write that would pass a limit. Failing, not
// truncating: a cut file published as complete is worse than no publish.
// Bytes are counted against the tree before they are written, so parallel
// writers cannot overshoot --max-bytes on disk.
type limitWriter struct {
	w        io.Writer
	name     string
	n        int64
	max      int64         // single-file limit
	total    *atomic.Int64 // bytes in the tree so far
	maxTotal int64
}

func (lw *limitWriter) Write(p []byte) (int, error) {
	size := int64(len(p))
	if lw.n+size > lw.max {
		return 0, refuse(lw.name, "file exceeds %d bytes (max-file-size)", lw.max)
	}
	if lw.total.Add(size) > lw.maxTotal {
		lw.total.Add(-size)
		return 0, refuse(lw.name, "revision exceeds %d bytes (max-bytes)", lw.maxTotal)
	}
	n, err := lw.w.Write(p)
	lw.n += int64(n)
	lw.total.Add(int64(n) - size)
	return n, err
}
