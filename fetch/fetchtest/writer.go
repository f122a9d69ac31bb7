// Package fetchtest helps test a source backend without a volume: an
// in-memory fetch.Writer that applies the rules and limits the publish
// engine applies (fetch.Tree), so a backend's tests need not import the
// engine, and a backend need not repeat those rules to be safe.
package fetchtest

import (
	"fmt"
	"io"
	"io/fs"
	"maps"
	"slices"
	gosync "sync"

	"github.com/ferrysync/ferry/fetch"
)

// File is one file a Fetch wrote.
type File struct {
	Mode fs.FileMode
	Key  string
	Data []byte
}

// Writer is an in-memory fetch.Writer, safe for concurrent use as the
// engine's is. Like the engine, it reuses a file of the previous revision
// (given with Reuse) whose key and mode match, without opening it.
type Writer struct {
	limits fetch.Limits

	mu     gosync.Mutex
	tree   *fetch.Tree
	files  map[string]File
	links  map[string]string
	dirs   map[string]bool
	prev   map[string]File
	bytes  int64
	opened int
}

var _ fetch.Writer = (*Writer)(nil)

// NewWriter returns an empty Writer bounded by l (zero fields: defaults).
func NewWriter(l fetch.Limits) *Writer {
	l = l.WithDefaults()
	return &Writer{limits: l, tree: fetch.NewTree(l), files: map[string]File{}, links: map[string]string{}, dirs: map[string]bool{}}
}

// Reuse makes the files prev holds the previous revision's.
func (w *Writer) Reuse(prev *Writer) *Writer {
	w.prev = prev.Files()
	return w
}

// WriteFile reads the file through open, unless the previous revision
// holds it under the same key and mode.
func (w *Writer) WriteFile(name string, mode fs.FileMode, key string, open fetch.Opener) error {
	w.mu.Lock()
	rel, dirs, err := w.tree.File(name)
	w.addDirs(dirs)
	var prev File
	reuse := false
	if err == nil && key != "" {
		prev, reuse = w.prev[rel]
		reuse = reuse && prev.Key == key && prev.Mode == mode
	}
	w.mu.Unlock()
	if err != nil {
		return err
	}
	data := prev.Data
	if !reuse {
		r, err := open()
		if err != nil {
			return fmt.Errorf("open %s: %w", rel, err)
		}
		defer r.Close()
		if data, err = io.ReadAll(io.LimitReader(r, w.limits.MaxFileSize+1)); err != nil {
			return fmt.Errorf("read %s: %w", rel, err)
		}
		if int64(len(data)) > w.limits.MaxFileSize {
			return fetch.Refuse(rel, "file exceeds %d bytes (max-file-size)", w.limits.MaxFileSize)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !reuse {
		w.opened++
	}
	if w.bytes += int64(len(data)); w.bytes > w.limits.MaxBytes {
		return fetch.Refuse(rel, "revision exceeds %d bytes (max-bytes)", w.limits.MaxBytes)
	}
	w.files[rel] = File{Mode: mode, Key: key, Data: data}
	return nil
}

// Symlink records a symlink.
func (w *Writer) Symlink(name, target string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	rel, dirs, err := w.tree.Symlink(name, target)
	if err != nil {
		return err
	}
	w.addDirs(dirs)
	w.links[rel] = target
	return nil
}

// Mkdir records a directory.
func (w *Writer) Mkdir(name string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	dirs, err := w.tree.Dir(name)
	w.addDirs(dirs)
	return err
}

func (w *Writer) addDirs(dirs []string) {
	for _, d := range dirs {
		w.dirs[d] = true
	}
}

// Files returns the files written, by name.
func (w *Writer) Files() map[string]File {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.files)
}

// Tree returns the files as name -> content, the form tests compare.
func (w *Writer) Tree() map[string]string {
	out := map[string]string{}
	for name, f := range w.Files() {
		out[name] = string(f.Data)
	}
	return out
}

// Links returns the symlinks written, name -> target.
func (w *Writer) Links() map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.links)
}

// Dirs returns every directory, sorted.
func (w *Writer) Dirs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Sorted(maps.Keys(w.dirs))
}

// Opened returns how many files were read through their Opener, the ones
// not reused.
func (w *Writer) Opened() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.opened
}

// Empty reports whether nothing was written: what a Fetch that found no
// change must leave.
func (w *Writer) Empty() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.files) == 0 && len(w.links) == 0 && len(w.dirs) == 0
}
