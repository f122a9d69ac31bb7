package git

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/adler32"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	gosync "sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"

	"github.com/ferrysync/ferry/fetch/git/internal/inflate"
)

// The first fetch into an empty store is the cold start a pod waits for,
// and nearly all of its CPU went to inflating the pack: once to check it
// against the bounds, twice more in go-git's parser (once for the hashes,
// once again for its observers), and once more to export the files. The
// index pass here replaces the first three: it inflates each object once
// (whole, into a buffer that is its window too, with internal/inflate; an
// object over largeObjectThreshold streams through klauspost's flate),
// checks it against the bounds, hashes it, resolves deltas
// from the pack file itself, and writes the pack's .idx as git index-pack
// would. A pack that leans on objects outside it (thin) is refused: the
// store is empty, and later fetches, which are thin, take go-git's parser
// (thin.go).

// packEntry is one object of a pack.
type packEntry struct {
	offset, end int64 // its bytes in the pack file: header and zlib data
	typ         plumbing.ObjectType
	size        int64 // inflated size; of the delta data for a delta
	objSize     int64 // the object's size; for a delta, of its result
	baseOffset  int64 // OFS_DELTA
	baseRef     plumbing.Hash
	hash        plumbing.Hash // zero until known
	crc         uint32
}

// indexedPack is what the index pass learns of a pack.
type indexedPack struct {
	entries  []packEntry // by offset
	byHash   map[plumbing.Hash]int
	checksum plumbing.Hash
	// work is what the index pass's reads of the pack may spend
	// (packed.go), those of the early export (early.go) included.
	work *rebuildWork
}

// indexStream reads the pack g once, as it arrives, refusing it when an
// object is over the bounds or the pack is truncated, corrupt or thin, and
// returns every object's hash, offset and CRC: the index pass keeps pace
// with the download (pack.go), and the early export with it. It stops,
// with ctx's error, between objects once ctx is done.
func indexStream(ctx context.Context, g *growingFile, b bounds, early *earlyExport) (*indexedPack, error) {
	f := g.f
	cr := &packStream{r: g, sum: sha1.New()}
	br := bufio.NewReaderSize(cr, 64<<10)
	pos := func() int64 { return cr.n - int64(br.Buffered()) }

	var hdr [12]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return nil, errors.New("pack: truncated")
		}
		return nil, fmt.Errorf("pack: %w", err)
	}
	if string(hdr[:4]) != "PACK" || (binary.BigEndian.Uint32(hdr[4:]) != 2 && binary.BigEndian.Uint32(hdr[4:]) != 3) {
		return nil, errors.New("pack: not a version 2 or 3 pack")
	}
	count := binary.BigEndian.Uint32(hdr[8:])
	if count > b.objects {
		return nil, overLimit("pack holds %d objects, more than the max-files limit allows (%d)", count, b.objects)
	}
	p := &indexedPack{entries: make([]packEntry, 0, count), byHash: make(map[plumbing.Hash]int, count), work: newRebuildWork(ctx, b)}
	in := &inflater{}
	in.zr.sum = adler32.New() // what this pass accepts is stored: read later by go-git and git
	defer in.close()
	defer early.close()
	for range count {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e := packEntry{offset: pos()}
		if err := readEntryHeader(br, &e); err != nil {
			return nil, fmt.Errorf("pack: object at offset %d: %w", e.offset, err)
		}
		data, err := in.check(br, &e, b, early.keep(p, &e))
		if err != nil {
			var le *limitError
			if errors.As(err, &le) {
				return nil, err
			}
			return nil, fmt.Errorf("pack: object at offset %d: %w", e.offset, err)
		}
		e.end = pos()
		p.entries = append(p.entries, e)
		i, typ := len(p.entries)-1, e.typ
		if typ.IsDelta() && early.active() {
			// Its result now, for the files the index pass writes, from
			// the instructions just inflated.
			if typ, data, err = p.resolve(early.reader(p), i, data); err != nil {
				return nil, err
			}
		} else if typ.IsDelta() {
			data = nil
		}
		if h := p.entries[i].hash; !h.IsZero() {
			p.byHash[h] = i
		}
		early.indexed(p, i, typ, data)
	}
	early.close()
	// What follows the last object, once the whole pack is in, must be
	// the 20 bytes of its checksum.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return nil, fmt.Errorf("pack: %w", err)
	}
	switch after := cr.n - p.checksumOffset(); {
	case after < 20:
		return nil, errors.New("pack: truncated")
	case after > 20:
		return nil, fmt.Errorf("pack: %d bytes after its last object", after-20)
	}
	if !bytes.Equal(cr.sum.Sum(nil), cr.held[:]) {
		return nil, errors.New("pack: checksum mismatch")
	}
	p.checksum = plumbing.Hash(cr.held)
	if err := p.resolveDeltas(f); err != nil {
		return nil, err
	}
	if err := p.crcs(f); err != nil {
		return nil, err
	}
	return p, nil
}

