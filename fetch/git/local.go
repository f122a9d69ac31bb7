package git

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/ferrysync/ferry/fetch"
)

// A git::file:// source reads the repository in place with go-git, as the
// object store of the other transports is read: no git process, no copy
// of the objects, and a poll that finds nothing new reads a ref or two.
// The repository may be bare, a work tree's (its committed tree is
// published, as git clone would, never the work tree), or the one a .git
// file names (a linked work tree, a submodule).
//
// Nothing is downloaded, so the bounds on what a fetch receives have
// nothing to count; those on one object hold (export.go, refs.go): a blob
// over the file size limit is refused before it is read, a tree or commit
// over the object bound before it is decoded, and the Writer enforces the
// rest.

// fetchLocal is Fetch for a file:// source.
func (s *Source) fetchLocal(ctx context.Context, prev string, w fetch.Writer, start time.Time) (string, error) {
	s.dropStore()
	st, err := openLocal(s.localDir)
	if errors.Is(err, gogit.ErrRepositoryNotExists) {
		return "", fetch.Permanent(fmt.Errorf("git %s: no git repository at %s", s.display, s.localDir))
	}
	if err != nil {
		return "", fmt.Errorf("git %s: %w", s.display, err)
	}
	defer st.Close()
	target := s.sha
	if target.IsZero() {
		candidates := s.candidates()
		if s.semver != nil {
			if candidates, err = localTags(st); err != nil {
				return "", fmt.Errorf("git %s: tags: %w", s.display, err)
			}
		}
		refs, err := localRefs(st, candidates)
		if err != nil {
			return "", fmt.Errorf("git %s: %w", s.display, err)
		}
		want, err := s.resolve(refs)
		if err != nil {
			return "", err
		}
		if want.commitKnown && s.unchanged(want.hash, prev) && s.isTrusted(want.hash, want.tag) {
			return s.done(want.hash, prev), nil
		}
		target = want.hash
	}
	c, err := s.peelCommit(st, target)
	if errors.Is(err, plumbing.ErrObjectNotFound) && target == s.sha {
		return "", fetch.Permanent(fmt.Errorf("git %s: commit %s not found in the repository", s.display, s.sha))
	}
	if err != nil {
		return "", err
	}
	rev, err := s.publish(ctx, st, nil, c, target, prev, w, start, false)
	if errors.Is(err, fetch.ErrUntrusted) {
		return "", err // names the commit already
	}
	if err != nil {
		return "", fmt.Errorf("git export %s commit %s: %w", s.display, c.Hash, err)
	}
	return rev, nil
}

// openLocal opens the repository at dir for reading. go-git finds its
// object database as git would (a bare repository, a .git directory, the
// one a .git file names, with its common directory); it is then read with
// the options of the object store (newStorage), and the alternates it
// names by absolute path (git clone --shared, --reference). go-git opens
// an alternate anew for each object the repository lacks: a shared clone
// exports a few times slower than the repository it borrows from.
func openLocal(dir string) (*filesystem.Storage, error) {
	repo, err := gogit.PlainOpenWithOptions(dir, &gogit.PlainOpenOptions{EnableDotGitCommonDir: true})
	if err != nil {
		return nil, err
	}
	found, ok := repo.Storer.(*filesystem.Storage)
	if !ok {
		return nil, gogit.ErrRepositoryNotExists
	}
	return newStorage(found.Filesystem(), osfs.New("/")), nil
}

// localRefs looks the candidates up in st, with the refs a symbolic one
// leads to (HEAD to its branch), as many as resolve follows.
func localRefs(st storer.ReferenceStorer, candidates []plumbing.ReferenceName) ([]*plumbing.Reference, error) {
	var refs []*plumbing.Reference
	for _, name := range candidates {
		for range maxSymrefs {
			ref, err := st.Reference(name)
			if errors.Is(err, plumbing.ErrReferenceNotFound) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("ref %s: %w", name, err)
			}
			refs = append(refs, ref)
			if ref.Type() != plumbing.SymbolicReference {
				break
			}
			name = ref.Target()
		}
	}
	return refs, nil
}

// localTags lists the names of every tag in st, for ?ref=semver:.
func localTags(st storer.ReferenceStorer) ([]plumbing.ReferenceName, error) {
	iter, err := st.IterReferences()
	if err != nil {
		return nil, err
	}
	defer iter.Close()
	var tags []plumbing.ReferenceName
	err = iter.ForEach(func(r *plumbing.Reference) error {
		if r.Name().IsTag() {
			tags = append(tags, r.Name())
		}
		return nil
	})
	return tags, err
}

// dropStore removes, once, the object store an earlier version of ferry
// fetched a file:// repository into: nothing reads it now.
func (s *Source) dropStore() {
	if !s.storeDropped {
		s.storeDropped = true
		os.RemoveAll(s.storeDir)
	}
}
