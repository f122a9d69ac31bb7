package git

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-git/go-billy/v5/osfs"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/kit"
)

const (
	// storeDirName is the bare repository under the source's state dir.
	storeDirName = "repo.git"
	remoteName   = "origin"
	// fetchedRef holds the last commit fetched: it is what the next fetch
	// offers as "have", so only new objects travel.
	fetchedRef = plumbing.ReferenceName("refs/ferry/fetched")
	// allRefsPrefix receives every branch and tag in the deep fallback
	// fetch of a pinned SHA; removed afterwards.
	allRefsPrefix = "refs/ferry/all/"
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
	// infiniteDepth is git's "deepen to the root" (what --unshallow sends).
	infiniteDepth = 0x7fffffff
)

// store is the bare object store, open for one Fetch.
type store struct {
	repo  *gogit.Repository
	st    *filesystem.Storage
	fresh bool // created by this Fetch: nothing to reuse, nothing to distrust
}

func (st *store) close() {
	if st.st != nil {
		st.st.Close()
		st.st = nil
	}
}

// openStore opens the object store, creating it on first use. A store that
// does not open, belongs to another URL or has lost its last commit is
// removed and created again, with one warning.
func (s *Source) openStore() (*store, error) {
	s.removeTempObjects()
	if _, err := os.Stat(s.storeDir); errors.Is(err, fs.ErrNotExist) {
		return s.initStore()
	}
	st, err := openRepo(s.storeDir)
	if err == nil {
		err = s.checkStore(st)
		if err != nil {
			st.close()
		}
	}
	if err != nil {
		s.discardStore(err)
		return s.initStore()
	}
	return st, nil
}

// discardStore removes an unusable store, saying why once.
func (s *Source) discardStore(why error) {
	s.log.Warn("git object store unusable; removing it, the next fetch downloads the commit again", "dir", s.storeDir, "reason", kit.FirstLine(why.Error()))
	if err := os.RemoveAll(s.storeDir); err != nil {
		s.log.Error("git object store could not be removed", "dir", s.storeDir, "error", err)
	}
}

func openRepo(dir string) (*store, error) {
	fsys := osfs.New(dir)
	st := filesystem.NewStorageWithOptions(fsys, cache.NewObjectLRU(objectCacheSize), filesystem.Options{
		KeepDescriptors:      true, // export reads thousands of objects: do not reopen the pack for each
		LargeObjectThreshold: largeObjectThreshold,
	})
	repo, err := gogit.Open(st, nil)
	if err != nil {
		st.Close()
		return nil, err
	}
	return &store{repo: repo, st: st}, nil
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
	c, err := object.GetCommit(st.st, ref.Hash())
	if err != nil {
		return fmt.Errorf("commit %s: %w", ref.Hash(), err)
	}
	if _, err := c.Tree(); err != nil {
		return fmt.Errorf("tree of %s: %w", ref.Hash(), err)
	}
	return nil
}

