package git_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	gosync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/git"
	ferrysync "github.com/ferrysync/ferry/sync"
)

// The benchmark repository: 5,000 files of 10,000 random bytes (fixed
// seed) in 50 directories, about 50 MB, in one commit. It is built once
// per process with git fast-import, straight into a pack.
const (
	benchFiles    = 5000
	benchFileSize = 10_000
	benchTreeSize = benchFiles * benchFileSize
	// childEnv makes the test binary a one-shot fetcher (see TestMain), so
	// the benchmark can read a fetch's own peak RSS from its rusage.
	childEnv = "FERRY_GIT_BENCH_CHILD"
	// cpuProfileEnv names a file for the child's CPU profile.
	cpuProfileEnv = "FERRY_GIT_BENCH_CPUPROFILE"
)

var bench struct {
	once gosync.Once
	base string // holds big.git
	err  error
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(benchChild(spec))
	}
	code := m.Run()
	if bench.base != "" {
		os.RemoveAll(bench.base)
	}
	if plain.done != nil {
		<-plain.done
		os.RemoveAll(plain.dir)
	}
	os.Exit(code)
}

// benchRepoBase returns a directory holding the bare repository big.git.
func benchRepoBase(b *testing.B) string {
	bench.once.Do(func() {
		bench.base, bench.err = os.MkdirTemp("", "ferry-git-bench-")
		if bench.err == nil {
			bench.err = buildBenchRepo(filepath.Join(bench.base, "big.git"))
		}
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.base
}

func buildBenchRepo(dir string) error {
	env := gitEnv(filepath.Dir(dir))
	if out, err := runGit(env, "", nil, "init", "-q", "--bare", "-b", "main", dir); err != nil {
		return fmt.Errorf("git init: %v: %s", err, out)
	}
	r := rand.New(rand.NewPCG(1, 2))
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	go func() {
		w := bufio.NewWriterSize(pw, 1<<20)
		buf := make([]byte, benchFileSize)
		for i := range benchFiles {
			for j := range buf {
				buf[j] = byte(r.Uint32())
			}
			fmt.Fprintf(w, "blob\nmark :%d\ndata %d\n", i+1, len(buf))
			w.Write(buf)
			w.WriteString("\n")
		}
		fmt.Fprintf(w, "commit refs/heads/main\ncommitter bench <bench@ferry.invalid> 1700000000 +0000\ndata 5\nbench\n")
		for i := range benchFiles {
			fmt.Fprintf(w, "M 100644 :%d %s\n", i+1, benchName(i))
		}
		w.WriteString("\n")
		w.Flush()
		pw.Close()
	}()
	out, err := runGit(env, dir, pr, "fast-import", "--quiet")
	pr.Close()
	if err != nil {
		return fmt.Errorf("git fast-import: %v: %s", err, out)
	}
	return nil
}

func benchName(i int) string { return fmt.Sprintf("dir%02d/file%04d.yaml", i%50, i) }

func runGit(env []string, dir string, stdin *os.File, args ...string) ([]byte, error) {
	cmd := exec.Command("git", args...)
	cmd.Env = env
	cmd.Dir = dir
	if stdin != nil {
		cmd.Stdin = stdin
	}
	return cmd.CombinedOutput()
}

// childSpec is what the parent asks a child fetcher to do.
type childSpec struct {
	URL  string
	Root string
	// NoWrite reads every blob but writes no file: go-git's share of the
	// cost (download, pack index, inflating), without the filesystem's.
	NoWrite bool
	Options git.Options
	Limits  fetch.Limits
}

// childResult is what the child reports back on stdout.
type childResult struct {
	FetchSeconds   float64 // Fetch: ls-remote, download, export into staging
	PublishSeconds float64 // flush and rename into place
	Files          int
	Bytes          int64
	Error          string // the sync failed: why
	Permanent      bool   // and retrying could not fix it
	PeakRSS        int64  // bytes, see peakRSS
}

// peakRSS is this process's peak resident set size (VmHWM), in bytes. A
// child reads its own rather than leave it to the parent's rusage: Linux
// counts into a child's ru_maxrss the peak RSS of the process it was
// spawned from (Go starts children with vfork, then exec), so a child of a
// larger test process would report the parent's size.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(v, "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// benchChild fetches and publishes one revision, as `ferry once` would,
// and exits. Its rusage is the cost of a first sync.
func benchChild(spec string) int {
	var c childSpec
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if c.URL == "" {
		// The idle baseline: a process that does nothing.
		json.NewEncoder(os.Stdout).Encode(childResult{PeakRSS: peakRSS()})
		return 0
	}
	if p := os.Getenv(cpuProfileEnv); p != "" {
		f, err := os.Create(p)
		if err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	start := time.Now()
	store, err := ferrysync.OpenStore(c.Root, c.Limits)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	u, err := fetch.Parse(c.URL)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	env := fetch.Env{StateDir: ferrysync.StateDir(c.Root, "c"), Logger: log, Limits: c.Limits.WithDefaults()}
	src, err := git.New(u, c.Options, env)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var res childResult
	if c.NoWrite {
		w := &discardWriter{}
		_, err = src.Fetch(context.Background(), "", w)
		res = childResult{FetchSeconds: time.Since(start).Seconds(), Files: w.files, Bytes: w.bytes}
	} else {
		st := store.Begin("c", "")
		var rev string
		rev, err = src.Fetch(context.Background(), "", st)
		fetched := time.Now()
		if err == nil {
			err = st.Publish(rev)
		}
		stats := st.Stats()
		res = childResult{FetchSeconds: fetched.Sub(start).Seconds(), PublishSeconds: time.Since(fetched).Seconds(),
			Files: stats.Files, Bytes: stats.Bytes}
	}
	res.PeakRSS = peakRSS()
	if err != nil {
		res.Error, res.Permanent = err.Error(), fetch.IsPermanent(err)
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// discardWriter reads every file it is given and keeps nothing.
type discardWriter struct {
	files int
	bytes int64
}

func (d *discardWriter) WriteFile(_ string, _ os.FileMode, _ string, open fetch.Opener) error {
	r, err := open()
	if err != nil {
		return err
	}
	defer r.Close()
	n, err := io.Copy(io.Discard, r)
	d.files++
	d.bytes += n
	return err
}
func (d *discardWriter) Symlink(string, string) error { d.files++; return nil }
func (d *discardWriter) Mkdir(string) error           { return nil }

// run starts cmd and returns its wall time, peak RSS in MiB and stdout;
// its stderr (a child's log) goes to the test log. The peak RSS is the
// rusage's, which includes this process's RSS at the time it was spawned
// (see peakRSS).
func run(b testing.TB, cmd *exec.Cmd) (time.Duration, float64, []byte) {
	b.Helper()
	var out, errOut strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &errOut
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		b.Fatalf("%s: %v\n%s%s", cmd, err, out.String(), errOut.String())
	}
	if errOut.Len() > 0 {
		b.Log(strings.TrimSpace(errOut.String()))
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return d, float64(ru.Maxrss) / 1024, []byte(out.String())
}

// runChild runs one first sync in a child process, the test binary bin
// (see benchChild), and returns its wall time, its own peak RSS in MiB and
// its report.
func runChild(tb testing.TB, bin string, spec childSpec, env ...string) (time.Duration, float64, childResult) {
	tb.Helper()
	js, _ := json.Marshal(spec)
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childEnv+"="+string(js)), env...)
	d, _, out := run(tb, cmd)
	var res childResult
	if err := json.Unmarshal(out, &res); err != nil {
		tb.Fatalf("child said %q: %v", out, err)
	}
	return d, float64(res.PeakRSS) / (1 << 20), res
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
		if res.Error != "" || res.Files != benchFiles || res.Bytes != benchTreeSize {
			b.Fatalf("child exported %+v, want %d files of %d bytes", res, benchFiles, benchTreeSize)
		}
		return d, rss, res
	}
	clone := func(args ...string) (time.Duration, float64) {
		cmd := exec.Command("git", append([]string{"clone", "-q", "--depth", "1"}, args...)...)
		cmd.Env = gitEnv(filepath.Dir(args[len(args)-1]))
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
	env := gitEnv(work)
	if out, err := runGit(env, "", nil, "clone", "-q", "--bare", filepath.Join(base, "big.git"), filepath.Join(work, "change.git")); err != nil {
		b.Fatalf("git clone: %v: %s", err, out)
	}
	srv := startHTTP(b, work)
	tg := &benchTarget{b: b, root: b.TempDir()}
	tg.store, _ = ferrysync.OpenStore(tg.root, fetch.Limits{})
	u, _ := fetch.Parse(srv.url("change.git"))
	src, err := git.New(u, git.Options{}, fetch.Env{StateDir: ferrysync.StateDir(tg.root, "c")})
	if err != nil {
		b.Fatal(err)
	}
	tg.sync(src)

	var written, netBytes, posts int64
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		commitOneFile(b, env, filepath.Join(work, "change.git"), i)
		tg.store.GC("c", 2)
		n0, p0 := srv.packBytes.Load(), srv.uploadPOST.Load()
		b.StartTimer()
		stats := tg.sync(src)
		b.StopTimer()
		if stats.Reused != benchFiles-1 {
			b.Fatalf("reused %d files, want %d", stats.Reused, benchFiles-1)
		}
		written += stats.BytesWritten
		netBytes += srv.packBytes.Load() - n0
		posts += srv.uploadPOST.Load() - p0
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(float64(written)/n, "bytes-written/op")
	b.ReportMetric(100*float64(written)/n/benchTreeSize, "%-of-tree-written")
	b.ReportMetric(float64(netBytes)/n, "net-bytes/op")
	b.ReportMetric(float64(posts)/n, "upload-pack-POSTs/op")
}

// BenchmarkUnchangedPoll measures a poll that finds nothing new: one
// ls-remote of the 50 MB repository.
func BenchmarkUnchangedPoll(b *testing.B) {
	base := benchRepoBase(b)
	srv := startHTTP(b, base)
	tg := &benchTarget{b: b, root: b.TempDir()}
	tg.store, _ = ferrysync.OpenStore(tg.root, fetch.Limits{})
	u, _ := fetch.Parse(srv.url("big.git"))
	src, err := git.New(u, git.Options{}, fetch.Env{StateDir: ferrysync.StateDir(tg.root, "c")})
	if err != nil {
		b.Fatal(err)
	}
	tg.sync(src)
	posts := srv.uploadPOST.Load()
	for b.Loop() {
		tg.sync(src)
	}
	if srv.uploadPOST.Load() != posts {
		b.Fatal("an unchanged poll downloaded")
	}
}

type benchTarget struct {
	b     *testing.B
	root  string
	store *ferrysync.Store
}

func (tg *benchTarget) sync(src fetch.Source) ferrysync.Stats {
	prev, _ := tg.store.Current("c")
	st := tg.store.Begin("c", prev)
	defer st.Discard()
	rev, err := src.Fetch(context.Background(), prev, st)
	if err != nil {
		tg.b.Fatal(err)
	}
	if rev != prev {
		if err := st.Publish(rev); err != nil {
			tg.b.Fatal(err)
		}
	}
	return st.Stats()
}

// commitOneFile changes one file of the repository in a new commit on main.
func commitOneFile(b *testing.B, env []string, dir string, i int) {
	content := fmt.Sprintf("changed %d\n", i)
	stream := fmt.Sprintf("commit refs/heads/main\ncommitter bench <bench@ferry.invalid> %d +0000\ndata 6\nchange\nfrom refs/heads/main^0\nM 100644 inline %s\ndata %d\n%s\n",
		1700000001+i, benchName(i%benchFiles), len(content), content)
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stream)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("git fast-import: %v: %s", err, out)
	}
}
