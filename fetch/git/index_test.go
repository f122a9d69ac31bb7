package git

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"hash/adler32"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/gittest"
)

// indexPack indexes the whole pack in f, as the index pass does a pack
// still arriving (indexStream).
func indexPack(f *os.File, b bounds, early *earlyExport) (*indexedPack, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return indexStream(context.Background(), &growingFile{f: f, size: fi.Size(), done: true}, b, early)
}

// deltaRepo is a repository whose objects git packs as deltas: three
// commits of files that differ by a line.
func deltaRepo(t *testing.T) (dir string, env []string) {
	t.Helper()
	dir = t.TempDir()
	env = gittest.Env(filepath.Join(dir, ".home"))
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Env, cmd.Dir = env, dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %s: %v", strings.Join(args, " "), err)
		}
		return string(out)
	}
	git("init", "-q", "-b", "main")
	var body strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&body, "key%d: value %d\n", i, i*i)
	}
	for c := range 3 {
		for f := range 4 {
			text := body.String() + fmt.Sprintf("commit %d file %d\n", c, f)
			if err := os.MkdirAll(filepath.Join(dir, "conf", fmt.Sprint(f%2)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "conf", fmt.Sprint(f%2), fmt.Sprintf("f%d.yaml", f)), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		git("add", "-A")
		git("commit", "-q", "-m", fmt.Sprint("commit ", c))
	}
	return dir, env
}

// packObjects runs git pack-objects over the objects of revs, one a line.
func packObjects(t *testing.T, dir string, env []string, revs string, args ...string) []byte {
	t.Helper()
	pack := exec.Command("git", append([]string{"pack-objects", "--revs", "--stdout", "-q"}, args...)...)
	pack.Env, pack.Dir, pack.Stdin = env, dir, strings.NewReader(revs+"\n")
	out, err := pack.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestIndexPackAsGit indexes packs git made, with deltas by offset and by
// hash, and compares the .idx written with git index-pack's, byte for
// byte: the same hashes, offsets, CRCs and checksums.
func TestIndexPackAsGit(t *testing.T) {
	dir, env := deltaRepo(t)
	b := boundsFor(fetch.Limits{MaxBytes: 1 << 30, MaxFiles: 1000})
	for name, args := range map[string][]string{
		"OFS_DELTA": {"--delta-base-offset"},
		"REF_DELTA": nil,
	} {
		t.Run(name, func(t *testing.T) {
			pack := packObjects(t, dir, env, "", append(args, "--all")...)
			p, err := indexPack(packFile(t, pack), b, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := plumbing.OFSDeltaObject
			if name == "REF_DELTA" {
				want = plumbing.REFDeltaObject
			}
			deltas := 0
			for _, e := range p.entries {
				if e.typ == want {
					deltas++
				}
			}
			if deltas == 0 {
				t.Fatalf("git packed no %s object: the test proves nothing", name)
			}

			out := t.TempDir()
			spool, err := os.Create(filepath.Join(out, "tmp_spool"))
			if err == nil {
				_, err = spool.Write(pack)
			}
			if err == nil {
				err = p.store(spool, out)
			}
			spool.Close()
			if err != nil {
				t.Fatal(err)
			}
			ours, err := os.ReadFile(filepath.Join(out, "pack-"+p.checksum.String()+".idx"))
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("git", "index-pack", "-o", filepath.Join(out, "git.idx"), filepath.Join(out, "pack-"+p.checksum.String()+".pack"))
			cmd.Env = env
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("git index-pack: %v: %s", err, msg)
			}
			theirs, err := os.ReadFile(filepath.Join(out, "git.idx"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours, theirs) {
				t.Fatalf("the .idx of %d objects (%d deltas) differs from git index-pack's", len(p.entries), deltas)
			}

			// The export reads every object back from the pack as git does.
			ps, err := openPacked(t.Context(), nil, p, out, b)
			if err != nil {
				t.Fatal(err)
			}
			defer ps.close()
			for _, e := range p.entries {
				obj, err := ps.EncodedObject(plumbing.AnyObject, e.hash)
				if err != nil {
					t.Fatal(err)
				}
				r, _ := obj.Reader()
				got, _ := io.ReadAll(r)
				cmd := exec.Command("git", "cat-file", obj.Type().String(), e.hash.String())
				cmd.Env, cmd.Dir = env, dir
				want, err := cmd.Output()
				if err != nil {
					t.Fatalf("git cat-file %s %s: %v", obj.Type(), e.hash, err)
				}
				if !bytes.Equal(got, want) || obj.Hash() != e.hash || obj.Size() != int64(len(want)) {
					t.Fatalf("object %s (%s at offset %d) read back differs from git's", e.hash, e.typ, e.offset)
				}
			}
		})
	}
}

// TestDamagedObjectNeverKeepsItsID: a byte changed inside an object's
// zlib stream, with the pack's trailing SHA-1 made to match, must either
// be refused or give the object another id, one no tree names: never the
// original id with other content. A stream whose content is whole but
// whose Adler-32 is wrong is refused too: what the index pass accepts is
// stored, and go-git and git would refuse to read it later.
func TestDamagedObjectNeverKeepsItsID(t *testing.T) {
	dir, env := deltaRepo(t)
	b := boundsFor(fetch.Limits{MaxBytes: 1 << 30, MaxFiles: 1000})
	pack := packObjects(t, dir, env, "", "--all", "--delta-base-offset")
	p, err := indexPack(packFile(t, pack), b, nil)
	if err != nil {
		t.Fatal(err)
	}
	resum := func(pk []byte) {
		sum := sha1.Sum(pk[:len(pk)-20])
		copy(pk[len(pk)-20:], sum[:])
	}
	damaged, refused := 0, 0
	for i, e := range p.entries {
		if e.end-e.offset < 32 {
			continue
		}
		for _, at := range []int64{(e.offset + e.end) / 2, e.end - 6} {
			pk := bytes.Clone(pack)
			pk[at] ^= 0x5a
			resum(pk)
			q, err := indexPack(packFile(t, pk), b, nil)
			damaged++
			if err != nil {
				refused++
				continue
			}
			if q.entries[i].hash == e.hash {
				t.Fatalf("object %s (%s) damaged at byte %d of %d-%d kept its id", e.hash, e.typ, at, e.offset, e.end)
			}
		}
		// The stream's last four bytes are its Adler-32.
		pk := bytes.Clone(pack)
		pk[e.end-1] ^= 0x5a
		resum(pk)
		if _, err := indexPack(packFile(t, pk), b, nil); err == nil || !strings.Contains(err.Error(), "checksum") {
			t.Fatalf("a wrong Adler-32 of %s (%s): %v, want a checksum error", e.hash, e.typ, err)
		}
	}
	if damaged < 20 {
		t.Fatalf("only %d objects damaged: the test proves little", damaged)
	}
	t.Logf("%d damaged streams: %d refused, the rest under another id", damaged, refused)
}

// TestZstreamStopsAtEachStreamsEnd reads zlib streams laid end to end, as
// a pack holds them, through readers of several buffer sizes: each is
// read whole and leaves the reader at the byte after its checksum, with
// and without the check; a stream cut inside its checksum is truncated,
// and a header asking for a preset dictionary is refused.
func TestZstreamStopsAtEachStreamsEnd(t *testing.T) {
	packed, want := zlibStreams()
	for _, verify := range []bool{false, true} {
		for _, size := range []int{16, 17, 4096, 64 << 10} {
			br := bufio.NewReaderSize(bytes.NewReader(packed.Bytes()), size)
			var z zstream
			if verify {
				z.sum = adler32.New()
			}
			for i, w := range want {
				if err := z.reset(br); err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(&z)
				if err != nil || !bytes.Equal(got, w) {
					t.Fatalf("verify %v, buffer %d, stream %d: %d bytes, %v", verify, size, i, len(got), err)
				}
				if n, err := z.Read(make([]byte, 8)); n != 0 || err != io.EOF {
					t.Fatalf("a read after the end: %d, %v", n, err)
				}
				if c, _ := br.ReadByte(); c != 0xab {
					t.Fatalf("verify %v, buffer %d, stream %d: left at %#x, not at the next object", verify, size, i, c)
				}
			}
		}
	}
	var one bytes.Buffer
	zw := zlib.NewWriter(&one)
	zw.Write([]byte("hello"))
	zw.Close()
	for cut := 1; cut <= 4; cut++ {
		var z zstream
		if err := z.reset(bufio.NewReader(bytes.NewReader(one.Bytes()[:one.Len()-cut]))); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(&z); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("cut %d bytes into the checksum: %v", cut, err)
		}
	}
	var z zstream
	if err := z.reset(bytes.NewReader([]byte{0x78, 0xbb})); err == nil { // FDICT set, header check right
		t.Fatal("a preset dictionary was accepted")
	}
}

// zlibStreams lays 100 zlib streams end to end, as a pack holds them
// (half of them random bytes, up to 70,000 bytes each), each followed by
// the next object's first byte, and returns them with their contents.
func zlibStreams() (*bytes.Buffer, [][]byte) {
	rng := rand.New(rand.NewPCG(1, 2))
	var packed bytes.Buffer
	var want [][]byte
	for i := range 100 {
		b := make([]byte, rng.IntN(70000))
		if i%2 == 0 {
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
		}
		want = append(want, b)
		zw := zlib.NewWriter(&packed)
		zw.Write(b)
		zw.Close()
		packed.WriteByte(0xab) // the next object's first byte
	}
	return &packed, want
}

// TestIndexPackRefusesThin: a thin pack's deltas lean on objects outside
// it, which an empty store does not have.
func TestIndexPackRefusesThin(t *testing.T) {
	dir, env := deltaRepo(t)
	pack := packObjects(t, dir, env, "main\n^main~1", "--thin")
	_, err := indexPack(packFile(t, pack), boundsFor(fetch.Limits{MaxBytes: 1 << 30, MaxFiles: 1000}), nil)
	if err == nil || !strings.Contains(err.Error(), "outside the pack") {
		t.Fatalf("indexPack of a thin pack: %v, want an error naming deltas outside the pack", err)
	}
}

// deltaChainPack is a pack of one blob of size bytes (zeros: a few KB of
// zlib) and n OFS_DELTAs, each against the one before it, each copying
// all but the first byte of its base and adding one: every result is as
// large as the blob and distinct. About 40 bytes a delta. It returns the
// pack's entries too, as the index pass finds them but for their hashes.
func deltaChainPack(size, n int) ([]byte, []packEntry) {
	p := newPack(uint32(n + 1))
	entries := []packEntry{{offset: int64(p.Len()), typ: plumbing.BlobObject, size: int64(size), objSize: int64(size)}}
	p.object(3, size, nil, make([]byte, size))
	for k := range n {
		d := appendVarint(appendVarint(nil, uint64(size)), uint64(size))
		sz := size - 1
		d = append(d, 0x80|0x01|0x10|0x20|0x40, 1, byte(sz), byte(sz>>8), byte(sz>>16)) // copy base[1:]
		d = append(d, 1, byte(1+k%255))                                                 // insert one byte
		prev := &entries[len(entries)-1]
		off := int64(p.Len())
		prev.end = off
		entries = append(entries, packEntry{offset: off, typ: plumbing.OFSDeltaObject, size: int64(len(d)), objSize: int64(size), baseOffset: prev.offset})
		p.object(6, len(d), ofsDelta(off-prev.offset), d)
	}
	entries[len(entries)-1].end = int64(p.Len())
	return p.finish(), entries
}

// indexThroughSpool hands pack to the index pass as a fetch does, through
// the store's PackfileWriter, with ctx the fetch's, and returns what
// closing the spool returns.
func indexThroughSpool(ctx context.Context, t *testing.T, pack []byte, b bounds) <-chan error {
	repo := t.TempDir()
	dir := filepath.Join(repo, "objects", "pack")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	st := newStorage(osfs.New(repo), nil)
	t.Cleanup(func() { st.Close() })
	m := &meteredStorer{ctx: ctx, Storer: st, into: st, dir: dir, meter: &meter{bounds: b, cancel: func() {}}}
	w, err := m.PackfileWriter()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(pack); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- w.Close() }()
	return closed
}

// waitFor returns what done sends, failing the test when it takes over d.
func waitFor(t *testing.T, done <-chan error, d time.Duration, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("%s: not done after %v", what, d)
		return nil
	}
}

