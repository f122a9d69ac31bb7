package git

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"github.com/ferrysync/ferry/fetch"
)

// origin ties a revision to the commit it was taken from.
type origin struct {
	commit plumbing.Hash
	rev    string
}

// OriginRevision returns the commit the last successful Fetch resolved:
// for a //subdir source, the newest commit whose subdirectory is the
// published revision; with ?ref=semver:RANGE, TAG@COMMIT, the tag picked
// in front. It is "" before the first. Safe to call while Fetch runs.
func (s *Source) OriginRevision() string {
	o := s.last.Load()
	if o == nil {
		return ""
	}
	if t := s.tag.Load(); s.semver != nil && t != nil {
		return *t + "@" + o.commit.String() // the tag ?ref=semver: picked
	}
	return o.commit.String()
}

// Fetch resolves the ref and, when it names a commit other than the
// published one, fetches that commit into the object store (unless it is
// already there) and writes its tree through w. The ref is listed and the
// commit fetched in one session with the origin (session.go); a file://
// repository is read in place (local.go). The revision is the commit SHA;
// for a //subdir source it is the subdirectory's tree SHA, so a commit
// that leaves the subdirectory alone returns prev.
func (s *Source) Fetch(ctx context.Context, prev string, w fetch.Writer) (string, error) {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := s.loadKeys(); err != nil {
		return "", err
	}
	if !s.sha.IsZero() && s.unchanged(s.sha, prev) && s.isTrusted(s.sha, plumbing.ZeroHash) {
		// A pinned commit never changes: no network at all.
		return s.done(s.sha, prev), nil
	}
	if s.scheme == "file" {
		return s.fetchLocal(ctx, prev, w, start)
	}
	auth, err := s.auth(ctx)
	if err != nil {
		return "", err
	}
	if s.opts.InsecureIgnoreHostKey {
		s.log.Warn("SSH host key not verified (host key checking is off): a man-in-the-middle could serve any content", "url", s.display)
	}
	var (
		sess *session
		want wantRef
	)
	if s.sha.IsZero() {
		if sess, err = s.openSession(ctx, auth); err != nil {
			return "", err
		}
		defer sess.close()
		if want, err = sess.ref(); err != nil {
			return "", err
		}
		if want.commitKnown && s.unchanged(want.hash, prev) && s.isTrusted(want.hash, want.tag) {
			return s.done(want.hash, prev), nil
		}
	}

	st, err := s.openStore()
	if err != nil {
		return "", err
	}
	defer func() {
		st.close()
		s.removeTempObjects()
	}()
	if sess != nil {
		// A first pack's files are written as it is indexed (early.go).
		st.early = &earlyExport{s: s, ctx: ctx, w: w, prev: prev, tip: s.tip(want)}
	}
	commit, tip, fetched, err := s.commit(ctx, st, auth, sess, want)
	if err != nil {
		if diskFull(err) {
			// What a failed fetch wrote (objects of a thin pack are stored
			// loose) keeps the space the next fetch needs: the store is a
			// cache, so it goes, and a smaller commit can still land.
			st.close()
			s.discardStore(err)
		}
		return "", err
	}
	rev, err := s.publish(ctx, st.objects(ctx, s.packDir(), s.bounds), st.early, commit, tip, prev, w, start, fetched)
	if err != nil {
		return "", s.exportError(st, commit, err)
	}
	return rev, nil
}

// publish writes the tree of commit c, read from objs, through w, unless
// it is the published revision prev, and returns the revision: all but
// the files early (nil, or the index pass of the pack, early.go) wrote
// already. tip is the object the ref named (verify.go); nothing is
// written unless c (or tip) is signed as the source asks. start is when
// the Fetch began; downloaded tells whether it used the network.
func (s *Source) publish(ctx context.Context, objs storer.EncodedObjectStorer, early *earlyExport, c *object.Commit, tip plumbing.Hash, prev string, w fetch.Writer, start time.Time, downloaded bool) (string, error) {
	resolved := time.Now()
	tree, err := s.tree(objs, c)
	if err != nil {
		return "", err
	}
	x := &export{objs: objs, w: w, modules: &gitmodules{root: c.TreeHash}, early: early}
	rev, err := s.revision(ctx, x, c, tree)
	if err != nil {
		return "", err
	}
	// For a //subdir, a commit that left the subdirectory alone is not the
	// one published: after a restart, which one was is not known.
	last := s.last.Load()
	published := rev == prev && (last == nil || last.commit == c.Hash)
	if err := s.checkTrust(objs, tip, c, published); err != nil {
		return "", err
	}
	if rev == prev {
		return s.done(c.Hash, prev), nil
	}
	top := s.sub.nesting == 0
	if top {
		s.sub.run = &subRun{stateDir: filepath.Dir(s.storeDir), used: map[string]bool{}}
	}
	if err := s.writeTree(ctx, x, tree); err != nil {
		return "", err
	}
	if top {
		s.removeUnusedSubmodules()
	}
	s.log.Info("git commit exported", "commit", c.Hash.String(), "revision", rev, "downloaded", downloaded,
		"fetch_duration", resolved.Sub(start).Round(time.Millisecond), "export_duration", time.Since(resolved).Round(time.Millisecond))
	return s.done(c.Hash, rev), nil
}

// revision names what commit c publishes, tree: the commit SHA; the
// subdirectory's tree SHA for a //subdir; a digest of the selected
// entries for ?paths= (paths.go). Each covers the gitlinks it holds, so a
// submodule pinned to another commit is a new revision. When submodules
// are fetched and .gitmodules maps one inside the tree, the mode is added
// ("-recursive", "-shallow"): the same commit published by a ferry that
// left submodules empty (?submodules=off, or before they were fetched) is
// another tree, and must not pass for unchanged.
func (s *Source) revision(ctx context.Context, x *export, c *object.Commit, tree *object.Tree) (string, error) {
	if s.paths != nil {
		return s.pathsRevision(ctx, x.objs, tree)
	}
	rev := c.Hash.String()
	if s.subdir != "" {
		rev = tree.Hash.String()
	}
	subs, err := s.hasSubmodules(x.objs, x.modules)
	if err != nil {
		return "", err
	}
	if subs {
		rev += "-" + s.submodules.String()
	}
	return rev, nil
}

// unchanged tells, without the object store, whether commit c is known to
// publish prev: when c is the commit the last Fetch resolved to prev; or,
// when the revision can only be the commit SHA (no //subdir, no ?paths=,
// submodules off), when prev is c's SHA. After a restart, a source whose
// revision depends on the tree reads it from the store once (no download).
func (s *Source) unchanged(c plumbing.Hash, prev string) bool {
	if o := s.last.Load(); o != nil && o.commit == c && o.rev == prev {
		return true
	}
	return s.subdir == "" && s.paths == nil && s.submodules == subOff && c.String() == prev
}

// done remembers that commit c gave rev, and returns rev.
func (s *Source) done(c plumbing.Hash, rev string) string {
	s.last.Store(&origin{commit: c, rev: rev})
	return rev
}

// exportError says which commit could not be exported. An unreadable
// store is removed, so the next sync fetches again.
func (s *Source) exportError(st *store, c *object.Commit, err error) error {
	if errors.Is(err, fetch.ErrUntrusted) {
		return err // names the commit already
	}
	var se *storeError
	if errors.As(err, &se) {
		st.close()
		s.discardStore(err)
		return fmt.Errorf("git export %s commit %s: object store was unreadable and has been removed; the next sync fetches again: %w", s.display, c.Hash, err)
	}
	return fmt.Errorf("git export %s commit %s: %w", s.display, c.Hash, err)
}
