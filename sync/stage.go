package sync

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	gosync "sync"
	"sync/atomic"
	"syscall"

	"github.com/ferrysync/ferry/fetch"
	"golang.org/x/sys/unix"
)

// Stats describe one staged revision.
type Stats struct {
	Files        int   // regular files and symlinks in the tree
	Bytes        int64 // bytes of all regular files in the tree
	Reused       int   // files hard-linked or copied from the previous revision
	BytesWritten int64 // bytes taken from the source (the rest was reused)
	Damaged      int   // files of the previous revision found changed on disk
	Reread       int   // reused files whose inode had changed, read and hashed first
	Ignored      int   // entries skipped by the source's ignore patterns
}

// Stage is a revision being written. It implements fetch.Writer; its write
// methods are safe for concurrent use, so a source may download files in
// parallel. Publish and Discard come after the writes, never beside them.
type Stage struct {
	store   *Store
	name    string
	prev    string
	prevDir string // the previous revision's tree, files are reused from
	limits  fetch.Limits
	log     *slog.Logger
	async   *async  // small files written in the background
	ignore  *ignore // entries to skip (ignore.go)
	// completed: the writes are done and the links checked (complete).
	completed bool

	mu       gosync.Mutex
	dir      string   // created on the first write
	root     *os.File // dir, open: every path in it is resolved from it (beneath.go)
	maxRel   int      // the longest path in the tree that fits PATH_MAX once published (pathTooLong)
	tree     *fetch.Tree
	entries  map[string]entry
	symlinks map[string]string // name -> target
	dirs     map[string]bool
	written  []string // files to fsync

	prevOnce     gosync.Once
	prevManifest *manifest

	bytes        atomic.Int64
	bytesWritten atomic.Int64
	reused       atomic.Int64
	damaged      atomic.Int64
	reread       atomic.Int64
	ignored      atomic.Int64
}

var _ fetch.Writer = (*Stage)(nil)

// Dir returns the staging directory, or "" when nothing was written yet.
func (st *Stage) Dir() string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.dir
}

// reserve records name in the tree (which refuses what breaks a rule)
// and creates its missing parent directories. It returns the clean name,
// a slash path inside the staging directory.
func (st *Stage) reserve(name string, add func() (string, []string, error)) (string, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.ensureDirLocked(); err != nil {
		return "", err
	}
	rel, dirs, err := add()
	if err != nil {
		return "", err
	}
	if err := st.pathTooLong(rel); err != nil {
		return "", err
	}
	if err := st.mkdirsLocked(dirs); err != nil {
		return "", err
	}
	return rel, nil
}

func (st *Stage) ensureDirLocked() error {
	if st.dir != "" {
		return nil
	}
	parent, err := st.store.makeSourceDir(st.name)
	if err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	defer parent.Close()
	root, err := mkdirAt(parent, stagePrefix+randomSuffix())
	if err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	st.dir, st.root = root.Name(), root
	// ROOT/.ferry/NAME/REV/rel, under the longest REV, and its NUL.
	st.maxRel = unix.PathMax - 1 - (len(parent.Name()) + 1 + maxRev + 1)
	st.tree = fetch.NewTree(st.limits)
	st.entries = make(map[string]entry)
	st.symlinks = make(map[string]string)
	st.dirs = make(map[string]bool)
	return nil
}

// pathTooLong refuses rel when its path once published, under the
// longest revision name, would pass PATH_MAX: staged from the staging
// directory's descriptor it would fit, but the app, and the checks after
// a publish, use whole paths.
func (st *Stage) pathTooLong(rel string) error {
	if len(rel) <= st.maxRel {
		return nil
	}
	return fsError(&os.PathError{Op: "stage", Path: rel, Err: syscall.ENAMETOOLONG})
}

// mkdirsLocked creates directories the tree recorded, parents first.

func (st *Stage) mkdirsLocked(dirs []string) error {
	for _, d := range dirs {
		if err := st.pathTooLong(d); err != nil {
			return err
		}
		if err := mkdirBeneath(st.root, d); err != nil {
			return fmt.Errorf("stage mkdir %s: %w", d, fsError(err))
		}
		st.dirs[d] = true
	}
	return nil
}