// TestDeltaChainOfLargeObjectsIsNotQuadraticAndStopsWithTheFetch: a
// chain of deltas of objects too large for the cache of delta bases (8
// MiB), read in its order as the index pass reads it, is built one patch
// a delta, not rebuilt from its bottom for each (n*n/2 patches of the
// whole object: 100 deltas of 9 MiB, a 12 KB pack, took 25 s; 2,500, 77
// KB, hours). What building a pack's objects may cost has a bound of its
// own, past which the index pass ends with the max-bytes limit; and a
// cancelled fetch (SIGTERM, --once-timeout) stops the index pass, which
// closing the spool waits for.
func TestDeltaChainOfLargeObjectsIsNotQuadraticAndStopsWithTheFetch(t *testing.T) {
	const n = 100
	pack, entries := deltaChainPack(9<<20, n)
	t.Run("built once a delta", func(t *testing.T) {
		// Read in order, each delta patches its base once: the chain's
		// bottom inflated once, then n patches of 9 MiB. A budget of
		// twice that stops a reader that builds the chain again from
		// its bottom for each delta (n*n/2 patches) long before it ends.
		b := boundsFor(fetch.Limits{})
		b.rebuildBytes = 2 * (n + 1) * (9<<20 + resolveCost)
		p := &indexedPack{entries: entries}
		r := newPackReader(packFile(t, pack), p, newRebuildWork(t.Context(), b))
		for i := 1; i <= n; i++ {
			if _, data, err := r.content(i, 0, nil); err != nil || len(data) != 9<<20 || data[len(data)-1] != byte(i) {
				t.Fatalf("delta %d: %d bytes, %v", i, len(data), err)
			}
		}
	})
	t.Run("past the bound on building", func(t *testing.T) {
		// 1 MiB of max-bytes: 17 MiB a fetch, 68 MiB of building.
		b := boundsFor(fetch.Limits{MaxBytes: 1 << 20})
		err := waitFor(t, indexThroughSpool(t.Context(), t, pack, b), 20*time.Second, "index pass")
		var le *limitError
		if !errors.As(err, &le) || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), "max-bytes limit") {
			t.Fatalf("err = %v, want a permanent max-bytes limit error", err)
		}
		t.Log(err)
	})
	t.Run("cancelled", func(t *testing.T) {
		// Hashing the 900 MiB of objects takes a second or more.
		ctx, cancel := context.WithCancel(t.Context())
		closed := indexThroughSpool(ctx, t, pack, boundsFor(fetch.Limits{}))
		time.Sleep(100 * time.Millisecond)
		cancel()
		start := time.Now()
		if err := waitFor(t, closed, 10*time.Second, "index pass cancelled"); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want the fetch's context.Canceled", err)
		}
		t.Logf("stopped %v after the cancel", time.Since(start))
	})
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

