package sync

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	gosync "sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// A manifest records what a revision holds, as it was published: every
// file with its mode, size, sha256 and the source's content key, every
// symlink with its target, every directory. It is what the next publish
// reuses files by, and what a deep check compares the tree on disk with:
// nothing on the volume is trusted unless it still matches.
type manifest struct {
	Version int               `json:"v"`
	Files   map[string]entry  `json:"files"`
	Links   map[string]string `json:"links,omitempty"`
	Dirs    []string          `json:"dirs,omitempty"`
}

// manifestVersion 2 added sums, links and directories. Older manifests
// (a bare map of files) read as empty: nothing in them can be verified,
// so nothing is reused from them.
const manifestVersion = 2

// entry is one file of a manifest.
type entry struct {
	Mode fs.FileMode `json:"m"`
	Key  string      `json:"k,omitempty"`
	Size int64       `json:"s"`
	Sum  string      `json:"h"` // hex sha256 of the content
	stamp
}

// stamp is what the inode looked like when ferry last knew its content: a
// file whose inode, mtime and ctime are all still the same has not been
// written, replaced or chmodded since. ctime cannot be set by anyone
// (utimensat moves it too), so an edit that restores the mtime still
// shows. The zero stamp matches nothing.
type stamp struct {
	Ino   uint64 `json:"i,omitempty"`
	Ctime int64  `json:"c,omitempty"` // unix nanoseconds
	Mtime int64  `json:"t,omitempty"`
	Nlink uint64 `json:"n,omitempty"`
}

// stampOf reads the stamp of fi, the zero stamp where the platform has none.
func stampOf(fi fs.FileInfo) stamp {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return stamp{}
	}
	return stamp{Ino: st.Ino, Ctime: st.Ctim.Nano(), Mtime: fi.ModTime().UnixNano(), Nlink: uint64(st.Nlink)}
}

// unchangedSince reports whether fi is, by its inode, the file e recorded:
// same type, mode, size and stamp. It reads no content.
func (e entry) unchangedSince(fi fs.FileInfo) bool {
	return e.Ino != 0 && fi.Mode().IsRegular() && fi.Mode().Perm() == e.Mode && fi.Size() == e.Size && stampOf(fi) == e.stamp
}

// openManifestDir opens the source's manifest directory, ROOT/.ferry/NAME/.meta,
// never following a symlink on the way (another writer of the volume may
// plant one after the start checked it); create makes what is missing.
func (s *Store) openManifestDir(name string, create bool) (*os.File, error) {
	open := s.openSourceDir
	if create {
		open = s.makeSourceDir
	}
	src, err := open(name)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	dir, err := openDirAt(src, manifestDir)
	if err != nil && create && errors.Is(err, fs.ErrNotExist) {
		dir, err = mkdirAt(src, manifestDir)
	}
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		p := filepath.Join(src.Name(), manifestDir)
		return nil, fmt.Errorf("%s is not a directory (a symlink?): ferry writes and removes there; remove it", p)
	}
	return dir, err
}

// writeManifest saves m for rev, atomically.
func (s *Store) writeManifest(name, rev string, m *manifest) error {
	dir, err := s.openManifestDir(name, true)
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	defer dir.Close()
	m.Version = manifestVersion
	tmp := tmpPrefix + randomSuffix()
	fd, err := unix.Openat(int(dir.Fd()), tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, manifestPerm)
	if err == nil {
		f := os.NewFile(uintptr(fd), filepath.Join(dir.Name(), tmp))
		err = encodeManifest(f, m)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = renameAt(dir, tmp, rev)
	}
	if err != nil {
		unix.Unlinkat(int(dir.Fd()), tmp, 0)
		return fmt.Errorf("manifest: %w", err)
	}
	s.remember(name, rev, m)
	return nil
}