// Mkdir creates an (empty) directory in the revision.
func (st *Stage) Mkdir(name string) error {
	if st.skip(name, true) {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.ensureDirLocked(); err != nil {
		return err
	}
	dirs, err := st.tree.Dir(name)
	if err != nil {
		return err
	}
	return st.mkdirsLocked(dirs)
}

// WriteFile creates one regular file, reusing the previous revision's copy
// when key and mode match and the copy on disk is still, byte for byte,
// what was published.
func (st *Stage) WriteFile(name string, mode fs.FileMode, key string, open fetch.Opener) error {
	if err := st.async.failed(); err != nil {
		return err
	}
	if st.skip(name, false) {
		return nil
	}
	rel, err := st.reserve(name, func() (string, []string, error) { return st.tree.File(name) })
	if err != nil {
		return err
	}
	mode = normalMode(mode)
	if key != "" {
		if prev, ok := st.previous(rel); ok && prev.Key == key && prev.Mode == mode {
			e, reused, err := st.reuse(rel, prev)
			if reused {
				st.record(rel, e, false)
				return nil
			}
			if fetch.IsPermanent(err) || errors.Is(err, errInTheWay) {
				return err // not the previous revision's doing
			}
			st.damaged.Add(1)
			st.log.Warn("published file changed on disk; taking it from the source again",
				"path", rel, "revision", st.prev, "reason", err)
		}
	}
	return st.copyIn(rel, mode, key, open)
}

func (st *Stage) record(rel string, e entry, written bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.entries[rel] = e
	if written {
		st.written = append(st.written, rel)
	} else {
		st.reused.Add(1)
	}
}

func (st *Stage) addBytes(name string, n int64) error {
	if total := st.bytes.Add(n); total > st.limits.MaxBytes {
		st.bytes.Add(-n)
		return refuse(name, "revision exceeds %d bytes (max-bytes)", st.limits.MaxBytes)
	}
	return nil
}

// errChangedDuringReuse is a file swapped between its check and its link.
var errChangedDuringReuse = errors.New("changed while it was being reused")

// reuse hard-links the previous revision's file once it has proved to be
// what the manifest says. The cheap proof is its inode: the same inode,
// mode, size, mtime and ctime as when ferry last knew its content (one
// lstat). Failing that, the file is read and hashed: a regular file (a
// symlink there is refused, never followed) with the published mode, size
// and sha256. A file edited in place, replaced, or turned into a symlink is
// not carried into the next revision: reuse returns false with the reason,
// and the caller takes the file from the source. It returns the entry to
// record, with the stamp of the new link.
func (st *Stage) reuse(rel string, e entry) (entry, bool, error) {
	if e.Size > st.limits.MaxFileSize {
		// Published under a larger limit: held to today's, as the same
		// file from the source would be.
		return e, false, refuse(rel, "file exceeds %d bytes (max-file-size)", st.limits.MaxFileSize)
	}
	src := filepath.Join(st.prevDir, filepath.FromSlash(rel))
	if fi, err := os.Lstat(src); err == nil && e.unchangedSince(fi) {
		if out, ok, err := st.link(rel, src, e, fi); ok || fetch.IsPermanent(err) {
			return out, ok, err
		}
	}
	st.reread.Add(1)
	f, err := openNoFollow(src)
	if err != nil {
		return e, false, err
	}
	defer f.Close()
	if reason := checkOpen(f, e); reason != "" {
		return e, false, errors.New(reason)
	}
	checked, err := f.Stat()
	if err != nil {
		return e, false, err
	}
	if out, ok, err := st.link(rel, src, e, checked); ok || errors.Is(err, errChangedDuringReuse) || errors.Is(err, errInTheWay) || fetch.IsPermanent(err) {
		return out, ok, err
	}
	// The filesystem cannot link: copy the descriptor just checked.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return e, false, err
	}
	copied, err := st.copyTo(rel, e.Mode, f)
	if err == nil && copied.Sum != e.Sum {
		err = errChangedDuringReuse
	}
	if err != nil {
		if !fetch.IsPermanent(err) {
			removeBeneath(st.root, rel)
		}
		return e, false, err
	}
	st.mu.Lock()
	st.written = append(st.written, rel)
	st.mu.Unlock()
	copied.Key = e.Key
	return copied, true, nil
}

// link hard-links src, whose checked state is fi, as rel. The name is
// linked, not the descriptor: what it named must still be the file
// checked, unmodified since.
func (st *Stage) link(rel, src string, e entry, fi fs.FileInfo) (entry, bool, error) {
	if err := st.addBytes(rel, e.Size); err != nil {
		return e, false, err
	}
	var after unix.Stat_t
	if err := linkBeneath(src, st.root, rel, &after); err != nil {
		st.bytes.Add(-e.Size)
		return e, false, err
	}
	if checked, ok := fi.Sys().(*syscall.Stat_t); ok && after.Ino == checked.Ino && after.Dev == checked.Dev &&
		after.Mtim == unix.Timespec(checked.Mtim) && after.Size == checked.Size {
		e.stamp = statStamp(&after)
		return e, true, nil
	}
	removeBeneath(st.root, rel)
	st.bytes.Add(-e.Size)
	return e, false, errChangedDuringReuse
}

