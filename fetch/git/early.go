package git

import (
	"context"
	"os"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"github.com/ferrysync/ferry/fetch"
)

// A cold start inflated every blob twice: once in the index pass, to hash
// it and find its end, and once more to export it. The index pass now
// writes the files itself, as their blobs go past, and the export writes
// only what it did not. This works because git sends a fresh pack in the
// order of a walk of the commit: the commit, then each tree, then the
// blobs it names, depth first, as the export walks it. The index pass
// learns the commit and the root tree before the first blob, checks what
// the export would check first (the signature, whether the revision is the
// published one), then walks the tree as the export would, as far as the
// pack has come: each file in turn, from the blob in hand or, when it came
// earlier (a blob named twice, a blob ahead of its tree), read back from
// the pack. It waits for what has not come, and stops for good at what it
// does not write (a gitlink, a blob over largeObjectThreshold) or when the
// pack ends: the export walks the whole tree again, with every check,
// skips the names written here and writes the rest, in the same order. So
// the Writer sees the same calls in the same order either way, and fails
// the same way.

// earlyExport is the writing of one Fetch's files during the index pass
// of its pack (index.go). Its methods are no-ops on nil.
type earlyExport struct {
	s    *Source
	ctx  context.Context
	w    fetch.Writer
	prev string        // the published revision
	tip  plumbing.Hash // the object the ref names, fetched

	st   storer.EncodedObjectStorer // the store the pack goes into
	f    *os.File                   // the pack being indexed
	objs *packedStore               // what was indexed so far, once started
	hand *packedObject              // the blob the index pass holds, if any

	started, on bool
	walk        []frame // where the walk is: the trees it is in, innermost last
	written     map[string]bool
	// failed is the name whose write failed, with the error: the export
	// returns it when it reaches that name, as it would have.
	failed string
	err    error
}

// frame is a tree the walk is in: the next entry to write of it.
type frame struct {
	tree *object.Tree
	dir  string
	sel  selection
	next int
}

// open readies x for the index pass of f, a pack going into st.
func (x *earlyExport) open(st storer.EncodedObjectStorer, f *os.File) {
	if x != nil {
		x.st, x.f = st, f
	}
}

// active tells whether x may still write: the index pass resolves deltas
// as they come only then.
func (x *earlyExport) active() bool { return x != nil && (!x.started || x.on) }

// close ends the index pass's part: what is left is the export's.
func (x *earlyExport) close() {
	if x == nil {
		return
	}
	x.on, x.started, x.walk, x.hand = false, true, nil, nil
	x.objs = nil
}

// reader returns a reader of what the pack holds so far.
func (x *earlyExport) reader(p *indexedPack) *packReader {
	if x.objs == nil {
		x.objs = &packedStore{EncodedObjectStorer: x.st, r: newPackReader(x.f, p, p.work)}
	}
	return x.objs.r
}

// keep tells the index pass, before it inflates e, whether to hand over
// its content. The first blob starts the export: all that comes before it
// (the commit and, in a walk's order, the root tree) is indexed then.
func (x *earlyExport) keep(p *indexedPack, e *packEntry) bool {
	if !x.active() || e.typ != plumbing.BlobObject {
		return false
	}
	x.start(p)
	return x.on && e.size <= largeObjectThreshold
}

// start does what publish does before it writes, on the pack so far; it
// writes nothing unless publish would write (any doubt, such as an object
// not there yet, leaves everything to the export).
func (x *earlyExport) start(p *indexedPack) {
	if x.started {
		return
	}
	x.started = true
	s := x.s
	if x.f == nil {
		return
	}
	x.reader(p)
	c, err := s.peelCommit(x.objs, x.tip)
	if err != nil {
		return
	}
	tree, err := s.tree(x.objs, c)
	if err != nil {
		return
	}
	rev, err := s.revision(x.ctx, &export{objs: x.objs, modules: &gitmodules{root: c.TreeHash}}, c, tree)
	if err != nil || rev == x.prev {
		return
	}
	// rev is not the published revision: its signature is checked anew.
	if s.checkTrust(x.objs, x.tip, c, false) != nil {
		return
	}
	x.on = true
	x.written = make(map[string]bool)
	x.walk = []frame{{tree: tree, sel: s.paths}}
}

// indexed is told of entry i of p, just hashed, of type typ (a delta's
// result's), with its content when keep asked for it or it is a delta's:
// the walk goes on as far as the pack has come.
func (x *earlyExport) indexed(p *indexedPack, i int, typ plumbing.ObjectType, data []byte) {
	if !x.active() {
		return
	}
	if typ == plumbing.BlobObject {
		x.start(p) // a delta may be the first blob
	}
	if !x.on {
		return
	}
	e := &p.entries[i]
	if typ == plumbing.BlobObject && data != nil {
		x.hand = &packedObject{hash: e.hash, typ: typ, data: data}
		defer func() { x.hand = nil }()
	}
	x.advance(p)
}

// advance writes the entries of the walk, in order, until one whose
// object the pack has not brought yet, or one it leaves to the export.
func (x *earlyExport) advance(p *indexedPack) {
	for x.on && len(x.walk) > 0 {
		f := &x.walk[len(x.walk)-1]
		if f.next == len(f.tree.Entries) {
			x.walk = x.walk[:len(x.walk)-1]
			continue
		}
		e := f.tree.Entries[f.next]
		name, below, keep, err := visit(f.dir, e, f.sel)
		switch {
		case err != nil || e.Mode == filemode.Submodule || x.ctx.Err() != nil:
			x.on = false // the export's to write, or to refuse
			return
		case !keep:
			f.next++
			continue
		}
		i, ok := p.byHash[e.Hash]
		if !ok {
			return // not here yet
		}
		if e.Mode == filemode.Dir {
			tree, err := x.s.getTree(x.objs, e.Hash)
			if err != nil {
				x.on = false
				return
			}
			f.next++
			x.walk = append(x.walk, frame{tree: tree, dir: name, sel: below})
			continue
		}
		if (x.hand == nil || x.hand.hash != e.Hash) && p.entries[i].objSize > largeObjectThreshold {
			x.on = false // streamed from the store by the export
			return
		}
		ok, err = x.s.writeBlob(x.w, x, name, e)
		if !ok {
			x.on = false // not a file: the export refuses it
			return
		}
		if err != nil {
			x.failed, x.err, x.on = name, err, false
			return
		}
		x.written[name] = true
		f.next++
	}
}

// EncodedObject reads object h for writeBlob: the blob in hand, or one
// the pack brought earlier.
func (x *earlyExport) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	if x.hand != nil && x.hand.hash == h {
		return x.hand, nil
	}
	return x.objs.EncodedObject(t, h)
}

// wrote tells whether the entry name was written here (err nil), or its
// write failed here with err.
func (x *earlyExport) wrote(name string) (bool, error) {
	if x == nil {
		return false, nil
	}
	if x.err != nil && name == x.failed {
		return true, x.err
	}
	return x.written[name], nil
}
