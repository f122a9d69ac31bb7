package git_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/git"
	"github.com/ferrysync/ferry/internal/gittest"
	"github.com/ferrysync/ferry/internal/sourcetest"
	ferrysync "github.com/ferrysync/ferry/sync"
)

// benchTree is the benchmark repository: 5,000 files of 10,000 random
// bytes (fixed seed) in 50 directories, about 50 MB, in one commit. It is
// built once per process with git fast-import, straight into a pack.
var benchTree = gittest.Tree{Files: 5000, Dirs: 50, FileSize: 10_000, RandomPercent: 100}

var bench struct {
	once gosync.Once
	base string // holds big.git
	err  error
}

// benchRepoBase returns a directory holding the bare repository big.git.
func benchRepoBase(b *testing.B) string {
	bench.once.Do(func() {
		bench.base, bench.err = os.MkdirTemp("", "ferry-git-bench-")
		if bench.err == nil {
			bench.err = benchTree.Build(b.Context(), filepath.Join(bench.base, "big.git"), gittest.Env(bench.base))
		}
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.base
}

// BenchmarkFirstSync compares a first sync of the 50 MB repository (fetch
// and publish, in a child process) with `git clone --depth 1` of the same
// repository from the same server, in the same run. It also compares the
// two without their filesystem work: ferry with a Writer that reads every
// blob and writes nothing, against `git clone --bare --depth 1` (download
// and index-pack, no checkout).
func BenchmarkFirstSync(b *testing.B) {
	base := benchRepoBase(b)
	srv := startHTTP(b, base)
	url := srv.url("big.git")

	_, idleRSS, _ := runChild(b, os.Args[0], childSpec{})

	var m struct {
		ferry, fetch, publish, noWrite, git, gitBare time.Duration
		ferryRSS, noWriteRSS, gitRSS, gitBareRSS     float64
		netBytes                                     int64
	}
	child := func(i int, spec childSpec) (time.Duration, float64, childResult) {
		var env []string
		if p := os.Getenv(cpuProfileEnv); p != "" {
			env = append(env, fmt.Sprintf("%s=%s.%d.%t", cpuProfileEnv, p, i, spec.NoWrite))
		}
		d, rss, res := runChild(b, os.Args[0], spec, env...)
		if res.Error != "" || res.Files != benchTree.Files || res.Bytes != benchTree.Size() {
			b.Fatalf("child exported %+v, want %d files of %d bytes", res, benchTree.Files, benchTree.Size())
		}
		return d, rss, res
	}
	clone := func(args ...string) (time.Duration, float64) {
		cmd := exec.Command("git", append([]string{"clone", "-q", "--depth", "1"}, args...)...)
		cmd.Env = gittest.Env(filepath.Dir(args[len(args)-1]))
		d, rss, _ := run(b, cmd)
		return d, rss
	}
	plain := strings.TrimPrefix(url, "git::")
	for i := 0; b.Loop(); i++ {
		dir := b.TempDir()
		before := srv.packBytes.Load()
		d, rss, res := child(i, childSpec{URL: url, Root: filepath.Join(dir, "root")})
		m.netBytes += srv.packBytes.Load() - before
		m.ferry += d
		m.fetch += time.Duration(res.FetchSeconds * float64(time.Second))
		m.publish += time.Duration(res.PublishSeconds * float64(time.Second))
		m.ferryRSS = max(m.ferryRSS, rss)

		d, rss = clone(plain, filepath.Join(dir, "clone"))
		m.git += d
		m.gitRSS = max(m.gitRSS, rss)

		d, rss, _ = child(i, childSpec{URL: url, Root: filepath.Join(dir, "root2"), NoWrite: true})
		m.noWrite += d
		m.noWriteRSS = max(m.noWriteRSS, rss)

		d, rss = clone("--bare", plain, filepath.Join(dir, "bare.git"))
		m.gitBare += d
		m.gitBareRSS = max(m.gitBareRSS, rss)
	}
	n := float64(b.N)
	b.ReportMetric(m.ferry.Seconds()/n, "ferry-s/op")
	b.ReportMetric(m.fetch.Seconds()/n, "ferry-fetch+export-s/op")
	b.ReportMetric(m.publish.Seconds()/n, "ferry-publish-s/op")
	b.ReportMetric(m.git.Seconds()/n, "git-clone-s/op")
	b.ReportMetric(m.ferry.Seconds()/m.git.Seconds(), "time-ratio")
	b.ReportMetric(m.noWrite.Seconds()/n, "ferry-nowrite-s/op")
	b.ReportMetric(m.gitBare.Seconds()/n, "git-clone-bare-s/op")
	b.ReportMetric(m.noWrite.Seconds()/m.gitBare.Seconds(), "nowrite-time-ratio")
	b.ReportMetric(m.ferryRSS, "ferry-peak-RSS-MB")
	b.ReportMetric(m.noWriteRSS, "ferry-nowrite-peak-RSS-MB")
	b.ReportMetric(idleRSS, "idle-child-RSS-MB")
	b.ReportMetric(m.gitRSS, "git-clone-peak-RSS-MB")
	b.ReportMetric(m.gitBareRSS, "git-clone-bare-peak-RSS-MB")
	b.ReportMetric(m.ferryRSS/m.gitRSS, "RSS-ratio")
	b.ReportMetric(float64(m.netBytes)/n, "net-bytes/op")
}

// BenchmarkOneFileChange measures the time from a new commit (one file of
// the 50 MB tree changed) to the new revision published, and what it costs
// on the wire and on disk.
func BenchmarkOneFileChange(b *testing.B) {
	base := benchRepoBase(b)
	work := b.TempDir()
	env := gittest.Env(work)
	if out, err := runGit(env, "", nil, "clone", "-q", "--bare", filepath.Join(base, "big.git"), filepath.Join(work, "change.git")); err != nil {
		b.Fatalf("git clone: %v: %s", err, out)
	}
	srv := startHTTP(b, work)
	store, src := benchSource(b, srv.url("change.git"))
	sourcetest.MustSync(b, store, "c", src)

	var written, netBytes, posts int64
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		commitOneFile(b, env, filepath.Join(work, "change.git"), i)
		store.GC("c", 2)
		n0, p0 := srv.packBytes.Load(), srv.uploadPOST.Load()
		b.StartTimer()
		stats := sourcetest.MustSync(b, store, "c", src).Stats
		b.StopTimer()
		if stats.Reused != benchTree.Files-1 {
			b.Fatalf("reused %d files, want %d", stats.Reused, benchTree.Files-1)
		}
		written += stats.BytesWritten
		netBytes += srv.packBytes.Load() - n0
		posts += srv.uploadPOST.Load() - p0
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(float64(written)/n, "bytes-written/op")
	b.ReportMetric(100*float64(written)/n/float64(benchTree.Size()), "%-of-tree-written")
	b.ReportMetric(float64(netBytes)/n, "net-bytes/op")
	b.ReportMetric(float64(posts)/n, "upload-pack-POSTs/op")
}

// BenchmarkUnchangedPoll measures a poll that finds nothing new: one
// ls-remote of the 50 MB repository.
func BenchmarkUnchangedPoll(b *testing.B) {
	base := benchRepoBase(b)
	srv := startHTTP(b, base)
	store, src := benchSource(b, srv.url("big.git"))
	sourcetest.MustSync(b, store, "c", src)
	posts := srv.uploadPOST.Load()
	for b.Loop() {
		sourcetest.MustSync(b, store, "c", src)
	}
	if srv.uploadPOST.Load() != posts {
		b.Fatal("an unchanged poll downloaded")
	}
}

// benchSource is a git source for url, publishing into a new store.
func benchSource(b *testing.B, url string) (*ferrysync.Store, *git.Source) {
	store, state := newStore(b, fetch.Limits{})
	src, _ := newSource(b, url, git.Options{}, state)
	return store, src
}

// commitOneFile changes one file of the repository in a new commit on main.
func commitOneFile(b *testing.B, env []string, dir string, i int) {
	content := fmt.Sprintf("changed %d\n", i)
	err := gittest.FastImport(b.Context(), env, dir, func(w *bufio.Writer) {
		fmt.Fprintf(w, "commit refs/heads/main\ncommitter bench <bench@ferry.invalid> %d +0000\ndata 6\nchange\nfrom refs/heads/main^0\nM 100644 inline %s\ndata %d\n%s\n",
			1700000001+i, benchTree.Name(i%benchTree.Files), len(content), content)
	})
	if err != nil {
		b.Fatal(err)
	}
}
