package sync

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	gosync "sync"
	"time"

	"golang.org/x/sys/unix"
)

// fsyncWorkers bounds the parallel fsyncs at publish: flushing files one by
// one costs a journal commit each on most filesystems.
const fsyncWorkers = 16

// Publish makes the staged tree revision rev of the source and points
// ROOT/NAME at it. Every file is flushed to disk before the tree is renamed
// into place, and the tree is complete before the link moves: a reader sees
// the old tree or the new one, whenever the process dies.
//
// A tree already under rev's name (a revert to a kept revision, or the
// current one being repaired) is replaced by the staged one, never trusted:
// it may have been damaged on disk.
func (st *Stage) Publish(rev string) error {
	if !validRev(rev) {
		return fmt.Errorf("source returned an invalid revision %q", rev)
	}
	if _, err := st.complete(); err != nil {
		return err
	}
	if err := st.flush(); err != nil {
		return err
	}
	m := &manifest{Files: st.entries, Links: st.symlinks, Dirs: sortedDirs(st.dirs)}
	return st.store.publish(st.name, filepath.Base(st.dir), rev, m)
}

// complete waits for the writes of the staged tree and checks its
// symlinks, so that what a Validator reads is what Publish publishes. It
// returns the tree's directory (created when the tree is empty).
func (st *Stage) complete() (string, error) {
	if st.completed {
		return st.dir, nil
	}
	if err := st.async.wait(); err != nil {
		return "", err
	}
	st.mu.Lock()
	err := st.ensureDirLocked()
	dir := st.dir
	st.mu.Unlock()
	if err != nil {
		return "", err
	}
	if err := st.checkSymlinks(); err != nil {
		return "", err
	}
	st.completed = true
	return dir, nil
}

// publish makes the complete, flushed tree staged under stage in the
// source's directory its revision rev, records its manifest, and swaps
// ROOT/NAME to it.
func (s *Store) publish(name, stage, rev string, m *manifest) error {
	if err := s.place(name, stage, rev); err != nil {
		return fmt.Errorf("publish %s: %w", rev, err)
	}
	if err := s.stamp(name, rev); err != nil {
		return fmt.Errorf("publish %s: %w", rev, err)
	}
	if err := s.writeManifest(name, rev, m); err != nil {
		return err
	}
	return s.swap(name, rev)
}

// stamp marks rev as published now, durably: GC keeps the newest
// revisions by this time.
func (s *Store) stamp(name, rev string) error {
	now := time.Now()
	if err := os.Chtimes(s.revDir(name, rev), now, now); err != nil {
		return err
	}
	return syncDir(s.sourceDir(name))
}

// place renames the staged tree stage (a name in the source's directory)
// to rev. When rev exists, the two are exchanged in one atomic step, so a
// reader of the current revision never finds it missing, and the old tree,
// now under the staging name, is removed; where the filesystem cannot
// exchange, the old tree is renamed aside first.
func (s *Store) place(name, stage, rev string) error {
	dir, err := s.openSourceDir(name)
	if err != nil {
		return err
	}
	defer dir.Close()
	return placeAt(dir, stage, rev)
}

// placeAt renames stage to target inside dir, replacing what is there in
// one step where the filesystem can exchange two entries: a reader never
// finds target missing.
func placeAt(dir *os.File, stage, target string) error {
	err := renameAt(dir, stage, target)
	if err == nil || !occupied(err) {
		return err
	}
	// Something is under target's name: an old tree, or what took its
	// place (a symlink, a file). Exchange works whatever its type.
	if err := exchangeAt(dir, stage, target); err == nil {
		return removeAllAt(dir, stage)
	}
	doomed := stagePrefix + "old-" + randomSuffix()
	if err := renameAt(dir, target, doomed); err != nil {
		return err
	}
	if err := renameAt(dir, stage, target); err != nil {
		renameAt(dir, doomed, target) // put back what was there
		return err
	}
	return removeAllAt(dir, doomed)
}

// occupied tells whether a rename failed because its target exists:
// a directory (EEXIST, ENOTEMPTY), or a file or symlink where a directory
// goes (ENOTDIR, EISDIR).
func occupied(err error) bool {
	return errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) ||
		errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EISDIR)
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

// flushEach makes flush fsync each file and directory instead of one
// syncfs: benchmarks compare the two (FERRY_BENCH_FSYNC_EACH).
var flushEach = false

// flush makes the staged tree durable before it is renamed into place: one
// syncfs(2) of its filesystem where the kernel has it, else an fsync of
// each file and directory.
func (st *Stage) flush() error {
	if !flushEach {
		err := syncFS(st.dir)
		if !errors.Is(err, unix.ENOSYS) {
			return err
		}
	}
	return st.flushEach()
}

// flushEach fsyncs every written file, then every directory, deepest
// first.
func (st *Stage) flushEach() error {
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

// syncDir fsyncs a directory so that entries created or renamed in it are
// durable.
func syncDir(dir string) error { return fsyncFile(dir) }

// fsyncFile flushes a file, or a directory, to disk.
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
