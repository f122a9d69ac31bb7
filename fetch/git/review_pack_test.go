package git

import (
	"fmt"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/ferrysync/ferry/fetch"
)

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
