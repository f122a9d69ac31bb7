package git

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
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
	modules *gitmodules  // the commit's, for its gitlinks
	early   *earlyExport // files the index pass wrote already, or nil
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
		name, below, keep, err := visit(dir, e, sel)
		switch {
		case err != nil:
			return err
		case !keep:
			continue
		case e.Mode == filemode.Dir:
			sub, err := s.getTree(objs, e.Hash)
			if err != nil {
				return err
			}
			if err := s.walk(ctx, objs, sub, name, below, leaf); err != nil {
				return err
			}
			continue
		}
		if err := leaf(name, e, below); err != nil {
			return err
		}
	}
	return nil
}

// visit checks entry e of a tree below dir, and tells its name, what sel
// keeps below it, and whether it keeps it at all. It refuses the names git
// itself refuses, and a directory's name the Writer would refuse.
func visit(dir string, e object.TreeEntry, sel selection) (name string, below selection, keep bool, err error) {
	name = path.Join(dir, e.Name)
	// A tree from a hostile server may carry names git itself refuses.
	if e.Name == "" || e.Name == "." || e.Name == ".." || strings.ContainsAny(e.Name, "/\x00") {
		return name, nil, false, fetch.Permanent(fmt.Errorf("entry %q: invalid name in git tree", dir+"/"+e.Name))
	}
	below, keep = sel.step(e.Name)
	switch {
	case !keep:
		return name, nil, false, nil
	case e.Mode == filemode.Dir:
		// The Writer's rules for a name, checked before going deeper: a
		// chain of nested trees cannot outgrow a path.
		if _, err := fetch.CleanName(name); err != nil {
			return name, nil, false, err
		}
	case below != nil && e.Mode != filemode.Submodule:
		return name, nil, false, nil // a pattern that goes deeper than a file keeps nothing of it
	}
	return name, below, true, nil
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
		if done, err := x.early.wrote(name); done {
			return err // in the pack's index pass (early.go)
		}
		if ok, err := s.writeBlob(x.w, x.objs, name, e); ok {
			return err
		}
		if e.Mode == filemode.Submodule {
			return s.writeSubmodule(ctx, x, name, e.Hash, below)
		}
		return fetch.Permanent(fmt.Errorf("entry %q: unsupported git file mode %o", name, uint32(e.Mode)))
	})
}

// writeBlob writes entry e, name, through w when it is a file or a
// symlink (ok), its blob read from objs.
func (s *Source) writeBlob(w fetch.Writer, objs objectReader, name string, e object.TreeEntry) (ok bool, err error) {
	if mode, ok := fileMode(e.Mode); ok {
		return true, w.WriteFile(name, mode, e.Hash.String(), s.blobOpener(objs, e.Hash, name))
	}
	if e.Mode != filemode.Symlink {
		return false, nil
	}
	target, err := s.readSymlink(objs, e.Hash, name)
	if err != nil {
		return true, fmt.Errorf("symlink %s: %w", name, err)
	}
	return true, w.Symlink(name, target)
}

// fileMode is the permission bits a regular file of git mode m is
// written with; ok is false for an entry that is not a regular file.
func fileMode(m filemode.FileMode) (mode fs.FileMode, ok bool) {
	switch m {
	case filemode.Regular, filemode.Deprecated:
		return 0o644, true
	case filemode.Executable:
		return 0o755, true
	}
	return 0, false
}

// blobOpener streams blob h, the file name, out of objs when the Writer
// needs it. A blob over the file size bound is refused before it is
// inflated: go-git reads a small object whole, a large one through a
// delta whose result only its header tells.
func (s *Source) blobOpener(objs objectReader, h plumbing.Hash, name string) fetch.Opener {
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

// objectReader is the part of a store blobOpener reads from.
type objectReader interface {
	EncodedObject(plumbing.ObjectType, plumbing.Hash) (plumbing.EncodedObject, error)
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

func (s *Source) readSymlink(objs objectReader, h plumbing.Hash, name string) (string, error) {
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