// readEntryHeader reads an object's type and size and, for a delta, where
// its base is.
func readEntryHeader(br *bufio.Reader, e *packEntry) error {
	c, err := br.ReadByte()
	if err != nil {
		return err
	}
	e.typ = plumbing.ObjectType((c >> 4) & 7)
	size, shift := int64(c&15), uint(4)
	for c&0x80 != 0 {
		if c, err = br.ReadByte(); err != nil {
			return err
		}
		if shift > 56 {
			return errors.New("object size overflows")
		}
		size |= int64(c&0x7f) << shift
		shift += 7
	}
	e.size = size
	switch e.typ {
	case plumbing.CommitObject, plumbing.TreeObject, plumbing.BlobObject, plumbing.TagObject:
	case plumbing.OFSDeltaObject:
		// Big-endian base 128, each continuation adding one (git's encoding).
		c, err := br.ReadByte()
		if err != nil {
			return err
		}
		rel := int64(c & 0x7f)
		for c&0x80 != 0 {
			if c, err = br.ReadByte(); err != nil {
				return err
			}
			if rel > e.offset {
				return errors.New("delta base offset out of the pack")
			}
			rel = (rel+1)<<7 | int64(c&0x7f)
		}
		if rel <= 0 || rel > e.offset {
			return errors.New("delta base offset out of the pack")
		}
		e.baseOffset = e.offset - rel
	case plumbing.REFDeltaObject:
		if _, err := io.ReadFull(br, e.baseRef[:]); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown object type %d", e.typ)
	}
	return nil
}

// inflater inflates objects: those up to largeObjectThreshold whole,
// into buffers it reuses, larger ones as they stream past, with one zlib
// reader and a reused buffer (io.Copy would allocate one per object:
// 47 MB for the 50 MB benchmark tree). Whatever size an object's header
// claims, the buffers of whole objects stay bounded by the threshold (the
// early export asks to keep no larger one: earlyExport.keep), and delta
// instructions by the bound on objects.
type inflater struct {
	dec   inflate.Decoder
	zr    zstream
	buf   bytes.Buffer
	copy  [32 << 10]byte
	whole []byte // the last whole object inflated
	delta []byte // the last delta's instructions inflated
}

func (in *inflater) close() {
	in.zr.Close()
}

// inflate returns a reader of the zlib stream at r's position, which
// reads no byte past the stream's end (r is a ByteReader).
func (in *inflater) inflate(r io.Reader) (io.Reader, error) {
	if err := in.zr.reset(r); err != nil {
		return nil, err
	}
	return &in.zr, nil
}

// verify tells whether in checks each stream's Adler-32: set by giving
// zr a checksum to keep (the index pass does).
func (in *inflater) verify() bool { return in.zr.sum != nil }

// check inflates e's data: a whole object is hashed, a delta's data is
// read whole (it is bounded) for the size of its result, and returned.
// When keep is set, a whole object is returned too. What check returns is
// valid until the next call.
func (in *inflater) check(br *bufio.Reader, e *packEntry, b bounds, keep bool) ([]byte, error) {
	if !e.typ.IsDelta() {
		if e.size > b.objectSize {
			return nil, b.tooLarge(uint64(e.size))
		}
		h := plumbing.NewHasher(e.typ, e.size)
		if keep || e.size <= largeObjectThreshold {
			data := sized(&in.whole, e.size)
			if err := zlibWhole(&in.dec, br, data, in.verify()); err != nil {
				return nil, err
			}
			h.Write(data)
			e.hash, e.objSize = h.Sum(), e.size
			if !keep {
				data = nil
			}
			return data, nil
		}
		zr, err := in.inflate(br)
		if err != nil {
			return nil, err
		}
		if err := copyExactly(&h, zr, e.size, in.copy[:]); err != nil {
			return nil, err
		}
		e.hash, e.objSize = h.Sum(), e.size
		return nil, nil
	}
	// Delta data is about as large as what it adds: the bound on objects
	// bounds it too, with room for the copy instructions.
	if e.size > b.objectSize+b.objectSize/4 {
		return nil, b.tooLarge(uint64(e.size))
	}
	var d []byte
	if e.size <= largeObjectThreshold {
		d = sized(&in.delta, e.size)
		if err := zlibWhole(&in.dec, br, d, in.verify()); err != nil {
			return nil, err
		}
	} else {
		zr, err := in.inflate(br)
		if err != nil {
			return nil, err
		}
		in.buf.Reset()
		if err := copyExactly(&in.buf, zr, e.size, in.copy[:]); err != nil {
			return nil, err
		}
		d = in.buf.Bytes()
	}
	_, n := varint(d)
	result, m := varint(d[n:])
	if n == 0 || m == 0 {
		return nil, errors.New("delta header truncated")
	}
	if result > uint64(b.objectSize) {
		return nil, b.tooLarge(result)
	}
	e.objSize = int64(result)
	return d, nil
}

