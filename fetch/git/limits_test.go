package git_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/git"
	"github.com/ferrysync/ferry/internal/gittest"
	"github.com/ferrysync/ferry/internal/sourcetest"
	ferrysync "github.com/ferrysync/ferry/sync"
)

// bigRepo creates the bare repository base/name holding one commit on
// main: app.yaml and blob.bin, size bytes read from blob. git fast-import
// writes them straight into a pack, deflated at the given level, which the
// server then sends as it is: bigFileThreshold keeps it from searching the
// blob for deltas, or from compressing it again, which would cost seconds
// before the first byte.
func bigRepo(t testing.TB, base, name string, blob io.Reader, size int64, level int) {
	t.Helper()
	dir := filepath.Join(base, name)
	env := gittest.Env(base)
	for _, args := range [][]string{
		{"init", "-q", "--bare", "-b", "main", dir},
		{"-C", dir, "config", "core.compression", strconv.Itoa(level)},
		{"-C", dir, "config", "core.bigFileThreshold", "1m"},
	} {
		if out, err := runGit(env, "", nil, args...); err != nil {
			t.Fatalf("git %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	err := gittest.FastImport(t.Context(), env, dir, func(w *bufio.Writer) {
		fmt.Fprintf(w, "blob\nmark :1\ndata %d\n", size)
		io.CopyN(w, blob, size)
		const app = "small: true\n"
		fmt.Fprintf(w, "\ncommit refs/heads/main\ncommitter t <t@ferry.invalid> 1700000000 +0000\ndata 4\nbig\n")
		fmt.Fprintf(w, "M 100644 :1 blob.bin\nM 100644 inline app.yaml\ndata %d\n%s\n", len(app), app)
	}, "-c", "fastimport.unpackLimit=0")
	if err != nil {
		t.Fatal(err)
	}
}

// zeros reads as endless zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// dirSize is the bytes of the files under dir.
func dirSize(t testing.TB, dir string) int64 {
	var n int64
	for _, size := range storeFiles(t, dir) {
		n += size
	}
	return n
}

// TestHugeBlobIsRefusedWithFlatMemoryAndLeavesNothing fetches a commit
// holding one 120 MB blob under a max-bytes limit of 1M, in a child process whose
// peak RSS is read from its rusage: the fetch must stop on the limit, not
// download and index the blob.
func TestHugeBlobIsRefusedWithFlatMemoryAndLeavesNothing(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("writes a 120 MB repository")
	}
	const (
		blobSize = 120 << 20
		maxRSS   = 64 << 20
		maxStore = 4 << 20
	)
	buildRSSBinary()
	base := t.TempDir()
	// Random bytes do not compress: level 0 makes the pack quick to write.
	bigRepo(t, base, "big.git", rand.NewChaCha8([32]byte{1}), blobSize, 0)
	httpSrv := startHTTP(t, base)
	sshSrv := startSSH(t, base)

	for _, c := range []struct {
		name string
		url  string
		opts git.Options
	}{
		// Counted by the transport: the HTTP bodies, the SSH connection.
		{"smart HTTP", httpSrv.url("big.git"), git.Options{}},
		{"SSH", sshSrv.url("big.git"), sshSrv.options()},
		// Counted as the pack is written to the store.
		{"git protocol", startGitDaemon(t, base, "big.git"), git.Options{}},
		{"file", "git::file://" + filepath.Join(base, "big.git"), git.Options{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			d, rss, res := runChild(t, rssBinary(t), childSpec{URL: c.url, Root: root, Options: c.opts,
				Limits: fetch.Limits{MaxBytes: 1 << 20}})
			t.Logf("%s, peak RSS %.1f MiB; error: %s", d, rss, res.Error)
			if res.Error == "" || !res.Permanent || !strings.Contains(res.Error, "max-bytes limit") {
				t.Errorf("sync error %q (permanent %t), want a permanent error naming the max-bytes limit", res.Error, res.Permanent)
			}
			if rss*(1<<20) > maxRSS {
				t.Errorf("peak RSS %.1f MiB, want under %d MiB", rss, maxRSS>>20)
			}
			state := ferrysync.StateDir(root, "c")
			if n := dirSize(t, state); n > maxStore {
				t.Errorf("object store holds %d bytes after the refused fetch, want at most %d", n, maxStore)
			}
		})
	}
}

