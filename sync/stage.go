package sync

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/ferrysync/ferry/fetch"
)

// fsyncWorkers bounds the parallel fsyncs at publish: flushing files one by
// one costs a journal commit each on most filesystems.
const fsyncWorkers = 16

// Stats describe one staged revision.
type Stats struct {
	Files        int   // regular files and symlinks in the tree
	Bytes        int64 // bytes of all regular files in the tree
	Reused       int   // files hard-linked or copied from the previous revision
	BytesWritten int64 // bytes taken from the source (the rest was reused)
}

// entry is one file of a manifest: what WriteFile was told about it.
type entry struct {
	Mode fs.FileMode `json:"m"`
	Key  string      `json:"k,omitempty"`
	Size int64       `json:"s"`
}

// Stage is a revision being written. It implements fetch.Writer; its write
// methods are safe for concurrent use, so a source may download files in
// parallel. Publish and Discard come after the writes, never beside them.
type Stage struct {
	store *Store
	name  string
	prev  string

	mu       gosync.Mutex
	dir      string // created on the first write
	entries  map[string]entry
	symlinks map[string]string // name -> target
	dirs     map[string]bool
	written  []string // files to fsync

	prevOnce     gosync.Once
	prevManifest map[string]entry

	bytes        atomic.Int64
	bytesWritten atomic.Int64
	reused       atomic.Int64
}

var _ fetch.Writer = (*Stage)(nil)

// Dir returns the staging directory, or "" when nothing was written yet.
func (st *Stage) Dir() string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.dir
}

// refuse reports an entry that would leave the revision, clash with
// another, or break a limit: retrying cannot fix it, so it is permanent.
func refuse(name, format string, args ...any) error {
	return fetch.Permanent(fmt.Errorf("entry %q: %s", name, fmt.Sprintf(format, args...)))
}

// Linux's limits on names (NAME_MAX, PATH_MAX): a longer entry cannot be
// created, and retrying will not change that.
const (
	maxComponentLen = 255
	maxPathLen      = 4096
)

// cleanName turns a source's entry name into a clean relative path, or
// refuses it.
func cleanName(name string) (string, error) {
	if name == "" || strings.ContainsRune(name, 0) {
		return "", refuse(name, "invalid name")
	}
	if len(name) > maxPathLen {
		return "", refuse(name[:64]+"...", "name longer than %d bytes", maxPathLen)
	}
	for _, c := range strings.Split(name, "/") {
		if len(c) > maxComponentLen {
			return "", refuse(name, "a path component is longer than %d bytes", maxComponentLen)
		}
	}
	if strings.HasPrefix(name, "/") {
		return "", refuse(name, "absolute path")
	}
	clean := path.Clean(name)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", refuse(name, "path leaves the revision")
	}
	return clean, nil
}

