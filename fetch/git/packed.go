package git

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/ferrysync/ferry/fetch/git/internal/inflate"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// packedStore is the store as the export of a first fetch reads it: the
// objects of the pack just indexed (index.go) come from that pack, read
// with the index pass's reader; a large object, which go-git streams
// instead of holding it, and anything else come from the store.
type packedStore struct {
	storer.EncodedObjectStorer
	r *packReader
}

// openPacked opens the pack p, stored in dir, for reading beside st, as
// long as ctx lasts.
func openPacked(ctx context.Context, st storer.EncodedObjectStorer, p *indexedPack, dir string, b bounds) (*packedStore, error) {
	f, err := os.Open(filepath.Join(dir, "pack-"+p.checksum.String()+".pack"))
	if err != nil {
		return nil, err
	}
	return &packedStore{EncodedObjectStorer: st, r: newPackReader(f, p, newRebuildWork(ctx, b))}, nil
}

func (ps *packedStore) close() {
	ps.r.f.Close()
}

// EncodedObject returns object h, of type t or any (plumbing.AnyObject).
// The content of an object read from the pack is valid until the next
// call: the export reads each whole (a blob into the Stage, a tree or
// commit into go-git's decoded copy) before it asks for another, and a
// 50 MB tree's objects then cost no 50 MB of garbage.
func (ps *packedStore) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	i, ok := ps.r.p.byHash[h]
	if !ok || ps.r.p.entries[i].objSize > largeObjectThreshold {
		return ps.EncodedObjectStorer.EncodedObject(t, h)
	}
	typ, data, err := ps.r.content(i, 0, nil)
	if err != nil {
		return nil, ps.r.work.readErr(err)
	}
	if t != plumbing.AnyObject && typ != t {
		return nil, plumbing.ErrObjectNotFound
	}
	return &packedObject{hash: h, typ: typ, data: data}, nil
}

// packedObject is an object read whole from a pack: read-only.
type packedObject struct {
	hash plumbing.Hash
	typ  plumbing.ObjectType
	data []byte
}

func (o *packedObject) Hash() plumbing.Hash         { return o.hash }
func (o *packedObject) Type() plumbing.ObjectType   { return o.typ }
func (o *packedObject) SetType(plumbing.ObjectType) {}
func (o *packedObject) Size() int64                 { return int64(len(o.data)) }
func (o *packedObject) SetSize(int64)               {}
func (o *packedObject) Reader() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(o.data)), nil
}
func (o *packedObject) Writer() (io.WriteCloser, error) {
	return nil, errors.New("git: an object read from a pack is read-only")
}

// packReader reads objects of an indexed pack back from its file.
type packReader struct {
	f     *os.File
	p     *indexedPack
	cache *contentCache // delta bases
	// last is the object content built last, whatever its size: the base
	// of the next delta of a chain, which is then patched once.
	last   lastObject
	work   *rebuildWork // what reading may cost, and until when
	bounds bounds
	dec    inflate.Decoder // every object it reads is whole, of a known size
	br     *bufio.Reader
	// scratch and deltaScratch are reused by content (see there).
	scratch, deltaScratch []byte
}

// lastObject is an object a packReader built, by its offset.
type lastObject struct {
	offset int64
	cached
}

// baseCache bounds the delta bases a packReader keeps in memory.
const baseCache = 8 << 20

// newPackReader reads p from f, spending w: one w for every reader of a
// pass over the pack.
func newPackReader(f *os.File, p *indexedPack, w *rebuildWork) *packReader {
	return &packReader{f: f, p: p, cache: newContentCache(baseCache), work: w, bounds: w.bounds}
}

// rebuildWork is what one pass over a pack (the index pass, or the
// export's reads) may spend rebuilding its objects from their deltas: a
// number of bytes to inflate and patch, and the pass's context. An honest
// pack builds each object about once; one whose deltas are laid out to be
// built again and again (chains of objects too large to cache, read out
// of order) would otherwise keep a CPU busy for hours within every other
// bound. Either ends the pass.
type rebuildWork struct {
	ctx  context.Context
	left int64
	bounds
}

func newRebuildWork(ctx context.Context, b bounds) *rebuildWork {
	return &rebuildWork{ctx: ctx, left: b.rebuildBytes, bounds: b}
}

// spend takes n bytes of work; it fails once the pass is over its budget
// or its context ended.
func (w *rebuildWork) spend(n int64) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	if w.left -= n; w.left < 0 {
		return overLimit("pack: rebuilding its objects from their deltas takes more than %d bytes of inflating and patching (%d times what the max-bytes limit, %d, with a margin of %d, lets a fetch receive)",
			w.rebuildBytes, rebuildShare, w.maxBytes, w.margin)
	}
	return nil
}

// readErr is err, from reading an object, as the reader's caller sees
// it: a failure of the store, unless the pass was stopped (spend).
func (w *rebuildWork) readErr(err error) error {
	var le *limitError
	if errors.As(err, &le) || w.ctx.Err() != nil {
		return err
	}
	return storeErr(err)
}

// maxDeltaChain bounds the recursion through delta bases (git's own
// default depth is 50; a hostile pack could chain one per object).
const maxDeltaChain = 10000