// sized returns *b resliced to n bytes, grown first when it is shorter.
func sized(b *[]byte, n int64) []byte {
	if int64(cap(*b)) < n {
		*b = make([]byte, n)
	}
	return (*b)[:n]
}

// copyExactly copies the zlib stream zr into w through buf; the stream
// must hold exactly size bytes.
func copyExactly(w io.Writer, zr io.Reader, size int64, buf []byte) error {
	n, err := io.CopyBuffer(w, io.LimitReader(zr, size), buf)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("inflated to %d bytes, not the %d its header says", n, size)
	}
	return endOfStream(zr, size)
}

// endOfStream checks that the zlib stream zr, read for size bytes, ends
// there.
func endOfStream(zr io.Reader, size int64) error {
	var one [1]byte
	switch k, err := zr.Read(one[:]); {
	case k > 0:
		return fmt.Errorf("inflates to more than the %d bytes its header says", size)
	case err != io.EOF:
		if err == nil {
			err = io.ErrNoProgress
		}
		return err
	}
	return nil
}

// resolveDeltas finds the hash of every delta: its base's content (read
// again from f, through a small cache) patched with its own data. Bases
// come before their deltas by offset, or are named by hash; a delta whose
// base is in no object of the pack makes it thin. Its reads spend p.work,
// which also stops it when the fetch's context ends.
//
// A REF_DELTA's base may be a delta that comes later in the pack: such a
// delta waits for its base, and is resolved as soon as the base is, with
// whatever waits for it in turn. Each delta is resolved once, whatever
// the order of the pack (a chain written base last included).
func (p *indexedPack) resolveDeltas(f *os.File) error {
	r := newPackReader(f, p, p.work)
	w := waiting{byOffset: map[int64][]int{}, byHash: map[plumbing.Hash][]int{}}
	for i := range p.entries {
		e := &p.entries[i]
		if !e.typ.IsDelta() || !e.hash.IsZero() {
			continue // a whole object, or resolved by the index pass (early.go)
		}
		_, data, err := p.resolve(r, i, nil)
		switch {
		case err != nil:
			return err
		case data == nil:
			w.add(e, i)
			continue
		}
		if err := p.resolved(r, i, &w); err != nil {
			return err
		}
	}
	if w.n > 0 {
		return fmt.Errorf("pack: %d deltas against objects outside the pack (a thin pack, for an empty store)", w.n)
	}
	return nil
}

// resolved records delta i, just resolved, then resolves the deltas that
// wait for it, and those that wait for them.
func (p *indexedPack) resolved(r *packReader, i int, w *waiting) error {
	todo := []int{i}
	for len(todo) > 0 {
		i, todo = todo[len(todo)-1], todo[:len(todo)-1]
		e := &p.entries[i]
		if e.hash.IsZero() {
			if _, data, err := p.resolve(r, i, nil); err != nil {
				return err
			} else if data == nil {
				return fmt.Errorf("pack: object at offset %d: its delta base was resolved, then not found", e.offset)
			}
		}
		p.byHash[e.hash] = i
		todo = w.take(todo, e)
	}
	return nil
}

// waiting holds the deltas whose base is not resolved yet, by what names
// the base: its offset (OFS_DELTA) or its hash (REF_DELTA).
type waiting struct {
	byOffset map[int64][]int
	byHash   map[plumbing.Hash][]int
	n        int
}

// add makes delta i, entry e, wait for its base.
func (w *waiting) add(e *packEntry, i int) {
	if e.typ == plumbing.REFDeltaObject {
		w.byHash[e.baseRef] = append(w.byHash[e.baseRef], i)
	} else {
		w.byOffset[e.baseOffset] = append(w.byOffset[e.baseOffset], i)
	}
	w.n++
}

// take appends to todo the deltas that wait for e, now resolved, and
// forgets them.
func (w *waiting) take(todo []int, e *packEntry) []int {
	for _, ready := range [][]int{w.byOffset[e.offset], w.byHash[e.hash]} {
		todo = append(todo, ready...)
		w.n -= len(ready)
	}
	delete(w.byOffset, e.offset)
	delete(w.byHash, e.hash)
	return todo
}

// resolveCost is what one attempt at resolving a delta spends of a pass's
// budget (packed.go's rebuildWork), as if it inflated that many bytes:
// the 5 GiB of the default limits allow five million attempts, some
// twenty times what the most objects a pack may hold need.
const resolveCost = 1 << 10

