package git

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/report"
)

const (
	// allRefsPrefix receives every branch and tag in the deep fallback
	// fetch of a pinned SHA; removed afterwards.
	allRefsPrefix = "refs/ferry/all/"
	// infiniteDepth is git's "deepen to the root" (what --unshallow sends).
	infiniteDepth = 0x7fffffff
)

// commit makes sure the wanted commit is in the store, fetching it when it
// is not, and returns it with the object the ref named (the tip: an
// annotated tag whose signature is checked, else the commit). fetched
// tells whether the network was used. A commit the store holds (the last
// one fetched, after a restart) costs no download; a new one comes as a
// thin pack (thin.go): in sess, the session that listed the ref, or, for a
// pinned commit, by fetchSHA.
func (s *Source) commit(ctx context.Context, st *store, auth transport.AuthMethod, sess *session, want wantRef) (*object.Commit, plumbing.Hash, bool, error) {
	target := s.tip(want)
	if !s.sha.IsZero() {
		target = s.sha
	}
	if st.hasObject(target) {
		c, err := s.peelCommit(st.st, target)
		return c, target, false, err
	}
	if packs, loose := s.objectFiles(); !st.fresh && (packs >= maxPacks || loose >= maxLoose) {
		// Compact by starting over: one depth-limited fetch, no history.
		s.log.Info("git object store has grown; starting a fresh one", "packs", packs, "loose_objects", loose)
		if err := s.resetStore(st); err != nil {
			return nil, target, false, err
		}
	}
	var err error
	if sess != nil {
		err = sess.fetch(st, target)
	} else {
		err = s.fetchSHA(ctx, st, auth)
	}
	if err == nil {
		err = s.received(st, target)
	}
	if err != nil {
		return nil, target, true, err
	}
	c, err := s.peelCommit(st.st, target)
	return c, target, true, err
}

// received checks that the fetch brought target, the object asked for,
// before it becomes the store's last commit fetched (fetchedRef) and is
// exported: what a server sends is its own choice, and a pinned commit
// or the hash just listed is the only one the source may publish. The
// server may have sent another commit (a ref moved between two listings,
// or a hostile answer); exporting what a ref names after the fact would
// publish it.
func (s *Source) received(st *store, target plumbing.Hash) error {
	if !st.hasObject(target) {
		what := target.String() + " (what the ref names)"
		if !s.sha.IsZero() {
			what = "pinned commit " + target.String()
		}
		return fmt.Errorf("git fetch %s: %s is not what the server sent", s.display, what)
	}
	if err := st.st.SetReference(plumbing.NewHashReference(fetchedRef, target)); err != nil {
		return fmt.Errorf("git fetch %s: %w", s.display, storeErr(err))
	}
	return nil
}

func (s *Source) fetchDepth() int {
	if s.depth == 0 {
		return infiniteDepth
	}
	return s.depth
}

// fetchSpecs runs one go-git fetch with forced refspecs (force-pushes and
// rewinds replace the local ref) and no tags: go-git lists the remote's
// refs again itself, which only a pinned commit's fetch pays for.
func (s *Source) fetchSpecs(ctx context.Context, st *store, auth transport.AuthMethod, depth int, specs ...config.RefSpec) error {
	ctx, m, done := s.startMeter(ctx)
	defer done()
	return s.receive(ctx, m, st, func(sto storage.Storer) error {
		remote := gogit.NewRemote(sto, &config.RemoteConfig{Name: remoteName, URLs: []string{s.remote}})
		err := remote.FetchContext(ctx, &gogit.FetchOptions{
			RemoteName:   remoteName,
			RemoteURL:    s.remote,
			RefSpecs:     specs,
			Depth:        depth,
			Auth:         auth,
			Tags:         gogit.NoTags,
			Force:        true,
			ProxyOptions: s.proxy(ctx), // bounds the SSH dial and handshake (dial.go)
		})
		if errors.Is(err, gogit.NoErrAlreadyUpToDate) {
			return nil
		}
		return err
	})
}

// receive runs download, which writes one pack into sto, the store as a
// fetch sees it: the pack is counted on m and checked against the bounds
// before it is stored (pack.go); once the store holds a commit, the pack
// is thin, and its objects are stored loose (thin.go). A failed download
// leaves the store as it found it.
func (s *Source) receive(ctx context.Context, m *meter, st *store, download func(sto storage.Storer) error) error {
	var into storer.Storer = st.st
	if _, err := st.st.Reference(fetchedRef); err == nil {
		into = unpacked(st.st)
	}
	sto := &meteredStorer{ctx: ctx, Storer: st.st, into: into, dir: s.packDir(), meter: m, early: st.early}
	rb := s.rollbackPoint(st)
	err := download(sto)
	if err == nil {
		st.pack = sto.indexed
		return nil
	}
	s.undo(st, rb)
	return s.wrap(ctx, "fetch", err)
}