// reserve checks name against the tree so far and records it. It returns
// the absolute path to create.
func (st *Stage) reserve(name string, isFile bool) (string, string, error) {
	rel, err := cleanName(name)
	if err != nil {
		return "", "", err
	}
	if rel == "." {
		return "", "", refuse(name, "names the revision root")
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.ensureDirLocked(); err != nil {
		return "", "", err
	}
	for p := path.Dir(rel); p != "."; p = path.Dir(p) {
		if _, ok := st.symlinks[p]; ok {
			return "", "", refuse(name, "parent %q is a symlink", p)
		}
		if _, ok := st.entries[p]; ok {
			return "", "", refuse(name, "parent %q is a file", p)
		}
	}
	if _, ok := st.entries[rel]; ok {
		return "", "", refuse(name, "duplicate entry")
	}
	if _, ok := st.symlinks[rel]; ok {
		return "", "", refuse(name, "duplicate entry")
	}
	if st.dirs[rel] {
		return "", "", refuse(name, "is both a directory and a file")
	}
	if len(st.entries)+len(st.symlinks) >= st.store.limits.MaxFiles {
		return "", "", refuse(name, "revision has more than %d files (--max-files)", st.store.limits.MaxFiles)
	}
	if err := st.mkdirLocked(path.Dir(rel)); err != nil {
		return "", "", err
	}
	if isFile {
		st.entries[rel] = entry{}
	} else {
		st.symlinks[rel] = ""
	}
	return rel, filepath.Join(st.dir, filepath.FromSlash(rel)), nil
}

func (st *Stage) ensureDirLocked() error {
	if st.dir != "" {
		return nil
	}
	parent := st.store.sourceDir(st.name)
	if err := mkdir(parent); err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	dir := filepath.Join(parent, stagePrefix+randomSuffix())
	if err := mkdir(dir); err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	st.dir = dir
	st.entries = make(map[string]entry)
	st.symlinks = make(map[string]string)
	st.dirs = make(map[string]bool)
	return nil
}

// mkdirLocked creates rel and its parents inside the staging directory.
func (st *Stage) mkdirLocked(rel string) error {
	if rel == "." || st.dirs[rel] {
		return nil
	}
	if err := st.mkdirLocked(path.Dir(rel)); err != nil {
		return err
	}
	if _, ok := st.entries[rel]; ok {
		return refuse(rel, "is both a file and a directory")
	}
	if _, ok := st.symlinks[rel]; ok {
		return refuse(rel, "is both a symlink and a directory")
	}
	if len(st.dirs) >= st.store.limits.MaxFiles {
		return refuse(rel, "revision has more than %d directories (--max-files)", st.store.limits.MaxFiles)
	}
	if err := mkdir(filepath.Join(st.dir, filepath.FromSlash(rel))); err != nil {
		return fmt.Errorf("stage mkdir %s: %w", rel, err)
	}
	st.dirs[rel] = true
	return nil
}

// mkdir creates a directory readable by all, whatever the umask: the app
// reading the tree may run as another user.
func mkdir(p string) error {
	if err := os.Mkdir(p, dirPerm); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return err
	}
	return os.Chmod(p, dirPerm)
}

// Mkdir creates an (empty) directory in the revision.
func (st *Stage) Mkdir(name string) error {
	rel, err := cleanName(name)
	if err != nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.ensureDirLocked(); err != nil {
		return err
	}
	for p := rel; p != "."; p = path.Dir(p) {
		if _, ok := st.symlinks[p]; ok {
			return refuse(name, "%q is a symlink", p)
		}
	}
	return st.mkdirLocked(rel)
}

// normalMode gives every file the mode a shared config volume wants:
// readable by all, executable when any execute bit was set, never setuid.
func normalMode(m fs.FileMode) fs.FileMode {
	if m&0o111 != 0 {
		return 0o755
	}
	return 0o644
}

// WriteFile creates one regular file, reusing the previous revision's copy
// when key and mode match.
func (st *Stage) WriteFile(name string, mode fs.FileMode, key string, open fetch.Opener) error {
	rel, dst, err := st.reserve(name, true)
	if err != nil {
		return err
	}
	mode = normalMode(mode)
	e := entry{Mode: mode, Key: key}
	if key != "" {
		if prev, ok := st.previous()[rel]; ok && prev.Key == key && prev.Mode == mode {
			if err := st.reuse(rel, dst, prev.Size); err == nil {
				e.Size = prev.Size
				st.record(rel, e, false)
				return nil
			} else if fetch.IsPermanent(err) {
				return err
			}
			// The previous file is gone or unreadable: take it from the source.
		}
	}
	size, err := st.copyIn(rel, dst, mode, open)
	if err != nil {
		return err
	}
	e.Size = size
	st.record(rel, e, true)
	return nil
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
	if total := st.bytes.Add(n); total > st.store.limits.MaxBytes {
		return refuse(name, "revision exceeds %d bytes (--max-bytes)", st.store.limits.MaxBytes)
	}
	return nil
}

