package git

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/redact"
)

// wantRef is what the ref listing said the ref points at.
type wantRef struct {
	hash        plumbing.Hash // commit when commitKnown, else a tag or commit
	commitKnown bool
	tag         plumbing.Hash // the annotated tag whose commit hash is, when listed
}

// candidates are the refs the ref option may name, in the order git clone
// --branch tries them: a branch first, then a tag; a name under refs/ as
// given; none, the remote HEAD.
func (s *Source) candidates() []plumbing.ReferenceName {
	switch {
	case s.semver != nil:
		return []plumbing.ReferenceName{tagsPrefix} // a prefix: every tag
	case s.ref == "":
		return []plumbing.ReferenceName{plumbing.HEAD}
	case strings.HasPrefix(s.ref, "refs/"):
		return []plumbing.ReferenceName{plumbing.ReferenceName(s.ref)}
	}
	return []plumbing.ReferenceName{plumbing.NewBranchReferenceName(s.ref), plumbing.NewTagReferenceName(s.ref)}
}

// tagsPrefix is where tags are; with ?ref=semver:RANGE the listing asks
// for every name under it.
const tagsPrefix = plumbing.ReferenceName("refs/tags/")

// listed tells whether a listing's ref is one resolve may need.
func (s *Source) listed(name plumbing.ReferenceName) bool {
	if s.semver != nil {
		return strings.HasPrefix(name.String(), tagsPrefix.String())
	}
	return slices.Contains(s.candidates(), name)
}

// highestTag picks, for ?ref=semver:RANGE, the highest tag of a listing
// in the range.
func (s *Source) highestTag(refs []*plumbing.Reference) (plumbing.ReferenceName, error) {
	var tags []string
	for _, r := range refs {
		if t, ok := strings.CutPrefix(r.Name().String(), tagsPrefix.String()); ok && !strings.HasSuffix(t, "^{}") {
			tags = append(tags, t)
		}
	}
	tag, ok := fetch.HighestVersion(s.semver, tags, func(t string) string { return t })
	if !ok {
		// Not permanent: a tag in the range may be pushed later.
		return "", fmt.Errorf("git ls-remote %s: no tag of %d matches %s", s.display, len(tags), redact.Semver(s.ref))
	}
	s.tag.Store(&tag)
	return plumbing.NewTagReferenceName(tag), nil
}

// resolve finds the first candidate in a ref listing, following a
// symbolic HEAD to its branch. A listing may hold more refs than the
// candidates, and "NAME^{}" entries for the commits of annotated tags.
func (s *Source) resolve(refs []*plumbing.Reference) (wantRef, error) {
	byName := make(map[plumbing.ReferenceName]*plumbing.Reference, len(refs))
	for _, r := range refs {
		byName[r.Name()] = r
	}
	candidates := s.candidates()
	if s.semver != nil {
		tag, err := s.highestTag(refs)
		if err != nil {
			return wantRef{}, err
		}
		candidates = []plumbing.ReferenceName{tag}
	}
	for _, name := range candidates {
		ref, ok := byName[name]
		if !ok {
			continue
		}
		// Follow a symbolic HEAD to its branch.
		for i := 0; ref.Type() == plumbing.SymbolicReference && i < maxSymrefs; i++ {
			next, ok := byName[ref.Target()]
			if !ok {
				return wantRef{}, fetch.Permanent(fmt.Errorf("git ls-remote %s: %s points at %s, which does not exist (empty repository?)", s.display, name, ref.Target()))
			}
			name, ref = ref.Target(), next
		}
		if ref.Type() != plumbing.HashReference {
			continue
		}
		if peeled, ok := byName[name+"^{}"]; ok {
			return wantRef{hash: peeled.Hash(), commitKnown: true, tag: ref.Hash()}, nil
		}
		// Branches point at commits; a tag without a peeled line may point
		// at a tag object, which is peeled once it is in the store.
		return wantRef{hash: ref.Hash(), commitKnown: !name.IsTag()}, nil
	}
	what := fmt.Sprintf("ref %q not found (no branch or tag of that name; a commit must be given as a full 40-character SHA)", redact.Value(s.ref))
	if s.ref == "" {
		what = "remote HEAD not found (give ?ref=BRANCH)"
	}
	return wantRef{}, fetch.Permanent(fmt.Errorf("git ls-remote %s: %s", s.display, what))
}

// maxSymrefs bounds a chain of symbolic refs (git's own bound is 5).
const maxSymrefs = 5

var errNotCommit = errors.New("does not point at a commit")

// peel follows annotated tags down to the commit. Commits and tags are
// read whole into memory: one larger than objectSize is refused first (a
// file:// repository was never checked as a received pack is).
func peel(st storer.EncodedObjectStorer, h plumbing.Hash, objectSize int64) (*object.Commit, error) {
	for range 10 {
		obj, err := st.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			return nil, err
		}
		if obj.Size() > objectSize {
			return nil, overLimit("%s %s holds %d bytes, more than the limits allow (%d)", obj.Type(), h, obj.Size(), objectSize)
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

// peelCommit peels h to its commit in objs.
func (s *Source) peelCommit(objs storer.EncodedObjectStorer, h plumbing.Hash) (*object.Commit, error) {
	c, err := peel(objs, h, s.bounds.objectSize)
	switch {
	case errors.Is(err, errNotCommit):
		return nil, fetch.Permanent(fmt.Errorf("git %s: ref %q: %s: %w", s.display, s.ref, h, err))
	case err != nil:
		return nil, fmt.Errorf("git %s: object %s: %w", s.display, h, err)
	}
	return c, nil
}