// removeManifest removes rev's manifest, if any.
func (s *Store) removeManifest(name, rev string) {
	if dir, err := s.openManifestDir(name, false); err == nil {
		unix.Unlinkat(int(dir.Fd()), rev, 0)
		dir.Close()
	}
}

// encodeManifest writes m to w as json.Marshal would, byte for byte, a
// file at a time. json.Marshal builds the whole document in one buffer
// that grows by doubling, then copies it: for 5,000 files about 5 MB
// allocated at the end of a publish, when the heap is at its largest,
// and the 2 MB buffer kept in encoding/json's pool afterwards.
func encodeManifest(w io.Writer, m *manifest) error {
	bw := bufio.NewWriterSize(w, 32<<10)
	// One value at a time through an Encoder, which reuses its buffer
	// and ends each value with a newline, left out here.
	var one bytes.Buffer
	enc := json.NewEncoder(&one)
	put := func(v any) error {
		one.Reset()
		if err := enc.Encode(v); err != nil {
			return err
		}
		_, err := bw.Write(bytes.TrimSuffix(one.Bytes(), []byte("\n")))
		return err
	}
	fmt.Fprintf(bw, `{"v":%d,"files":`, m.Version)
	if m.Files == nil {
		bw.WriteString("null")
	} else {
		bw.WriteByte('{')
		for i, rel := range slices.Sorted(maps.Keys(m.Files)) {
			if i > 0 {
				bw.WriteByte(',')
			}
			if err := put(rel); err != nil {
				return err
			}
			bw.WriteByte(':')
			if err := put(m.Files[rel]); err != nil {
				return err
			}
		}
		bw.WriteByte('}')
	}
	if len(m.Links) > 0 { // omitempty
		bw.WriteString(`,"links":`)
		if err := put(m.Links); err != nil {
			return err
		}
	}
	if len(m.Dirs) > 0 {
		bw.WriteString(`,"dirs":`)
		if err := put(m.Dirs); err != nil {
			return err
		}
	}
	bw.WriteByte('}')
	return bw.Flush()
}

// remember keeps the manifest last written for a source in memory: Seal
// updates it right after the publish, and without ReleaseMemory the next
// publish reuses files by it, neither reading and decoding it again
// (forget drops it). Manifests are never changed once shared.
func (s *Store) remember(name, rev string, m *manifest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.manifests == nil {
		s.manifests = make(map[string]cachedManifest)
	}
	s.manifests[name] = cachedManifest{rev, m}
}

// forget drops the manifest kept for a source, once its publish is sealed
// (Config.ReleaseMemory). A tree of 5,000 files holds about 1.4 MB of heap
// in it, which would be kept from one change to the next, days apart
// maybe; the next publish or deep check reads it from disk instead, once:
// 22-31 ms for 5,000 files (BenchmarkReadManifest, 2 busy cores), where
// the publish itself takes hundreds.
func (s *Store) forget(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.manifests, name)
}

type cachedManifest struct {
	rev string
	m   *manifest
}

// readManifest loads the manifest of rev. A missing, unreadable or old
// manifest is an error: the caller trusts nothing it cannot check.
func (s *Store) readManifest(name, rev string) (*manifest, error) {
	s.mu.Lock()
	c, ok := s.manifests[name]
	s.mu.Unlock()
	if ok && c.rev == rev {
		return c.m, nil
	}
	data, err := s.readManifestFile(name, rev)
	if err != nil {
		return nil, fmt.Errorf("manifest of %s: %w", rev, err)
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil || m.Version != manifestVersion {
		return nil, fmt.Errorf("manifest of %s: unreadable or from an older ferry", rev)
	}
	return &m, nil
}

// readManifestFile reads rev's manifest file, never through a symlink.
func (s *Store) readManifestFile(name, rev string) ([]byte, error) {
	dir, err := s.openManifestDir(name, false)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	fd, err := unix.Openat(int(dir.Fd()), rev, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: filepath.Join(dir.Name(), rev), Err: err}
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir.Name(), rev))
	defer f.Close()
	var b bytes.Buffer
	if fi, err := f.Stat(); err == nil {
		b.Grow(int(fi.Size()) + bytes.MinRead) // read in one go, as os.ReadFile does
	}
	_, err = b.ReadFrom(f)
	return b.Bytes(), err
}

