package git

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"github.com/ferrysync/ferry/fetch"
)

// maxSymlinkTarget bounds a symlink blob: a path, never a file's worth.
const maxSymlinkTarget = 4096

// tree returns the tree of commit c that is published: the root, or the
// //subdir.
func (s *Source) tree(objs storer.EncodedObjectStorer, c *object.Commit) (*object.Tree, error) {
	tree, err := s.getTree(objs, c.TreeHash)
	if err != nil || s.subdir == "" {
		return tree, err
	}
	entry, err := tree.FindEntry(s.subdir)
	switch {
	case errors.Is(err, object.ErrDirectoryNotFound) || errors.Is(err, object.ErrEntryNotFound):
		return nil, fetch.Permanent(fmt.Errorf("subdir %q not found in the commit", s.subdir))
	case err != nil:
		return nil, storeErr(err)
	case entry.Mode != filemode.Dir:
		return nil, fetch.Permanent(fmt.Errorf("subdir %q is not a directory in the commit", s.subdir))
	}
	return s.getTree(objs, entry.Hash)
}

// getTree reads tree h, which go-git decodes whole into memory: one larger
// than the bounds allow is refused first (the trees of a file://
// repository were never checked as a received pack is).
func (s *Source) getTree(objs storer.EncodedObjectStorer, h plumbing.Hash) (*object.Tree, error) {
	obj, err := objs.EncodedObject(plumbing.TreeObject, h)
	if err != nil {
		return nil, storeErr(fmt.Errorf("tree %s: %w", h, err))
	}
	if obj.Size() > s.bounds.objectSize {
		return nil, overLimit("tree %s holds %d bytes, more than the %s limit allows (%d, with a margin for trees)",
			h, obj.Size(), s.bounds.objectSizeLimit, s.bounds.objectSize)
	}
	tree, err := object.DecodeTree(objs, obj)
	return tree, storeErr(err)
}

// export is one Fetch's writing of a commit's tree.
type export struct {
	objs    storer.EncodedObjectStorer
	w       fetch.Writer
	modules *gitmodules // the commit's, for its gitlinks
}

// walk calls leaf, depth first, for every entry below tree (named under
// dir) that sel keeps and that is not a directory, with what sel keeps
// below it (a gitlink's tree lies in another repository). It refuses the
// names git itself refuses.
func (s *Source) walk(ctx context.Context, objs storer.EncodedObjectStorer, tree *object.Tree, dir string, sel selection, leaf func(name string, e object.TreeEntry, below selection) error) error {
	for _, e := range tree.Entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := path.Join(dir, e.Name)
		// A tree from a hostile server may carry names git itself refuses.
		if e.Name == "" || e.Name == "." || e.Name == ".." || strings.ContainsAny(e.Name, "/\x00") {
			return fetch.Permanent(fmt.Errorf("entry %q: invalid name in git tree", dir+"/"+e.Name))
		}
		below, keep := sel.step(e.Name)
		switch {
		case !keep:
			continue
		case e.Mode == filemode.Dir:
			// The Writer's rules for a name, checked before going deeper: a
			// chain of nested trees cannot outgrow a path.
			if _, err := fetch.CleanName(name); err != nil {
				return err
			}
			sub, err := s.getTree(objs, e.Hash)
			if err != nil {
				return err
			}
			if err := s.walk(ctx, objs, sub, name, below, leaf); err != nil {
				return err
			}
			continue
		case below != nil && e.Mode != filemode.Submodule:
			continue // a pattern that goes deeper than a file keeps nothing of it
		}
		if err := leaf(name, e, below); err != nil {
			return err
		}
	}
	return nil
}

// writeTree writes tree through x.w, as far as ?paths= keeps it. Each
// file's key is its blob hash, so the Writer hard-links files that did
// not change since the published revision instead of reading them again;
// a gitlink becomes its submodule's tree (submodule.go).
//
// It is sequential on purpose: go-git's storage is not safe for concurrent
// use, and four workers with a store handle each cost 10 MB more peak RSS
// on the 50 MB benchmark tree for no gain that could be told apart from
// the noise of file creation, which dominates the export.
func (s *Source) writeTree(ctx context.Context, x *export, tree *object.Tree) error {
	return s.walk(ctx, x.objs, tree, "", s.paths, func(name string, e object.TreeEntry, below selection) error {
		switch e.Mode {
		case filemode.Regular, filemode.Deprecated:
			return x.w.WriteFile(name, 0o644, e.Hash.String(), s.blobOpener(x.objs, e.Hash, name))
		case filemode.Executable:
			return x.w.WriteFile(name, 0o755, e.Hash.String(), s.blobOpener(x.objs, e.Hash, name))
		case filemode.Symlink:
			target, err := s.readSymlink(x.objs, e.Hash, name)
			if err != nil {
				return fmt.Errorf("symlink %s: %w", name, err)
			}
			return x.w.Symlink(name, target)
		case filemode.Submodule:
			return s.writeSubmodule(ctx, x, name, e.Hash, below)
		}
		return fetch.Permanent(fmt.Errorf("entry %q: unsupported git file mode %o", name, uint32(e.Mode)))
	})
}

// blobOpener streams blob h, the file name, out of objs when the Writer
// needs it. A blob over the file size bound is refused before it is
// inflated: go-git reads a small object whole, a large one through a
// delta whose result only its header tells.
func (s *Source) blobOpener(objs storer.EncodedObjectStorer, h plumbing.Hash, name string) fetch.Opener {
	return func() (io.ReadCloser, error) {
		obj, err := objs.EncodedObject(plumbing.BlobObject, h)
		if err != nil {
			return nil, storeErr(fmt.Errorf("blob %s: %w", h, err))
		}
		if obj.Size() > s.bounds.fileSize {
			return nil, fetch.Refuse(name, "blob of %d bytes, more than the %s limit allows (%d)", obj.Size(), s.bounds.objectSizeLimit, s.bounds.fileSize)
		}
		r, err := obj.Reader()
		if err != nil {
			return nil, storeErr(fmt.Errorf("blob %s: %w", h, err))
		}
		return &storeReader{r: r, h: h}, nil
	}
}

// storeReader marks read errors (a corrupt pack) as the store's fault.
type storeReader struct {
	r io.ReadCloser
	h plumbing.Hash
}

func (sr *storeReader) Read(p []byte) (int, error) {
	n, err := sr.r.Read(p)
	if err != nil && err != io.EOF {
		err = storeErr(fmt.Errorf("blob %s: %w", sr.h, err))
	}
	return n, err
}

func (sr *storeReader) Close() error { return sr.r.Close() }

func (s *Source) readSymlink(objs storer.EncodedObjectStorer, h plumbing.Hash, name string) (string, error) {
	r, err := s.blobOpener(objs, h, name)()
	if err != nil {
		return "", err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, maxSymlinkTarget+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxSymlinkTarget {
		return "", fetch.Permanent(fmt.Errorf("target longer than %d bytes", maxSymlinkTarget))
	}
	return string(b), nil
}
