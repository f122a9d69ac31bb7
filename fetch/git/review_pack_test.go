package git

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5/osfs"

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