// hashBuffers spare an allocation per file hashed.
var hashBuffers = gosync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// hashReader returns the hex sha256 of what r holds.
func hashReader(r io.Reader) (string, int64, error) {
	h := sha256.New()
	buf := hashBuffers.Get().(*[]byte)
	// Hide an *os.File's WriteTo, which would copy through a buffer of its
	// own, allocated for every file.
	n, err := io.CopyBuffer(h, struct{ io.Reader }{r}, *buf)
	hashBuffers.Put(buf)
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// maxReported bounds the differences a deep check names.
const maxReported = 3

// verifyTree compares the tree at dir with m: the same files with the same
// modes, sizes and contents, the same symlinks, the same directories, and
// nothing else. It returns nil, or an error naming the first differences.
// Files are hashed in parallel; the walk never follows a symlink.
func verifyTree(ctx context.Context, dir string, m *manifest) error {
	var diffs []string
	differ := func(format string, args ...any) {
		diffs = append(diffs, fmt.Sprintf(format, args...))
	}
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return errors.New("the revision directory is missing or not a directory")
	}
	type file struct {
		rel string
		e   entry
	}
	var files []file
	seenFiles, seenLinks := 0, 0
	dirs := make(map[string]bool, len(m.Dirs))
	for _, d := range m.Dirs {
		dirs[d] = true
	}
	seenDirs := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		switch t := d.Type(); {
		case t.IsDir():
			if !dirs[rel] {
				differ("%s: a directory that was not published", rel)
				return fs.SkipDir
			}
			seenDirs++
		case t&fs.ModeSymlink != 0:
			want, ok := m.Links[rel]
			target, err := os.Readlink(p)
			switch {
			case !ok:
				differ("%s: a symlink that was not published", rel)
			case err != nil || target != want:
				differ("%s: symlink target changed", rel)
			default:
				seenLinks++
			}
		case t.IsRegular():
			e, ok := m.Files[rel]
			if !ok {
				differ("%s: a file that was not published", rel)
				return nil
			}
			seenFiles++
			files = append(files, file{rel, e})
		default:
			differ("%s: not a regular file, directory or symlink", rel)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading the tree: %w", err)
	}
	if seenFiles != len(m.Files) || seenLinks != len(m.Links) || seenDirs != len(m.Dirs) {
		differ("%d of %d files, %d of %d symlinks, %d of %d directories are where they were published",
			seenFiles, len(m.Files), seenLinks, len(m.Links), seenDirs, len(m.Dirs))
	}

	var mu gosync.Mutex
	work := make(chan file)
	var wg gosync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), 4) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				if ctx.Err() != nil {
					continue
				}
				if reason := checkFile(filepath.Join(dir, filepath.FromSlash(f.rel)), f.e); reason != "" {
					mu.Lock()
					differ("%s: %s", f.rel, reason)
					mu.Unlock()
				}
			}
		}()
	}
	for _, f := range files {
		work <- f
	}
	close(work)
	wg.Wait()
	if len(diffs) == 0 {
		return nil
	}
	sort.Strings(diffs)
	more := ""
	if len(diffs) > maxReported {
		more = fmt.Sprintf(" (and %d more)", len(diffs)-maxReported)
		diffs = diffs[:maxReported]
	}
	return fmt.Errorf("%s%s", strings.Join(diffs, "; "), more)
}

// checkFile tells how the file at p differs from e, or "" when it does not:
// a regular file (never through a symlink) with e's mode, size and sum.
func checkFile(p string, e entry) string {
	f, err := openNoFollow(p)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	defer f.Close()
	return checkOpen(f, e)
}