// TestCompressedBlobOverTheLimitIsRefusedBeforeItIsInflated: 100 MiB of
// zeros deflate to a pack of about 450 KB, well within the pack bound, but
// go-git would read the blob whole into memory to index it. The pack is
// refused on the object's size, before go-git sees it; a file://
// repository's blob is refused on its size before it is read.
func TestCompressedBlobOverTheLimitIsRefusedBeforeItIsInflated(t *testing.T) {
	t.Parallel()
	const (
		blobSize = 100 << 20
		maxRSS   = 64 << 20
	)
	buildRSSBinary()
	base := t.TempDir()
	bigRepo(t, base, "zeros.git", zeros{}, blobSize, 1)
	srv := startHTTP(t, base)
	for _, c := range []struct{ name, url, want string }{
		{"smart HTTP", srv.url("zeros.git"), "object of 104857600 bytes, more than the max-bytes limit allows"},
		{"file", "git::file://" + filepath.Join(base, "zeros.git"), "blob of 104857600 bytes, more than the max-bytes limit allows"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			d, rss, res := runChild(t, rssBinary(t), childSpec{URL: c.url, Root: root, Limits: fetch.Limits{MaxBytes: 1 << 20}})
			t.Logf("%s, %d bytes downloaded, peak RSS %.1f MiB; error: %s", d, srv.packBytes.Load(), rss, res.Error)
			if res.Error == "" || !res.Permanent || !strings.Contains(res.Error, c.want) {
				t.Errorf("sync error %q (permanent %t), want a permanent error naming the object's size and the max-bytes limit", res.Error, res.Permanent)
			}
			if rss*(1<<20) > maxRSS {
				t.Errorf("peak RSS %.1f MiB, want under %d MiB", rss, maxRSS>>20)
			}
			if n := dirSize(t, ferrysync.StateDir(root, "c")); n > 1<<20 {
				t.Errorf("object store holds %d bytes after the refused fetch", n)
			}
		})
	}
}

// TestRefusedPackLeavesTheStoreAsItWas: a commit over the limit, arriving
// as a thin pack into a store that holds the previous one, is refused and
// leaves the store's files and shallow list as they were; the next commit
// within the limits is fetched as usual. Over HTTP the transport stops it;
// over file:// the store does.
func TestRefusedPackLeavesTheStoreAsItWas(t *testing.T) {
	t.Parallel()
	r, srv := serveRepo(t)
	r.git("config", "core.compression", "0") // random bytes: quick, same size
	r.git("config", "core.bigFileThreshold", "1m")
	r.set(map[string]string{"app.yaml": "v1"})
	limits := fetch.Limits{MaxBytes: 1 << 10}

	type syncer struct {
		name  string
		store *ferrysync.Store
		state string
		src   *git.Source
	}
	var syncers []syncer
	for name, url := range map[string]string{"smart HTTP": srv.url("r.git"), "file": "git::file://" + r.dir} {
		store, state := newStore(t, limits)
		src, _ := newSourceEnv(t, url, git.Options{}, fetch.Env{StateDir: state, Limits: limits})
		sourcetest.MustSync(t, store, "c", src)
		syncers = append(syncers, syncer{name, store, state, src})
	}
	before := map[string]map[string]int64{}
	for _, s := range syncers {
		before[s.name] = storeFiles(t, s.state)
	}

	r.write("blob.bin", randomText(t, 20<<20), 0o644)
	r.commit("a blob over the limit")
	for _, s := range syncers {
		err := sourcetest.Sync(t, s.store, "c", s.src).Err
		if err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), "max-bytes limit") {
			t.Fatalf("%s: err = %v, want a permanent error naming the max-bytes limit", s.name, err)
		}
		if after := storeFiles(t, s.state); !maps.Equal(after, before[s.name]) {
			t.Errorf("%s: the refused fetch changed the store:\nbefore %v\nafter  %v", s.name, before[s.name], after)
		}
	}

	r.set(map[string]string{"app.yaml": "v2"})
	for _, s := range syncers {
		sourcetest.MustSync(t, s.store, "c", s.src)
		assertPublished(t, s.store, map[string]string{"app.yaml": "v2"})
	}
}

// storeFiles maps each file of a source's state directory to its size;
// none when there is no such directory (a file:// source keeps no store).
func storeFiles(t testing.TB, dir string) map[string]int64 {
	t.Helper()
	files := map[string]int64{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == dir {
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		files[strings.TrimPrefix(p, dir)] = fi.Size()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