// TestReversedRefDeltaChainIsNotQuadratic: a REF_DELTA whose base is a
// delta later in the pack is resolved as soon as its base is. The index
// pass once resolved them in rounds, each a scan of every entry, and a
// chain written base last resolved one delta a round: n rounds of n
// entries (32,000 deltas, a 1.5 MB pack, 24 s; the 210,000 objects the
// default bound allows, ~10 MB, ~17 minutes of CPU per attempt).
func TestReversedRefDeltaChainIsNotQuadratic(t *testing.T) {
	const n = 32000
	pack := reversedRefDeltaPack(n)
	// Each delta is tried at most twice (once in pack order, once when
	// its base is resolved), and each attempt spends resolveCost: rounds
	// over the whole pack run out of this budget after a few of them.
	b := boundsFor(fetch.Limits{})
	b.rebuildBytes = 4 * n * resolveCost
	if _, err := indexPack(packFile(t, pack), b, nil); err != nil {
		t.Fatalf("%d REF_DELTAs written base last, a %d KB pack: %v", n, len(pack)>>10, err)
	}
}

// TestIndexStreamKeepsPaceWithTheDownload: the index pass reads the spool
// as it is written, in chunks of any size, and learns what it learns of
// the whole file; a download cut short fails it instead of leaving it
// waiting.
func TestIndexStreamKeepsPaceWithTheDownload(t *testing.T) {
	dir, env := deltaRepo(t)
	b := boundsFor(fetch.Limits{MaxBytes: 1 << 30, MaxFiles: 1000})
	pack := packObjects(t, dir, env, "", "--delta-base-offset", "--all")
	whole, err := indexPack(packFile(t, pack), b, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{len(pack), len(pack) - 10, len(pack) / 2, 5} {
		for _, chunk := range []int{1, 7, 4096} {
			f, err := os.CreateTemp(t.TempDir(), "spool")
			if err != nil {
				t.Fatal(err)
			}
			g := newGrowingFile(f)
			done := make(chan struct{})
			var p *indexedPack
			go func() {
				defer close(done)
				p, err = indexStream(t.Context(), g, b, nil)
			}()
			for off := 0; off < cut; off += chunk {
				n, werr := f.Write(pack[off:min(off+chunk, cut)])
				if werr != nil {
					t.Fatal(werr)
				}
				g.wrote(n)
			}
			g.finish()
			<-done
			f.Close()
			switch {
			case cut < len(pack) && err == nil:
				t.Errorf("a pack cut to %d of %d bytes was indexed", cut, len(pack))
			case cut == len(pack) && err != nil:
				t.Errorf("chunks of %d: %v", chunk, err)
			case cut == len(pack) && (p.checksum != whole.checksum || !slices.Equal(p.entries, whole.entries)):
				t.Errorf("chunks of %d: indexed otherwise than the whole file", chunk)
			}
		}
	}
}
