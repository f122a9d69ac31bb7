package git

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/ferrysync/ferry/fetch"
)

// deltaChainPack is a pack of one blob of size bytes (zeros: a few KB of
// zlib) and n OFS_DELTAs, each against the one before it, each copying
// all but the first byte of its base and adding one: every result is as
// large as the blob and distinct. About 40 bytes a delta.
func deltaChainPack(size, n int) []byte {
	p := newPack(uint32(n + 1))
	prev := p.Len()
	p.object(3, size, nil, make([]byte, size))
	for k := range n {
		d := appendVarint(appendVarint(nil, uint64(size)), uint64(size))
		sz := size - 1
		d = append(d, 0x80|0x01|0x10|0x20|0x40, 1, byte(sz), byte(sz>>8), byte(sz>>16)) // copy base[1:]
		d = append(d, 1, byte(1+k%255))                                                 // insert one byte
		off := p.Len()
		p.object(6, len(d), ofsDelta(int64(off-prev)), d)
		prev = off
	}
	return p.finish()
}

// TestDeltaChainOfLargeObjectsIsNotQuadraticAndStopsWithTheFetch: the
// index pass of a first fetch resolves every delta of the pack through
// packReader.content (packed.go), which rebuilds a delta's base chain
// from the bottom unless the base is in its cache; the cache refuses any
// object over 8 MiB (contentCache.put), and results at depth 0 are never
// cached. A chain of n deltas of objects over 8 MiB thus costs n*n/2
// patches of the whole object (measured: 100 deltas, a 12 KB pack, 25 s;
// 50 deltas 7 s): a pack of ~77 KB (one 9 MiB blob of
// zeros, 2,500 deltas of a few dozen bytes), well within every default
// limit, keeps a CPU busy for hours. Nothing there looks at a context:
// spool.Close waits for the index goroutine (pack.go), so a cancelled
// Fetch (SIGTERM, --once-timeout) does not return either.
func TestDeltaChainOfLargeObjectsIsNotQuadraticAndStopsWithTheFetch(t *testing.T) {
	pack := deltaChainPack(9<<20, 2500)
	t.Logf("pack of %d bytes", len(pack))
	b := boundsFor(fetch.Limits{}) // the defaults: 256 MiB a file

	repo := t.TempDir()
	dir := filepath.Join(repo, "objects", "pack")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	st := newStorage(osfs.New(repo), nil)
	defer st.Close()
	ctx, cancel := context.WithCancel(t.Context())
	m := &meteredStorer{Storer: st, into: st, dir: dir, meter: &meter{bounds: b, cancel: cancel}}
	w, err := m.PackfileWriter()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(pack); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- w.Close() }()

	// Give it the time a fetch of a pack this size could take, then
	// cancel, as a SIGTERM or --once-timeout does.
	select {
	case err := <-closed:
		t.Logf("indexed: %v", err)
		return
	case <-time.After(20 * time.Second):
	}
	cancel()
	select {
	case err := <-closed:
		t.Fatalf("a %d-byte pack took over 20 s to index (then: %v)", len(pack), err)
	case <-time.After(10 * time.Second):
		t.Fatalf("a %d-byte pack still indexing after 20 s, and 10 s after the fetch's context was cancelled (ctx.Err=%v): the index pass never stops", len(pack), ctx.Err())
	}
}

// reversedRefDeltaPack is a pack of one small blob and n REF_DELTAs, each
// against the result of the one after it in the pack (the last against
// the blob): a chain git would write base first, written here base last.
// Each delta inserts a literal of its own, so every result is distinct.
func reversedRefDeltaPack(n int) []byte {
	type obj struct {
		base plumbing.Hash
		data []byte
	}
	base := []byte("base\n")
	objs := make([]obj, n)
	prev, prevData := plumbing.ComputeHash(plumbing.BlobObject, base), base
	for j := n - 1; j >= 0; j-- {
		lit := []byte(fmt.Sprintf("object %d\n", j))
		d := appendVarint(appendVarint(nil, uint64(len(prevData))), uint64(len(lit)))
		d = append(append(d, byte(len(lit))), lit...) // insert lit
		objs[j] = obj{prev, d}
		prev, prevData = plumbing.ComputeHash(plumbing.BlobObject, lit), lit
	}
	p := newPack(uint32(n + 1))
	for _, o := range objs {
		p.object(7, len(o.data), o.base[:], o.data)
	}
	p.object(3, len(base), nil, base)
	return p.finish()
}

// TestReversedRefDeltaChainIsNotQuadratic: resolveDeltas (index.go)
// resolves REF_DELTAs whose base is a delta "in a later round", each
// round a scan of every entry; a chain written base last resolves one
// delta a round, so n deltas cost n rounds of n entries. The objects
// bound allows 210,000 objects by default (4 per max-file plus 10,000).
// Measured: 2,000 deltas 0.1 s, 32,000 (a 1.5 MB pack) 24 s; 210,000, a
// ~10 MB pack within every default limit, ~17 minutes of CPU per
// attempt, with no context to stop it (as above).
func TestReversedRefDeltaChainIsNotQuadratic(t *testing.T) {
	b := boundsFor(fetch.Limits{})
	for _, n := range []int{2000, 32000} {
		pack := reversedRefDeltaPack(n)
		start := time.Now()
		if _, err := indexPack(packFile(t, pack), b, nil); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		t.Logf("%d deltas, a %d KB pack: %v", n, len(pack)>>10, took)
		if took > 5*time.Second {
			t.Fatalf("%d REF_DELTAs, a %d KB pack, took %v to index (the default bound allows %d objects)", n, len(pack)>>10, took, b.objects)
		}
	}
}
