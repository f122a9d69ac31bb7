package git

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/osfs"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/ferrysync/ferry/fetch/kit"
	"github.com/ferrysync/ferry/internal/report"
)

const (
	// storeDirName is the bare repository under the source's state dir.
	storeDirName = "repo.git"
	remoteName   = "origin"
	// fetchedRef holds the last commit fetched (with ?verify=tag, the
	// annotated tag naming it): its commit is what the next fetch offers
	// as "have", so only new objects travel.
	fetchedRef = plumbing.ReferenceName("refs/ferry/fetched")
	// objectCacheSize bounds decoded objects held in memory. Export reads
	// each blob once, so a large cache buys nothing; go-git's default
	// (96 MiB) is what made PlainClone peak at ~116 MB.
	objectCacheSize = 4 * cache.MiByte
	// largeObjectThreshold: bigger objects are streamed from the pack
	// instead of being read whole into memory.
	largeObjectThreshold = 1 << 20
	// maxPacks and maxLoose bound the store's growth: each fetch adds
	// objects and superseded blobs are never removed, so past this many the
	// store starts afresh (one depth-limited fetch, as on the first sync).
	maxPacks = 32
	maxLoose = 4096
)

// store is the bare object store, open for one Fetch.
type store struct {
	repo   *gogit.Repository
	st     *filesystem.Storage
	fresh  bool         // created by this Fetch: nothing to reuse, nothing to distrust
	pack   *indexedPack // the pack this Fetch received and indexed, if it did
	early  *earlyExport // writes the files of the pack it receives, if any, as it indexes it
	packed *packedStore
}

// objects is the store as the export reads it, until ctx ends: the pack
// this Fetch indexed read straight from its file (packed.go) when there
// is one.
func (st *store) objects(ctx context.Context, dir string, b bounds) storer.EncodedObjectStorer {
	if st.pack == nil {
		return st.st
	}
	if st.packed == nil {
		ps, err := openPacked(ctx, st.st, st.pack, dir, b)
		if err != nil {
			return st.st
		}
		st.packed = ps
	}
	return st.packed
}

func (st *store) close() {
	if st.packed != nil {
		st.packed.close()
		st.packed = nil
	}
	if st.st != nil {
		st.st.Close()
		st.st = nil
	}
}

// hasObject reports whether h is in the store (a commit in a depth-limited
// store always comes with its whole tree).
func (st *store) hasObject(h plumbing.Hash) bool {
	return st.st.HasEncodedObject(h) == nil
}

// openStore opens the object store, creating it on first use. A store that
// does not open, belongs to another URL or has lost its last commit is
// removed and created again, with one warning.
func (s *Source) openStore() (*store, error) {
	s.removeTempObjects()
	if _, err := os.Stat(s.storeDir); errors.Is(err, fs.ErrNotExist) {
		return s.initStore()
	}
	st, err := openRepo(s.storeDir, false)
	if err == nil {
		if err = s.checkStore(st); err != nil {
			st.close()
		}
	}
	if err != nil {
		s.discardStore(err)
		return s.initStore()
	}
	return st, nil
}

// packDir is where the store keeps its packs, and spools the one a fetch
// receives.
func (s *Source) packDir() string { return filepath.Join(s.storeDir, "objects", "pack") }

// openRepo opens the bare repository at dir, or creates it.
func openRepo(dir string, create bool) (*store, error) {
	st := newStorage(osfs.New(dir), nil)
	open := gogit.Open
	if create {
		open = gogit.Init
	}
	repo, err := open(st, nil)
	if err != nil {
		st.Close()
		return nil, err
	}
	return &store{repo: repo, st: st}, nil
}

// newStorage reads the git directory fsys as export needs it: a small
// object cache, large objects streamed, the packs kept open. alternates
// is where the paths in objects/info/alternates are found; nil: in fsys.
// Close releases the packs.
func newStorage(fsys, alternates billy.Filesystem) *filesystem.Storage {
	return filesystem.NewStorageWithOptions(fsys, cache.NewObjectLRU(objectCacheSize), filesystem.Options{
		KeepDescriptors:      true, // export reads thousands of objects: do not reopen the pack for each
		LargeObjectThreshold: largeObjectThreshold,
		AlternatesFS:         alternates,
	})
}