// fetchSHA fetches a pinned commit by its SHA: in the session that
// advertises it as the tip of a branch or tag, which every server sends;
// else unadvertised, which needs the server's
// uploadpack.allowReachableSHA1InWant; else with the full history of
// every branch and tag. It never fetches a ref by name: by then the ref
// may name another commit.
func (s *Source) fetchSHA(ctx context.Context, st *store, auth transport.AuthMethod) error {
	err := s.fetchAdvertised(ctx, st, auth)
	if !errors.Is(err, errNotAdvertised) && (err == nil || !refusedSHA(err)) {
		return err
	}
	// allRefsPrefix, not fetchedRef: the store's last commit moves only
	// once the fetch brought the pinned one (received).
	err = s.fetchSpecs(ctx, st, auth, s.fetchDepth(), config.RefSpec("+"+s.sha.String()+":"+allRefsPrefix+"pinned"))
	removeRefs(st.st, allRefsPrefix)
	if err == nil || !refusedSHA(err) {
		return err
	}
	s.log.Info("git server refused to send a commit by SHA (it needs uploadpack.allowReachableSHA1InWant); fetching the full history of its branches and tags instead",
		"commit", s.sha.String(), "reason", report.FirstLine(err.Error()))
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
	if !st.hasObject(s.sha) {
		return fetch.Permanent(fmt.Errorf("git fetch %s: commit %s not found in any branch or tag", s.display, s.sha))
	}
	return nil
}

// errNotAdvertised: no branch or tag points at the pinned commit.
var errNotAdvertised = errors.New("no branch or tag points at the commit")

// fetchAdvertised fetches the pinned commit in one session with the
// origin, when its advertisement of every ref shows a branch or tag that
// points at it: it wants the commit itself, or the annotated tag whose
// commit it is ("refs/tags/v1^{}"), which a server sends when it
// advertised it. It returns errNotAdvertised when no ref points at it.
func (s *Source) fetchAdvertised(ctx context.Context, st *store, auth transport.AuthMethod) error {
	sess, err := s.openSession(ctx, auth)
	if err != nil {
		return err
	}
	defer sess.close()
	refs, err := sess.advertised()
	if err != nil {
		return s.wrap(sess.ctx, "ls-remote", err)
	}
	want, ok := advertisedAs(refs, s.sha)
	if !ok {
		return errNotAdvertised
	}
	return sess.fetch(st, want)
}

// advertisedAs finds what to want for commit h in an advertisement: h
// when a branch or tag points at it, else the annotated tag whose commit
// it is (the first by name, the same choice every time).
func advertisedAs(refs []*plumbing.Reference, h plumbing.Hash) (plumbing.Hash, bool) {
	tags := make(map[plumbing.ReferenceName]plumbing.Hash)
	var peeled []plumbing.ReferenceName
	for _, r := range refs {
		if r.Type() != plumbing.HashReference {
			continue
		}
		if tag, ok := strings.CutSuffix(r.Name().String(), "^{}"); ok {
			if r.Hash() == h {
				peeled = append(peeled, plumbing.ReferenceName(tag))
			}
			continue
		}
		if !r.Name().IsBranch() && !r.Name().IsTag() {
			continue
		}
		if r.Hash() == h {
			return h, true
		}
		tags[r.Name()] = r.Hash()
	}
	slices.Sort(peeled)
	for _, name := range peeled {
		if tag, ok := tags[name]; ok && name.IsTag() {
			return tag, true
		}
	}
	return plumbing.ZeroHash, false
}

// refusedSHA tells whether a fetch by SHA failed because the server would
// not send an unadvertised commit, as opposed to an outage.
func refusedSHA(err error) bool {
	return errors.Is(err, gogit.ErrExactSHA1NotSupported) || strings.Contains(err.Error(), "not our ref") || strings.Contains(err.Error(), "upload-pack: not our")
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

// rollback is what a failed fetch must put back: the object files it
// added (a spool, a temporary pack, the loose objects of a thin pack, an
// index) and the shallow list, which go-git updates before the pack
// arrives. Nothing else writes the store during a fetch.
type rollback struct {
	files   map[string]bool
	shallow []plumbing.Hash
	err     error
}

func (s *Source) rollbackPoint(st *store) rollback {
	rb := rollback{files: map[string]bool{}}
	for _, f := range s.objectPaths() {
		rb.files[f] = true
	}
	rb.shallow, rb.err = st.st.Shallow()
	return rb
}

func (s *Source) undo(st *store, rb rollback) {
	for _, f := range s.objectPaths() {
		if !rb.files[f] {
			os.Remove(f)
		}
	}
	if rb.err == nil {
		st.st.SetShallow(rb.shallow)
	}
}