// checkOpen is checkFile for a file already open.
func checkOpen(f *os.File, e entry) string {
	fi, err := f.Stat()
	switch {
	case err != nil:
		return "unreadable: " + err.Error()
	case !fi.Mode().IsRegular():
		return "not a regular file"
	case fi.Mode().Perm() != e.Mode:
		return fmt.Sprintf("mode %v, published %v", fi.Mode().Perm(), e.Mode)
	case fi.Size() != e.Size:
		return fmt.Sprintf("%d bytes, published %d", fi.Size(), e.Size)
	case e.Sum == "":
		return "no checksum recorded"
	}
	sum, _, err := hashReader(f)
	switch {
	case err != nil:
		return "unreadable: " + err.Error()
	case sum != e.Sum:
		return "content changed"
	}
	return ""
}

// ErrDamaged is what Seal returns when a published file is no longer what
// was published.
var ErrDamaged = errors.New("a published file changed on disk")

// Seal brings the stamps of rev's manifest up to date once its publish and
// the garbage collection after it are done, so that the next publish can
// reuse each file on one lstat. Removing an old revision unlinks names of
// inodes the new one shares, which moves their ctime: a file whose stamp
// no longer matches is read and hashed (in parallel, off the path from a
// change to the app), and stamped anew only when its content is the
// published one and it did not change while it was read. A file that
// fails is left unstamped, and Seal returns ErrDamaged naming it, so that
// the caller repairs the revision.
func (s *Store) Seal(name, rev string) error {
	m, err := s.readManifest(name, rev)
	if err != nil {
		return err
	}
	dir := s.revDir(name, rev)
	type result struct {
		rel    string
		e      entry
		reason string
	}
	var moved []string
	for rel, e := range m.Files {
		if fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(rel))); err != nil || !e.unchangedSince(fi) {
			moved = append(moved, rel)
		}
	}
	if len(moved) == 0 {
		return nil
	}
	results := make([]result, len(moved))
	var wg gosync.WaitGroup
	work := make(chan int)
	for range min(runtime.GOMAXPROCS(0), 4) {
		wg.Go(func() {
			for i := range work {
				rel := moved[i]
				e := m.Files[rel]
				e.stamp, results[i].reason = restamp(filepath.Join(dir, filepath.FromSlash(rel)), e)
				results[i].rel, results[i].e = rel, e
			}
		})
	}
	for i := range moved {
		work <- i
	}
	close(work)
	wg.Wait()
	files := maps.Clone(m.Files)
	var damaged []string
	for _, r := range results {
		files[r.rel] = r.e
		if r.reason != "" {
			damaged = append(damaged, r.rel+": "+r.reason)
		}
	}
	if err := s.writeManifest(name, rev, &manifest{Files: files, Links: m.Links, Dirs: m.Dirs}); err != nil {
		return err
	}
	if len(damaged) > 0 {
		sort.Strings(damaged)
		return fmt.Errorf("%w: %s", ErrDamaged, strings.Join(damaged[:min(len(damaged), maxReported)], "; "))
	}
	return nil
}

// restamp checks the file at p against e by its content and returns its
// stamp, or the zero stamp and why it does not match. The stamp is taken
// from the descriptor the content was read from, before and after: a file
// written while it was read does not get one.
func restamp(p string, e entry) (stamp, string) {
	f, err := openNoFollow(p)
	if err != nil {
		return stamp{}, "unreadable: " + err.Error()
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return stamp{}, "unreadable: " + err.Error()
	}
	if reason := checkOpen(f, e); reason != "" {
		return stamp{}, reason
	}
	after, err := f.Stat()
	if err != nil || stampOf(after) != stampOf(before) {
		return stamp{}, ""
	}
	return stampOf(after), ""
}

// sortedDirs returns the directory set as the manifest stores it.
func sortedDirs(dirs map[string]bool) []string {
	out := make([]string, 0, len(dirs))
	for d := range dirs {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}