// reuse hard-links the previous revision's file, or copies it where the
// filesystem cannot link.
func (st *Stage) reuse(rel, dst string, size int64) error {
	if err := st.addBytes(rel, size); err != nil {
		return err
	}
	src := filepath.Join(st.store.revDir(st.name, st.prev), filepath.FromSlash(rel))
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	if err := copyFile(src, dst); err != nil {
		st.bytes.Add(-size)
		os.Remove(dst)
		return err
	}
	st.mu.Lock()
	st.written = append(st.written, rel)
	st.mu.Unlock()
	return nil
}

// copyFile copies src to a new file dst with src's mode.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

func (st *Stage) copyIn(rel, dst string, mode fs.FileMode, open fetch.Opener) (int64, error) {
	r, err := open()
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", rel, err)
	}
	defer r.Close()
	n, err := st.copyTo(rel, dst, mode, r)
	if err != nil {
		return 0, err
	}
	st.bytesWritten.Add(n)
	return n, nil
}

// copyTo writes r into a new file at dst, failing (never truncating) once
// the file passes the single-file limit or the tree passes the total.
func (st *Stage) copyTo(rel, dst string, mode fs.FileMode, r io.Reader) (int64, error) {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return 0, fmt.Errorf("stage %s: %w", rel, err)
	}
	lw := &limitWriter{w: f, name: rel, max: st.store.limits.MaxFileSize,
		total: &st.bytes, maxTotal: st.store.limits.MaxBytes}
	buf := copyBuffers.Get().(*[]byte)
	n, err := io.CopyBuffer(lw, r, *buf)
	copyBuffers.Put(buf)
	if err == nil {
		// The umask may have narrowed the mode given to open; fchmod on
		// the open file spares a path lookup per file.
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if !fetch.IsPermanent(err) {
			err = fmt.Errorf("stage %s: %w", rel, err)
		}
		return 0, err
	}
	return n, nil
}

// copyBuffers spares io.Copy's 32 KiB allocation per file: a first publish
// of a large tree copies thousands of files.
var copyBuffers = gosync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

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
		return 0, refuse(lw.name, "file exceeds %d bytes (--max-file-size)", lw.max)
	}
	if lw.total.Add(size) > lw.maxTotal {
		lw.total.Add(-size)
		return 0, refuse(lw.name, "revision exceeds %d bytes (--max-bytes)", lw.maxTotal)
	}
	n, err := lw.w.Write(p)
	lw.n += int64(n)
	lw.total.Add(int64(n) - size)
	return n, err
}

// Symlink records a symlink. Its target must stay inside the revision;
// that is checked by name now and once more on disk at publish.
func (st *Stage) Symlink(name, target string) error {
	if target == "" || strings.ContainsRune(target, 0) {
		return refuse(name, "symlink with an invalid target")
	}
	if path.IsAbs(target) {
		return refuse(name, "symlink to absolute path %q", target)
	}
	rel, dst, err := st.reserve(name, false)
	if err != nil {
		return err
	}
	resolved := path.Join(path.Dir(rel), target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return refuse(name, "symlink to %q leaves the revision", target)
	}
	if err := os.Symlink(target, dst); err != nil {
		return fmt.Errorf("stage symlink %s: %w", rel, err)
	}
	st.mu.Lock()
	st.symlinks[rel] = target
	st.mu.Unlock()
	return nil
}

// previous loads the manifest of the revision being replaced, once.
func (st *Stage) previous() map[string]entry {
	st.prevOnce.Do(func() {
		if st.prev == "" {
			return
		}
		st.prevManifest, _ = readManifest(st.store.manifestPath(st.name, st.prev))
	})
	return st.prevManifest
}

// Stats returns what was staged so far.
func (st *Stage) Stats() Stats {
	st.mu.Lock()
	defer st.mu.Unlock()
	return Stats{
		Files:        len(st.entries) + len(st.symlinks),
		Bytes:        st.bytes.Load(),
		Reused:       int(st.reused.Load()),
		BytesWritten: st.bytesWritten.Load(),
	}
}

// Discard removes the staging directory. It is safe to call after Publish.
func (st *Stage) Discard() {
	st.mu.Lock()
	dir := st.dir
	st.mu.Unlock()
	if dir != "" {
		os.RemoveAll(dir)
	}
}

