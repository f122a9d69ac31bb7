package git

import (
	"context"
	"errors"
	"io"
	"slices"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	"github.com/go-git/go-git/v5/storage"
)

// A Fetch of a ref talks to the origin in one session: it lists the ref
// and, only when the ref moved to a commit the store lacks, fetches that
// commit by the hash just listed, on the same go-git upload-pack session.
// go-git's Remote.Fetch would list every ref again first; here a change
// costs one ref listing plus one fetch.
//
// Over SSH and git:// the listing is protocol v0's advertisement of every
// ref, which opens the session (go-git speaks nothing else there), and
// the fetch follows on the same connection. Over HTTP(S) the listing is
// protocol v2's ls-refs when the server offers it (v2.go): one small
// request for the refs asked, however many refs the repository holds.
type session struct {
	s    *Source
	ctx  context.Context // carries the meter that bounds the whole session (limit.go)
	m    *meter
	done func()
	auth transport.AuthMethod
	base string // the repository's URL, as go-git builds its requests from it
	up   transport.UploadPackSession
	// caps are the upload-pack capabilities the fetch may ask for: the
	// v0 advertisement's, or what every v2 server serves (v2.go).
	caps *capability.List
	// v2 tells that the listing holds only the candidates (ls-refs).
	v2 bool
}

// openSession starts a session with the origin. It dials SSH and git://
// servers; over HTTP(S) nothing is sent until the listing.
func (s *Source) openSession(ctx context.Context, auth transport.AuthMethod) (*session, error) {
	ctx, m, done := s.startMeter(ctx)
	ss := &session{s: s, ctx: ctx, m: m, done: done, auth: auth}
	ep, err := transport.NewEndpoint(s.remote)
	if err == nil {
		ss.base = ep.String()
		ep.Proxy = s.proxy(ctx) // bounds the SSH dial and handshake (dial.go)
		var c transport.Transport
		if c, err = client.NewClient(ep); err == nil {
			ss.up, err = c.NewUploadPackSession(ep, auth)
		}
	}
	if err != nil {
		defer done() // after wrap, which tells a cancelled Fetch from a stopped one
		return nil, s.wrap(ctx, "ls-remote", err)
	}
	return ss, nil
}

func (ss *session) close() {
	ss.up.Close()
	ss.done()
}

// ref lists the refs and resolves the source's ref among them.
func (ss *session) ref() (wantRef, error) {
	refs, err := ss.list()
	if err != nil {
		return wantRef{}, ss.s.wrap(ss.ctx, "ls-remote", err)
	}
	want, err := ss.s.resolve(refs)
	if err != nil && ss.v2 {
		// ls-refs cannot tell a missing ref from an empty repository;
		// the v0 advertisement can, and says it as go-git always did.
		if refs, err = ss.advertised(); err != nil {
			return wantRef{}, ss.s.wrap(ss.ctx, "ls-remote", err)
		}
		want, err = ss.s.resolve(refs)
	}
	return want, err
}

// list returns the refs the source may resolve to: over HTTP(S), only its
// candidates when the server speaks protocol v2; else every ref.
func (ss *session) list() ([]*plumbing.Reference, error) {
	if isHTTP(ss.s.scheme) {
		refs, err := ss.listHTTP()
		if !errors.Is(err, errUseGoGit) {
			return refs, err
		}
	}
	return ss.advertised()
}

// advertised reads the v0 advertisement of every ref from the session.
func (ss *session) advertised() ([]*plumbing.Reference, error) {
	ar, err := ss.up.AdvertisedReferencesContext(ss.ctx)
	if err != nil {
		return nil, err
	}
	ss.caps, ss.v2 = ar.Capabilities, false
	return advertisedRefs(ar)
}

// advertisedRefs lists a v0 advertisement as go-git's Remote.List does,
// with the commits of annotated tags as "NAME^{}".
func advertisedRefs(ar *packp.AdvRefs) ([]*plumbing.Reference, error) {
	all, err := ar.AllReferences()
	if err != nil {
		return nil, err
	}
	refs := make([]*plumbing.Reference, 0, len(all)+len(ar.Peeled))
	for _, r := range all {
		refs = append(refs, r)
	}
	for name, h := range ar.Peeled {
		refs = append(refs, plumbing.NewHashReference(plumbing.ReferenceName(name+"^{}"), h))
	}
	return refs, nil
}

// fetch downloads h, the target of a ref just listed, into the store: it
// wants h at the source's depth and has the commit the store holds, so
// the server sends only what is new, as a thin pack. Whether h came is
// the caller's to check (received).
func (ss *session) fetch(st *store, h plumbing.Hash) error {
	s := ss.s
	req := packp.NewUploadPackRequestFromCapabilities(ss.caps)
	req.Wants = []plumbing.Hash{h}
	req.Depth = packp.DepthCommits(s.fetchDepth())
	req.Capabilities.Set(capability.Shallow)
	if ss.caps.Supports(capability.NoProgress) {
		req.Capabilities.Set(capability.NoProgress)
	}
	shallows, err := st.st.Shallow()
	if err != nil {
		return s.wrap(ss.ctx, "fetch", storeErr(err))
	}
	// Our history ends at these commits: the server must not count on
	// their parents.
	req.Shallows = shallows
	if ref, err := st.st.Reference(fetchedRef); err == nil {
		if c, err := peel(st.st, ref.Hash(), s.bounds.objectSize); err == nil {
			req.Haves = []plumbing.Hash{c.Hash}
		}
	}
	err = s.receive(ss.ctx, ss.m, st, func(sto storage.Storer) error {
		res, err := ss.up.UploadPack(ss.ctx, req)
		if err != nil {
			return err
		}
		defer res.Close()
		if err := addShallows(sto, res.Shallows); err != nil {
			return err
		}
		return packfile.UpdateObjectStorage(sto, demux(req.Capabilities, res))
	})
	return err
}

// addShallows records where the server cut the history it sent, as
// go-git's own fetch does.
func addShallows(st storer.ShallowStorer, cut []plumbing.Hash) error {
	if len(cut) == 0 {
		return nil
	}
	shallows, err := st.Shallow()
	if err != nil {
		return err
	}
	for _, h := range cut {
		if !slices.Contains(shallows, h) {
			shallows = append(shallows, h)
		}
	}
	return st.SetShallow(shallows)
}

// demux takes the pack out of the side-band the request asked for.
func demux(caps *capability.List, r io.Reader) io.Reader {
	switch {
	case caps.Supports(capability.Sideband64k):
		return sideband.NewDemuxer(sideband.Sideband64k, r)
	case caps.Supports(capability.Sideband):
		return sideband.NewDemuxer(sideband.Sideband, r)
	}
	return r
}
