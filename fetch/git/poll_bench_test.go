package git_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	gosync "sync"
	"testing"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/git"
	"github.com/ferrysync/ferry/internal/gittest"
	"github.com/ferrysync/ferry/internal/sourcetest"
)

// manyRefsRepo returns a directory holding r.git, one commit on main and
// refs tags, built once per size and process.
func manyRefsRepo(b *testing.B, refs int) string {
	manyRefs.mu.Lock()
	defer manyRefs.mu.Unlock()
	if base, ok := manyRefs.bases[refs]; ok {
		return base
	}
	base, err := os.MkdirTemp("", "ferry-git-refs-")
	if err != nil {
		b.Fatal(err)
	}
	r := newRepo(b, base, "r.git")
	r.set(map[string]string{"app.yaml": "v: 1\n"})
	r.addTags(refs)
	if manyRefs.bases == nil {
		manyRefs.bases = map[int]string{}
	}
	manyRefs.bases[refs] = base
	return base
}

var manyRefs struct {
	mu    gosync.Mutex
	bases map[int]string // removed by TestMain
}

// BenchmarkIdlePoll measures a poll that finds nothing new, for a
// repository with 10,000 and 100,000 tags, against a server that speaks
// protocol v2 and one that speaks v0 only: requests and bytes at the
// server per poll, memory allocated per poll (B/op), and the peak RSS of
// a process that makes one such poll (a child that opens the source and
// polls once: the first poll of a v2 server is two requests, the probe
// and ls-refs).
func BenchmarkIdlePoll(b *testing.B) {
	for _, refs := range []int{10_000, 100_000} {
		for _, proto := range []string{"v2", "v0"} {
			b.Run(fmt.Sprintf("refs=%d/protocol=%s", refs, proto), func(b *testing.B) {
				base := manyRefsRepo(b, refs)
				srv := startHTTP(b, base)
				if proto == "v0" {
					srv = startHTTPv0(b, base)
				}
				url := srv.url("r.git") + "?ref=main"
				store, state := newStore(b, fetch.Limits{})
				src, _ := newSource(b, url, git.Options{}, state)
				rev := sourcetest.MustSync(b, store, "c", src).Rev
				sourcetest.MustSync(b, store, "c", src) // a v2 server is probed once

				before := srv.counts()
				b.ReportAllocs()
				for b.Loop() {
					sourcetest.MustSync(b, store, "c", src)
				}
				got := srv.counts().minus(before)
				if got.fetches != 0 {
					b.Fatal("an idle poll fetched")
				}
				n := float64(b.N)
				b.ReportMetric(float64(got.requests)/n, "requests/op")
				b.ReportMetric(float64(got.bytes)/n, "server-bytes/op")

				// The peak RSS of one poll, in a process of its own (median of
				// 3), once a first child has published into a root of its own.
				root := filepath.Join(b.TempDir(), "root")
				var rss []float64
				for i := range 4 {
					spec := childSpec{URL: url, Root: root, Prev: rev}
					if i == 0 {
						spec.Prev = ""
					}
					_, r, res := runChild(b, os.Args[0], spec)
					if res.Error != "" {
						b.Fatal(res.Error)
					}
					if i > 0 {
						rss = append(rss, r)
					}
				}
				slices.Sort(rss)
				b.ReportMetric(rss[1], "poll-peak-RSS-MB")
				_, idle, _ := runChild(b, os.Args[0], childSpec{})
				b.ReportMetric(idle, "idle-child-RSS-MB")
			})
		}
	}
}

// BenchmarkFileFirstSync measures a first sync (fetch and publish, in a
// child process) of the 50 MB benchmark repository as a git::file:// URL,
// bare and as a work tree: wall time, the child's own peak RSS, and the
// peak RSS of its process tree (with the git processes it may run).
func BenchmarkFileFirstSync(b *testing.B) {
	base := benchRepoBase(b)
	work := filepath.Join(b.TempDir(), "work")
	if out, err := runGit(gittest.Env(filepath.Dir(work)), "", nil, "clone", "-q", filepath.Join(base, "big.git"), work); err != nil {
		b.Fatalf("git clone: %v: %s", err, out)
	}
	for _, c := range []struct{ name, dir string }{{"bare", filepath.Join(base, "big.git")}, {"worktree", work}} {
		b.Run(c.name, func(b *testing.B) {
			var own, tree []float64
			for b.Loop() {
				_, r, t, res := runChildTree(b, os.Args[0], childSpec{URL: "git::file://" + c.dir, Root: filepath.Join(b.TempDir(), "root")})
				if res.Error != "" || res.Files != benchTree.Files || res.Bytes != benchTree.Size() {
					b.Fatalf("child exported %+v, want %d files of %d bytes", res, benchTree.Files, benchTree.Size())
				}
				own, tree = append(own, r), append(tree, t)
			}
			slices.Sort(own)
			slices.Sort(tree)
			b.ReportMetric(own[len(own)/2], "median-peak-RSS-MB")
			b.ReportMetric(tree[len(tree)/2], "median-tree-peak-RSS-MB")
			b.ReportMetric(tree[len(tree)-1], "max-tree-peak-RSS-MB")
		})
	}
}