// openNoFollow opens a file for reading, refusing a symlink at its name.
func openNoFollow(p string) (*os.File, error) {
	return os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
}

// copyIn takes the file from the source: a small one is written in the
// background (async.go), a larger one here, as it is read.
func (st *Stage) copyIn(rel string, mode fs.FileMode, key string, open fetch.Opener) error {
	r, err := open()
	if err != nil {
		return fmt.Errorf("open %s: %w", rel, err)
	}
	defer r.Close()
	buf, n, small, err := st.readSmall(rel, r)
	if err != nil {
		return err
	}
	if small {
		st.writeAsync(rel, mode, key, buf, n)
		return nil
	}
	head := (*buf)[:n]
	e, err := st.copyTo(rel, mode, io.MultiReader(bytes.NewReader(head), r))
	putBuffer(buf)
	if err != nil {
		return err
	}
	st.bytesWritten.Add(e.Size)
	e.Key = key
	st.record(rel, e, true)
	return nil
}

// copyTo writes r into a new file rel, failing (never truncating) once
// the file passes the single-file limit or the tree passes the total, and
// returns the file's manifest entry (without a key).
func (st *Stage) copyTo(rel string, mode fs.FileMode, r io.Reader) (entry, error) {
	f, err := createBeneath(st.root, rel, mode)
	if err != nil {
		return entry{}, fmt.Errorf("stage %s: %w", rel, fsError(err))
	}
	h := sha256.New()
	lw := &limitWriter{w: io.MultiWriter(f, h), name: rel, max: st.limits.MaxFileSize,
		total: &st.bytes, maxTotal: st.limits.MaxBytes}
	buf := copyBuffers.Get().(*[]byte)
	n, err := io.CopyBuffer(lw, r, *buf)
	copyBuffers.Put(buf)
	var perm fs.FileMode
	var stamped stamp
	if err == nil {
		// The last change to the inode is done: its stamp proves, next
		// time, that nobody wrote it since.
		perm, stamped, err = f.settle(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if !fetch.IsPermanent(err) {
			err = fmt.Errorf("stage %s: %w", rel, fsError(err))
		}
		return entry{}, err
	}
	return entry{Mode: perm, Size: n, Sum: hex.EncodeToString(h.Sum(nil)), stamp: stamped}, nil
}

// copyBuffers spares io.Copy's 32 KiB allocation per file: a first publish
// of a large tree copies thousands of files.
var copyBuffers = gosync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Symlink records a symlink. Its target must stay inside the revision;
// that is checked by name now and once more on disk at publish.
func (st *Stage) Symlink(name, target string) error {
	if st.skip(name, false) {
		return nil
	}
	rel, err := st.reserve(name, func() (string, []string, error) { return st.tree.Symlink(name, target) })
	if err != nil {
		return err
	}
	if err := symlinkBeneath(target, st.root, rel); err != nil {
		return fmt.Errorf("stage symlink %s: %w", rel, fsError(err))
	}
	st.mu.Lock()
	st.symlinks[rel] = target
	st.mu.Unlock()
	return nil
}

// previous returns the manifest entry of rel in the revision being
// replaced; the manifest is loaded once.
func (st *Stage) previous(rel string) (entry, bool) {
	st.prevOnce.Do(func() {
		if st.prev == "" {
			return
		}
		m, err := st.store.readManifest(st.name, st.prev)
		if err != nil {
			st.log.Info("previous revision cannot be reused; every file is taken from the source", "revision", st.prev, "reason", err)
			return
		}
		st.prevManifest = m
	})
	if st.prevManifest == nil {
		return entry{}, false
	}
	e, ok := st.prevManifest.Files[rel]
	return e, ok
}

// Stats returns what was staged so far.
func (st *Stage) Stats() Stats {
	st.async.pending.Wait()
	st.mu.Lock()
	defer st.mu.Unlock()
	return Stats{
		Files:        st.files(),
		Bytes:        st.bytes.Load(),
		Reused:       int(st.reused.Load()),
		BytesWritten: st.bytesWritten.Load(),
		Damaged:      int(st.damaged.Load()),
		Reread:       int(st.reread.Load()),
		Ignored:      int(st.ignored.Load()),
	}
}

// Discard removes the staging directory. It is safe to call after Publish.
func (st *Stage) Discard() {
	st.async.pending.Wait()
	st.mu.Lock()
	dir := st.dir
	st.dir = ""
	if st.root != nil {
		st.root.Close()
		st.root = nil
	}
	st.mu.Unlock()
	if dir != "" {
		st.store.removeSourceEntry(st.name, filepath.Base(dir))
	}
}

func (st *Stage) files() int {
	if st.tree == nil {
		return 0
	}
	return st.tree.Entries()
}