// Publish makes the staged tree revision rev of the source and points
// ROOT/NAME at it. Every file is flushed to disk before the tree is renamed
// into place, and the tree is complete before the link moves: a reader sees
// the old tree or the new one, whenever the process dies.
func (st *Stage) Publish(rev string) error {
	if !validRev.MatchString(rev) {
		return fmt.Errorf("source returned an invalid revision %q", rev)
	}
	st.mu.Lock()
	err := st.ensureDirLocked()
	st.mu.Unlock()
	if err != nil {
		return err
	}
	if err := st.checkSymlinks(); err != nil {
		return err
	}
	if err := st.flush(); err != nil {
		return err
	}
	dst := st.store.revDir(st.name, rev)
	if _, err := os.Stat(dst); err == nil {
		// The same content was published before (a revert): reuse that tree.
		st.Discard()
	} else if err := os.Rename(st.dir, dst); err != nil {
		return fmt.Errorf("publish %s: %w", rev, err)
	}
	now := time.Now()
	if err := os.Chtimes(dst, now, now); err != nil {
		return fmt.Errorf("publish %s: %w", rev, err)
	}
	if err := syncDir(st.store.sourceDir(st.name)); err != nil {
		return err
	}
	if err := st.writeManifest(rev); err != nil {
		return err
	}
	return st.store.swap(st.name, rev)
}

// checkSymlinks resolves every staged symlink on disk: a chain of links can
// leave the tree even when each target looks inside by name.
func (st *Stage) checkSymlinks() error {
	root, err := filepath.EvalSymlinks(st.dir)
	if err != nil {
		return err
	}
	inside := func(p string) bool { return p == root || strings.HasPrefix(p, root+string(filepath.Separator)) }
	for rel, target := range st.symlinks {
		// Resolve the raw path, not a cleaned one: "link/.." climbs from
		// wherever link points. A dangling target is judged by the longest
		// prefix that exists, since ".." after a symlink can already be out.
		p := filepath.Join(root, filepath.FromSlash(path.Dir(rel))) + string(filepath.Separator) + filepath.FromSlash(target)
		for {
			real, err := filepath.EvalSymlinks(p)
			if err == nil {
				if !inside(real) {
					return refuse(rel, "symlink to %q resolves outside the revision", target)
				}
				break
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return refuse(rel, "symlink does not resolve: %v", err)
			}
			i := strings.LastIndexByte(p, filepath.Separator)
			if i <= 0 {
				return refuse(rel, "symlink to %q does not resolve", target)
			}
			p = p[:i]
		}
	}
	return nil
}

// flush fsyncs every written file, then every directory, deepest first.
func (st *Stage) flush() error {
	work := make(chan string)
	errs := make(chan error, fsyncWorkers)
	var wg gosync.WaitGroup
	for range fsyncWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var first error
			for p := range work {
				if first != nil {
					continue
				}
				first = fsyncFile(p)
			}
			errs <- first
		}()
	}
	for _, rel := range st.written {
		work <- filepath.Join(st.dir, filepath.FromSlash(rel))
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	dirs := make([]string, 0, len(st.dirs))
	for d := range st.dirs {
		dirs = append(dirs, d)
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		if err := syncDir(filepath.Join(st.dir, filepath.FromSlash(d))); err != nil {
			return err
		}
	}
	return syncDir(st.dir)
}

func fsyncFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", p, err)
	}
	return nil
}

func (s *Store) manifestPath(name, rev string) string {
	return filepath.Join(s.sourceDir(name), manifestDir, rev)
}

func (st *Stage) writeManifest(rev string) error {
	dir := filepath.Join(st.store.sourceDir(st.name), manifestDir)
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	data, err := json.Marshal(st.entries)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, tmpPrefix+randomSuffix())
	if err := os.WriteFile(tmp, data, manifestPerm); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("manifest: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, rev)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("manifest: %w", err)
	}
	return nil
}

func readManifest(p string) (map[string]entry, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var m map[string]entry
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	return m, nil
}