// resolve hashes the delta i when its base is known, and returns its
// type and content (nil when its base is not). The content is valid until
// r reads again. delta is the delta's instructions when the caller holds
// them, nil to read them from the pack.
func (p *indexedPack) resolve(r *packReader, i int, delta []byte) (plumbing.ObjectType, []byte, error) {
	// Each attempt costs, found or not: a way of resolving that tried the
	// deltas again and again (rounds over the whole pack, as it once did)
	// runs out of budget rather than keeping a CPU busy for minutes.
	if err := r.work.spend(resolveCost); err != nil {
		return 0, nil, err
	}
	e := &p.entries[i]
	if e.typ == plumbing.REFDeltaObject {
		if _, ok := p.byHash[e.baseRef]; !ok {
			return 0, nil, nil
		}
	} else if b, ok := p.at(e.baseOffset); ok && p.entries[b].hash.IsZero() {
		return 0, nil, nil // a delta against a REF_DELTA not resolved yet
	}
	typ, data, err := r.content(i, 0, delta)
	if err != nil {
		return 0, nil, err
	}
	e.hash = plumbing.ComputeHash(typ, data)
	return typ, data, nil
}

// crcs computes each object's CRC-32 over its bytes in the pack, as the
// .idx records them.
func (p *indexedPack) crcs(f *os.File) error {
	r := bufio.NewReaderSize(io.NewSectionReader(f, 12, p.checksumOffset()-12), 64<<10)
	buf := make([]byte, 32<<10)
	for i := range p.entries {
		e := &p.entries[i]
		h := crc32.NewIEEE()
		if n, err := io.CopyBuffer(h, io.LimitReader(r, e.end-e.offset), buf); err != nil || n != e.end-e.offset {
			return fmt.Errorf("pack: reading object at offset %d for its CRC: %d bytes, %v", e.offset, n, err)
		}
		e.crc = h.Sum32()
	}
	return nil
}

func (p *indexedPack) checksumOffset() int64 {
	if len(p.entries) == 0 {
		return 12
	}
	return p.entries[len(p.entries)-1].end
}

// store writes the pack's .idx next to the spooled pack in dir, then
// moves the pack in under its name: the .idx first, since the store lists
// packs by their .pack files.
func (p *indexedPack) store(spool *os.File, dir string) error {
	w := new(idxfile.Writer)
	w.OnHeader(uint32(len(p.entries)))
	for _, e := range p.entries {
		w.Add(e.hash, uint64(e.offset), e.crc)
	}
	if err := w.OnFooter(p.checksum); err != nil {
		return err
	}
	idx, err := w.Index()
	if err != nil {
		return err
	}
	name := filepath.Join(dir, "pack-"+p.checksum.String())
	tmp, err := os.CreateTemp(dir, "tmp_idx_")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = idxfile.NewEncoder(tmp).Encode(idx)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), name+".idx")
	}
	if err == nil {
		err = os.Rename(spool.Name(), name+".pack")
	}
	return err
}

// packStream is a pack read from its start: it counts what is read, and
// hashes all of it but the last 20 bytes, held back: the pack's checksum,
// once all is read.
type packStream struct {
	r     io.Reader
	n     int64
	sum   hash.Hash
	held  [20]byte
	nheld int
}

func (c *packStream) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	b := p[:n]
	if out := c.nheld + len(b) - len(c.held); out > 0 {
		// Hash what is no longer among the last 20 bytes.
		fromHeld := min(out, c.nheld)
		c.sum.Write(c.held[:fromHeld])
		c.nheld = copy(c.held[:], c.held[fromHeld:c.nheld])
		c.sum.Write(b[:out-fromHeld])
		b = b[out-fromHeld:]
	}
	c.nheld += copy(c.held[c.nheld:], b)
	return n, err
}

// growingFile reads a file from its start while it is written, waiting at
// its end for more until it is complete.
type growingFile struct {
	f   *os.File
	off int64 // the reader's

	mu   gosync.Mutex
	more gosync.Cond
	size int64 // written so far
	done bool  // no more will come
}

func newGrowingFile(f *os.File) *growingFile {
	g := &growingFile{f: f}
	g.more.L = &g.mu
	return g
}

// wrote tells the reader that n more bytes are in the file.
func (g *growingFile) wrote(n int) {
	g.mu.Lock()
	g.size += int64(n)
	g.mu.Unlock()
	g.more.Broadcast()
}

// finish tells the reader that the file is complete.
func (g *growingFile) finish() {
	g.mu.Lock()
	g.done = true
	g.mu.Unlock()
	g.more.Broadcast()
}

func (g *growingFile) Read(p []byte) (int, error) {
	g.mu.Lock()
	for g.off >= g.size && !g.done {
		g.more.Wait()
	}
	avail := g.size - g.off
	g.mu.Unlock()
	if avail <= 0 {
		return 0, io.EOF
	}
	n, err := g.f.ReadAt(p[:min(int64(len(p)), avail)], g.off)
	g.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}