// content returns the type and content of entry i, patching deltas onto
// their bases; depth is how many deltas asked for it, as their base. A
// base is kept in the cache, for the deltas next to it, and the object
// built last is kept whatever its size, for the next delta of its chain:
// a chain read in its order costs one patch a delta, not a rebuild from
// its bottom. The content of a whole object asked for at depth 0 is read
// into a buffer the next call reuses: the caller reads it before it asks
// again. delta, when not nil, is entry i's own delta instructions, which
// the caller inflated already. What it inflates and patches is spent on
// r.work.
func (r *packReader) content(i int, depth int, delta []byte) (plumbing.ObjectType, []byte, error) {
	e := &r.p.entries[i]
	if c, ok := r.cache.get(e.offset); ok {
		return c.typ, c.data, nil
	}
	if r.last.data != nil && r.last.offset == e.offset {
		return r.last.typ, r.last.data, nil
	}
	if depth > maxDeltaChain {
		return 0, nil, fmt.Errorf("pack: object at offset %d: delta chain longer than %d", e.offset, maxDeltaChain)
	}
	if !e.typ.IsDelta() {
		into := (*[]byte)(nil)
		if depth == 0 {
			into = &r.scratch
		}
		data, err := r.raw(e, into)
		if err != nil {
			return 0, nil, err
		}
		if depth > 0 {
			r.keep(e.offset, cached{e.typ, data}, true)
		}
		return e.typ, data, nil
	}
	// The base first: a delta's own instructions go in a buffer that the
	// base's, when it is a delta too, would reuse.
	var base int
	if e.typ == plumbing.OFSDeltaObject {
		var ok bool
		base, ok = r.p.at(e.baseOffset)
		if !ok {
			return 0, nil, fmt.Errorf("pack: object at offset %d: no object at its delta base offset %d", e.offset, e.baseOffset)
		}
	} else {
		base = r.p.byHash[e.baseRef]
	}
	typ, bdata, err := r.content(base, depth+1, nil)
	if err != nil {
		return 0, nil, err
	}
	if delta == nil {
		if delta, err = r.raw(e, &r.deltaScratch); err != nil {
			return 0, nil, err
		}
	}
	if err := r.work.spend(e.objSize); err != nil {
		return 0, nil, err
	}
	data, err := packfile.PatchDelta(bdata, delta)
	if err != nil {
		return 0, nil, fmt.Errorf("pack: object at offset %d: %w", e.offset, err)
	}
	if int64(len(data)) > r.bounds.objectSize {
		return 0, nil, r.bounds.tooLarge(uint64(len(data)))
	}
	r.keep(e.offset, cached{typ, data}, depth > 0)
	return typ, data, nil
}

// keep remembers the object at off, just built in a buffer of its own, as
// the last one built and, when it is a delta's base, in the cache.
func (r *packReader) keep(off int64, c cached, base bool) {
	r.last = lastObject{off, c}
	if base {
		r.cache.put(off, c)
	}
}

// raw inflates e's own data: an object's content, or a delta's
// instructions, into *into (grown as needed) or, when into is nil, a slice
// of its own. What it inflates is spent on r.work.
func (r *packReader) raw(e *packEntry, into *[]byte) ([]byte, error) {
	if err := r.work.spend(e.size); err != nil {
		return nil, err
	}
	data, err := r.inflate(e, into)
	if err != nil {
		return nil, fmt.Errorf("pack: object at offset %d: %w", e.offset, err)
	}
	return data, nil
}

// inflate is raw's reading of e.
func (r *packReader) inflate(e *packEntry, into *[]byte) ([]byte, error) {
	sr := io.NewSectionReader(r.f, e.offset, e.end-e.offset)
	if r.br == nil {
		r.br = bufio.NewReaderSize(sr, 16<<10)
	} else {
		r.br.Reset(sr)
	}
	var skip packEntry
	skip.offset = e.offset
	if err := readEntryHeader(r.br, &skip); err != nil {
		return nil, err
	}
	var buf []byte
	if into != nil {
		buf = sized(into, e.size)
	} else {
		buf = make([]byte, e.size)
	}
	// Not checked again: the index pass checked what it stored.
	if err := zlibWhole(&r.dec, r.br, buf, false); err != nil {
		return nil, err
	}
	return buf, nil
}

// at finds the entry at offset off.
func (p *indexedPack) at(off int64) (int, bool) {
	return slices.BinarySearchFunc(p.entries, off, func(e packEntry, off int64) int {
		switch {
		case e.offset < off:
			return -1
		case e.offset > off:
			return 1
		}
		return 0
	})
}

type cached struct {
	typ  plumbing.ObjectType
	data []byte
}

// contentCache keeps recently read bases, up to a number of bytes; the
// oldest go first.
type contentCache struct {
	max, size int64
	items     map[int64]cached
	order     []int64
}

func newContentCache(max int64) *contentCache {
	return &contentCache{max: max, items: make(map[int64]cached)}
}

func (c *contentCache) get(off int64) (cached, bool) {
	v, ok := c.items[off]
	return v, ok
}

func (c *contentCache) put(off int64, v cached) {
	if int64(len(v.data)) > c.max {
		return
	}
	if _, ok := c.items[off]; ok {
		return
	}
	for c.size+int64(len(v.data)) > c.max && len(c.order) > 0 {
		old := c.order[0]
		c.order = c.order[1:]
		c.size -= int64(len(c.items[old].data))
		delete(c.items, old)
	}
	c.items[off] = v
	c.order = append(c.order, off)
	c.size += int64(len(v.data))
}
