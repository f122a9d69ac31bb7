package sync

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/ferrysync/ferry/fetch"
)

// benchTree is the tree of the publish benchmarks: 5,000 files of 10 KB
// (about 50 MB) in 50 directories, random content from a fixed seed.
type benchTree struct {
	names    []string
	contents [][]byte
}

func newBenchTree() *benchTree {
	r := rand.New(rand.NewPCG(1, 2))
	t := &benchTree{}
	for i := range 5000 {
		b := make([]byte, 10_000)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		t.names = append(t.names, fmt.Sprintf("dir%02d/file%04d.yaml", i%50, i))
		t.contents = append(t.contents, b)
	}
	return t
}

func (bt *benchTree) stage(b *testing.B, st *Stage, keys func(i int) string) {
	for i, name := range bt.names {
		c := bt.contents[i]
		err := st.WriteFile(name, 0o644, keys(i), func() (io.ReadCloser, error) {
			return io.NopCloser(bytesReader(c)), nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// published is a store where the tree is published and sealed as "base",
// each file keyed "k<i>"; the store closes when the benchmark ends.
func (bt *benchTree) published(b *testing.B) *Store {
	s, err := OpenStore(b.TempDir(), fetch.Limits{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	st := s.Begin("c", "")
	bt.stage(b, st, func(i int) string { return fmt.Sprint("k", i) })
	if err := st.Publish("base"); err != nil {
		b.Fatal(err)
	}
	s.Seal("c", "base")
	return s
}

func bytesReader(b []byte) io.Reader { return &sliceReader{b: b} }

type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// BenchmarkPublish measures a full publish of the 50 MB tree and a publish
// where one file changed and the other 4,999 are reused by hard link.
func BenchmarkPublish(b *testing.B) {
	tree := newBenchTree()
	if os.Getenv("FERRY_BENCH_FSYNC_EACH") != "" {
		flushEach = true
	}
	b.Run("full", func(b *testing.B) {
		s, _ := OpenStore(b.TempDir(), fetch.Limits{})
		defer s.Close()
		b.SetBytes(50_000_000)
		var written int64
		for i := 0; b.Loop(); i++ {
			st := s.Begin("c", "")
			tree.stage(b, st, func(int) string { return "" })
			written += st.Stats().BytesWritten
			if err := st.Publish(fmt.Sprintf("r%d", i)); err != nil {
				b.Fatal(err)
			}
			s.GC("c", 2)
		}
		b.ReportMetric(float64(written)/float64(b.N), "bytes-written/op")
	})
	b.Run("one-file-changed", func(b *testing.B) {
		s := tree.published(b)
		var written int64
		var publishing, housekeeping time.Duration
		prev := "base"
		for i := 0; b.Loop(); i++ {
			start := time.Now()
			st := s.Begin("c", prev)
			tree.stage(b, st, func(j int) string {
				if j == 0 {
					return fmt.Sprint("changed", i)
				}
				return fmt.Sprint("k", j)
			})
			stats := st.Stats()
			if stats.Reused != 4999 || stats.Reread != 0 {
				b.Fatalf("reused %d files, %d of them read first; want 4999 on their inode alone", stats.Reused, stats.Reread)
			}
			written += stats.BytesWritten
			prev = fmt.Sprintf("r%d", i)
			if err := st.Publish(prev); err != nil {
				b.Fatal(err)
			}
			swapped := time.Now()
			// What follows the swap (and the notify) in the daemon.
			s.GC("c", 2)
			if err := s.Seal("c", prev); err != nil {
				b.Fatal(err)
			}
			publishing += swapped.Sub(start)
			housekeeping += time.Since(swapped)
		}
		perOp := float64(written) / float64(b.N)
		b.ReportMetric(perOp, "bytes-written/op")
		b.ReportMetric(100*perOp/50_000_000, "%-of-tree-written")
		b.ReportMetric(float64(publishing.Milliseconds())/float64(b.N), "ms-to-swap/op")
		b.ReportMetric(float64(housekeeping.Milliseconds())/float64(b.N), "ms-after-swap/op")
	})
}

var _ fetch.Writer = (*Stage)(nil)

// BenchmarkVerify measures the deep check of --verify-period: read and
// hash every file of the published 50 MB tree and compare it with the
// manifest.
func BenchmarkVerify(b *testing.B) {
	s := newBenchTree().published(b)
	b.SetBytes(50_000_000)
	for b.Loop() {
		if err := s.Verify(context.Background(), "c", "base"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadManifest measures what a publish or deep check pays to read
// the manifest of the 5,000-file tree from disk, once ReleaseMemory has
// dropped it from memory.
func BenchmarkReadManifest(b *testing.B) {
	s := newBenchTree().published(b)
	for b.Loop() {
		s.forget("c")
		if _, err := s.readManifest("c", "base"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteManifest measures writing the manifest of the 5,000-file
// tree, what a publish and its Seal each do once.
func BenchmarkWriteManifest(b *testing.B) {
	s := newBenchTree().published(b)
	m, err := s.readManifest("c", "base")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := s.writeManifest("c", "bench", m); err != nil {
			b.Fatal(err)
		}
	}
}