// checkStore tells whether the store on disk is ours and readable.
func (s *Source) checkStore(st *store) error {
	cfg, err := st.repo.Config()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	rc, ok := cfg.Remotes[remoteName]
	if !ok || len(rc.URLs) != 1 || rc.URLs[0] != s.remote {
		return errors.New("it belongs to another repository URL")
	}
	// go-git rewrites a ref file in place: a kill in between leaves it
	// empty, which reads as "not found" below and would wedge every fetch
	// after. Reading every ref catches that.
	iter, err := st.st.IterReferences()
	if err == nil {
		err = iter.ForEach(func(*plumbing.Reference) error { return nil })
	}
	if err != nil {
		return fmt.Errorf("refs: %w", err)
	}
	ref, err := st.st.Reference(fetchedRef)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return nil // created, never fetched into
	}
	if err != nil {
		return fmt.Errorf("ref %s: %w", fetchedRef, err)
	}
	// With ?verify=tag the ref holds the signed tag: its commit is what
	// the store must still have.
	c, err := peel(st.st, ref.Hash(), s.bounds.objectSize)
	if err != nil {
		return fmt.Errorf("commit of %s: %w", ref.Hash(), err)
	}
	if _, err := c.Tree(); err != nil {
		return fmt.Errorf("tree of %s: %w", ref.Hash(), err)
	}
	return nil
}

// initStore creates an empty bare repository next to its final place and
// renames it in, so a killed process never leaves half a store.
func (s *Source) initStore() (_ *store, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("git object store %s: %w", s.storeDir, err)
		}
	}()
	dir := filepath.Dir(s.storeDir)
	if err := kit.StateDir(dir); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(dir, storeDirName+".tmp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp) // nothing left there once renamed
	st, err := openRepo(tmp, true)
	if err != nil {
		return nil, err
	}
	_, err = st.repo.CreateRemote(&config.RemoteConfig{Name: remoteName, URLs: []string{s.remote}})
	st.close()
	if err != nil {
		return nil, err
	}
	os.RemoveAll(s.storeDir)
	if err := os.Rename(tmp, s.storeDir); err != nil {
		return nil, err
	}
	if st, err = openRepo(s.storeDir, false); err != nil {
		return nil, err
	}
	st.fresh = true
	return st, nil
}

// resetStore replaces st with a new, empty store.
func (s *Source) resetStore(st *store) error {
	st.close()
	fresh, err := s.initStore()
	if err != nil {
		return err
	}
	*st = *fresh
	return nil
}

// discardStore removes an unusable store, saying why once.
func (s *Source) discardStore(why error) {
	s.log.Warn("git object store unusable; removing it, the next fetch downloads the commit again", "dir", s.storeDir, "reason", report.FirstLine(why.Error()))
	if err := os.RemoveAll(s.storeDir); err != nil {
		s.log.Error("git object store could not be removed", "dir", s.storeDir, "error", err)
	}
}

// objectFiles counts the store's packs and loose objects: every fetch adds
// to them and nothing else removes them.
func (s *Source) objectFiles() (packs, loose int) {
	p, _ := filepath.Glob(filepath.Join(s.storeDir, "objects", "pack", "*.pack"))
	return len(p), len(s.loose())
}

func (s *Source) loose() []string {
	l, _ := filepath.Glob(filepath.Join(s.storeDir, "objects", "[0-9a-f][0-9a-f]", "*"))
	return l
}

// objectPaths lists every file of the pack directory (packs, indexes,
// temporary files) and every loose object.
func (s *Source) objectPaths() []string {
	p, _ := filepath.Glob(filepath.Join(s.storeDir, "objects", "pack", "*"))
	return append(p, s.loose()...)
}

// removeTempObjects removes the temporary pack and object files go-git
// leaves when a fetch fails or is killed. Nothing else removes them, and on
// a full volume they would keep the space a retry needs.
func (s *Source) removeTempObjects() {
	for _, pattern := range []string{"objects/pack/tmp_*", "objects/tmp_*", "objects/*/tmp_*"} {
		matches, _ := filepath.Glob(filepath.Join(s.storeDir, pattern))
		for _, m := range matches {
			os.RemoveAll(m)
		}
	}
}