// initStore creates an empty bare repository next to its final place and
// renames it in, so a killed process never leaves half a store.
func (s *Source) initStore() (*store, error) {
	if err := os.MkdirAll(filepath.Dir(s.storeDir), 0o755); err != nil {
		return nil, fmt.Errorf("git object store: %w", err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	tmp := s.storeDir + ".tmp-" + hex.EncodeToString(b)
	err := func() error {
		st, err := openOrInit(tmp)
		if err != nil {
			return err
		}
		defer st.close()
		_, err = st.repo.CreateRemote(&config.RemoteConfig{Name: remoteName, URLs: []string{s.remote}})
		return err
	}()
	if err == nil {
		os.RemoveAll(s.storeDir)
		err = os.Rename(tmp, s.storeDir)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("git object store %s: %w", s.storeDir, err)
	}
	st, err := openRepo(s.storeDir)
	if err != nil {
		return nil, fmt.Errorf("git object store %s: %w", s.storeDir, err)
	}
	st.fresh = true
	return st, nil
}

func openOrInit(dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	st := filesystem.NewStorage(osfs.New(dir), cache.NewObjectLRU(objectCacheSize))
	repo, err := gogit.Init(st, nil)
	if err != nil {
		st.Close()
		return nil, err
	}
	return &store{repo: repo, st: st}, nil
}

// objectFiles counts the store's packs and loose objects: every fetch adds
// to them and nothing is ever removed.
func (s *Source) objectFiles() (packs, loose int) {
	m, _ := filepath.Glob(filepath.Join(s.storeDir, "objects", "pack", "*.pack"))
	l, _ := filepath.Glob(filepath.Join(s.storeDir, "objects", "[0-9a-f][0-9a-f]", "*"))
	return len(m), len(l)
}

// objectPaths lists every file of the pack directory (packs, indexes,
// temporary files) and every loose object.
func (s *Source) objectPaths() []string {
	p, _ := filepath.Glob(filepath.Join(s.storeDir, "objects", "pack", "*"))
	l, _ := filepath.Glob(filepath.Join(s.storeDir, "objects", "[0-9a-f][0-9a-f]", "*"))
	return append(p, l...)
}

// resetStore replaces st with a new, empty store.
func (s *Source) resetStore(st *store) error {
	st.close()
	os.RemoveAll(s.storeDir)
	fresh, err := s.initStore()
	if err != nil {
		return err
	}
	*st = *fresh
	return nil
}

// hasObject reports whether h is in the store (a commit in a depth-limited
// store always comes with its whole tree).
func hasObject(st *store, h plumbing.Hash) bool {
	return st.st.HasEncodedObject(h) == nil
}

// commit makes sure the wanted commit is in the store, fetching it when it
// is not, and returns it. fetched tells whether the network was used.
func (s *Source) commit(ctx context.Context, st *store, auth transport.AuthMethod, want wantRef) (*object.Commit, bool, error) {
	target := want.hash
	if !s.sha.IsZero() {
		target = s.sha
	}
	if hasObject(st, target) {
		c, err := peel(st.st, target)
		if err != nil {
			return nil, false, s.peelError(target, err)
		}
		return c, false, nil
	}
	if packs, loose := s.objectFiles(); !st.fresh && (packs >= maxPacks || loose >= maxLoose) {
		// Compact by starting over: one depth-limited fetch, no history.
		s.log.Info("git object store has grown; starting a fresh one", "packs", packs, "loose_objects", loose)
		if err := s.resetStore(st); err != nil {
			return nil, false, err
		}
	}

	if !s.sha.IsZero() {
		if err := s.fetchSHA(ctx, st, auth); err != nil {
			return nil, true, err
		}
	} else {
		spec := config.RefSpec("+" + want.name.String() + ":" + fetchedRef.String())
		if err := s.fetchSpecs(ctx, st, auth, s.fetchDepth(), spec); err != nil {
			return nil, true, err
		}
	}
	ref, err := st.st.Reference(fetchedRef)
	if err != nil {
		return nil, true, fmt.Errorf("git fetch %s: %w", s.display, err)
	}
	// The remote may have moved on since ls-remote: publish what arrived.
	c, err := peel(st.st, ref.Hash())
	if err != nil {
		return nil, true, s.peelError(ref.Hash(), err)
	}
	return c, true, nil
}

func (s *Source) fetchDepth() int {
	if s.depth == 0 {
		return infiniteDepth
	}
	return s.depth
}

func (s *Source) peelError(h plumbing.Hash, err error) error {
	if errors.Is(err, errNotCommit) {
		return fetch.Permanent(fmt.Errorf("git %s: ref %q: %s: %w", s.display, s.ref, h, err))
	}
	return fmt.Errorf("git %s: object %s: %w", s.display, h, err)
}

// fetchSpecs runs one fetch with forced refspecs (force-pushes and rewinds
// replace the local ref) and no tags, bounded by the limits (limit.go,
// pack.go). A failed fetch leaves the store as it found it.
func (s *Source) fetchSpecs(ctx context.Context, st *store, auth transport.AuthMethod, depth int, specs ...config.RefSpec) error {
	var into storer.Storer = st.st
	if _, err := st.st.Reference(fetchedRef); err == nil {
		// The server will send a thin pack (see thin.go): store its objects
		// loose, resolving deltas against what the store holds.
		into = unpacked(st.st)
	}
	ctx, m, done := s.startMeter(ctx)
	defer done()
	sto := &meteredStorer{Storer: st.st, into: into, dir: filepath.Join(s.storeDir, "objects", "pack"), meter: m}
	rb := s.rollbackPoint(st)
	remote := gogit.NewRemote(sto, &config.RemoteConfig{Name: remoteName, URLs: []string{s.remote}})
	err := remote.FetchContext(ctx, &gogit.FetchOptions{
		RemoteName: remoteName,
		RemoteURL:  s.remote,
		RefSpecs:   specs,
		Depth:      depth,
		Auth:       auth,
		Tags:       gogit.NoTags,
		Force:      true,
		// go-git does not bound the SSH dial and handshake by ctx.
		ProxyOptions: s.proxy(ctx),
	})
	if err == nil || errors.Is(err, gogit.NoErrAlreadyUpToDate) {
		return nil
	}
	s.undo(st, rb)
	return s.wrap(ctx, "fetch", err)
}

// fetchSHA fetches a pinned commit: by the ref that points at it when there
// is one, else by its SHA (which needs the server's
// uploadpack.allowReachableSHA1InWant), else the full history of every
// branch and tag.
func (s *Source) fetchSHA(ctx context.Context, st *store, auth transport.AuthMethod) error {
	refs, err := s.lsRemote(ctx, auth)
	if err != nil {
		return err
	}
	// A branch or tag pointing at the commit can be fetched by name, which
	// every server allows; "refs/tags/v1^{}" is an annotated tag's commit.
	var byName []string
	for _, r := range refs {
		if r.Type() == plumbing.HashReference && r.Hash() == s.sha && (r.Name().IsBranch() || r.Name().IsTag()) {
			byName = append(byName, strings.TrimSuffix(r.Name().String(), "^{}"))
		}
	}
	if len(byName) > 0 {
		slices.Sort(byName) // branches before tags, the same choice every time
		return s.fetchSpecs(ctx, st, auth, s.fetchDepth(), config.RefSpec("+"+byName[0]+":"+fetchedRef.String()))
	}
	err = s.fetchSpecs(ctx, st, auth, s.fetchDepth(), config.RefSpec("+"+s.sha.String()+":"+fetchedRef.String()))
	if err == nil || !refusedSHA(err) {
		return err
	}
	s.log.Info("git server refused to send a commit by SHA (it needs uploadpack.allowReachableSHA1InWant); fetching the full history of its branches and tags instead",
		"commit", s.sha.String(), "reason", kit.FirstLine(err.Error()))
	// A whole history is best received as one pack, into an empty store.
	if err := s.resetStore(st); err != nil {
		return err
	}
	err = s.fetchSpecs(ctx, st, auth, infiniteDepth,
		config.RefSpec("+refs/heads/*:"+allRefsPrefix+"heads/*"),
		config.RefSpec("+refs/tags/*:"+allRefsPrefix+"tags/*"))
	removeRefs(st.st, allRefsPrefix)
	if err != nil {
		return err
	}
	if !hasObject(st, s.sha) {
		return fetch.Permanent(fmt.Errorf("git fetch %s: commit %s not found in any branch or tag", s.display, s.sha))
	}
	return st.st.SetReference(plumbing.NewHashReference(fetchedRef, s.sha))
}

// refusedSHA tells whether a fetch by SHA failed because the server would
// not send an unadvertised commit, as opposed to an outage.
func refusedSHA(err error) bool {
	if errors.Is(err, gogit.ErrExactSHA1NotSupported) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "not our ref") || strings.Contains(msg, "upload-pack: not our")
}

func removeRefs(st storer.ReferenceStorer, prefix string) {
	iter, err := st.IterReferences()
	if err != nil {
		return
	}
	var names []plumbing.ReferenceName
	iter.ForEach(func(r *plumbing.Reference) error {
		if strings.HasPrefix(r.Name().String(), prefix) {
			names = append(names, r.Name())
		}
		return nil
	})
	for _, n := range names {
		st.RemoveReference(n)
	}
}

var errNotCommit = errors.New("does not point at a commit")

// peel follows annotated tags down to the commit.
func peel(st storer.EncodedObjectStorer, h plumbing.Hash) (*object.Commit, error) {
	for range 10 {
		obj, err := st.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			return nil, err
		}
		switch obj.Type() {
		case plumbing.CommitObject:
			return object.DecodeCommit(st, obj)
		case plumbing.TagObject:
			tag, err := object.DecodeTag(st, obj)
			if err != nil {
				return nil, err
			}
			h = tag.Target
		default:
			return nil, fmt.Errorf("%w (it is a %s)", errNotCommit, obj.Type())
		}
	}
	return nil, fmt.Errorf("%w (tags nested too deep)", errNotCommit)
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
