package git_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
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

// A child process is a first sync whose own cost (time, peak RSS) a test
// or a benchmark reads: the test binary, run with childEnv set.
const (
	// childEnv makes the test binary a one-shot fetcher (see TestMain).
	childEnv = "FERRY_GIT_BENCH_CHILD"
	// cpuProfileEnv names a file for the child's CPU profile.
	cpuProfileEnv = "FERRY_GIT_BENCH_CPUPROFILE"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(benchChild(spec))
	}
	code := m.Run()
	if bench.base != "" {
		os.RemoveAll(bench.base)
	}
	for _, base := range manyRefs.bases {
		os.RemoveAll(base)
	}
	if plain.done != nil {
		<-plain.done
		os.RemoveAll(plain.dir)
	}
	os.Exit(code)
}

// childSpec is what the parent asks a child fetcher to do.
type childSpec struct {
	URL  string
	Root string
	// NoWrite reads every blob but writes no file: go-git's share of the
	// cost (download, pack index, inflating), without the filesystem's.
	NoWrite bool
	// Prev is the revision Root publishes: the child polls it.
	Prev    string
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
		st := store.Begin("c", c.Prev)
		defer st.Discard()
		var rev string
		rev, err = src.Fetch(context.Background(), c.Prev, st)
		fetched := time.Now()
		if err == nil && rev != c.Prev {
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
	d, rss, _, out := runTree(b, cmd)
	return d, rss, out
}

// runTree is run that also samples the resident memory of cmd's process
// and all its descendants together, and returns the largest sum, in MiB:
// what a process that runs others costs (go-git's file:// transport ran
// git-upload-pack and git pack-objects). Sampled every few milliseconds,
// it may miss a short peak.
func runTree(b testing.TB, cmd *exec.Cmd) (time.Duration, float64, float64, []byte) {
	b.Helper()
	var out, errOut strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &errOut
	start := time.Now()
	err := cmd.Start()
	var tree int64
	if err == nil {
		done := make(chan struct{})
		sampled := make(chan int64)
		go func() {
			var peak int64
			for {
				peak = max(peak, treeRSS(cmd.Process.Pid))
				select {
				case <-done:
					sampled <- peak
					return
				case <-time.After(2 * time.Millisecond):
				}
			}
		}()
		err = cmd.Wait()
		close(done)
		tree = <-sampled
	}
	d := time.Since(start)
	if err != nil {
		b.Fatalf("%s: %v\n%s%s", cmd, err, out.String(), errOut.String())
	}
	if errOut.Len() > 0 {
		b.Log(strings.TrimSpace(errOut.String()))
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return d, float64(ru.Maxrss) / 1024, float64(tree) / (1 << 20), []byte(out.String())
}

// treeRSS is the resident memory of process pid and its descendants, in
// bytes; 0 once it has exited.
func treeRSS(pid int) int64 {
	var sum int64
	for pids := []string{strconv.Itoa(pid)}; len(pids) > 0; pids = pids[1:] {
		p := pids[0]
		if statm, err := os.ReadFile("/proc/" + p + "/statm"); err == nil {
			if f := strings.Fields(string(statm)); len(f) > 1 {
				pages, _ := strconv.ParseInt(f[1], 10, 64)
				sum += pages * int64(os.Getpagesize())
			}
		}
		tasks, _ := os.ReadDir("/proc/" + p + "/task")
		for _, t := range tasks {
			children, _ := os.ReadFile("/proc/" + p + "/task/" + t.Name() + "/children")
			pids = append(pids, strings.Fields(string(children))...)
		}
	}
	return sum
}

// runChild runs one first sync in a child process, the test binary bin
// (see benchChild), and returns its wall time, its own peak RSS in MiB and
// its report.
func runChild(tb testing.TB, bin string, spec childSpec, env ...string) (time.Duration, float64, childResult) {
	d, rss, _, res := runChildTree(tb, bin, spec, env...)
	return d, rss, res
}

// runChildTree is runChild that also returns the peak RSS of the child's
// process tree, sampled (see runTree).
func runChildTree(tb testing.TB, bin string, spec childSpec, env ...string) (time.Duration, float64, float64, childResult) {
	tb.Helper()
	js, _ := json.Marshal(spec)
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childEnv+"="+string(js)), env...)
	d, _, tree, out := runTree(tb, cmd)
	var res childResult
	if err := json.Unmarshal(out, &res); err != nil {
		tb.Fatalf("child said %q: %v", out, err)
	}
	return d, float64(res.PeakRSS) / (1 << 20), tree, res
}

var plain struct {
	once gosync.Once
	done chan struct{} // closed when the build is over
	dir  string
	bin  string
	err  error
}

// buildRSSBinary starts building, once and in the background, the program
// rssBinary returns under the race detector: a test calls it first, so the
// build overlaps with making its repository.
func buildRSSBinary() {
	if !raceDetector {
		return
	}
	plain.once.Do(func() {
		plain.done = make(chan struct{})
		plain.dir, plain.err = os.MkdirTemp("", "ferry-git-norace-")
		go func() {
			defer close(plain.done)
			if plain.err != nil {
				return
			}
			bin := filepath.Join(plain.dir, "git.test")
			if out, err := exec.Command("go", "test", "-c", "-o", bin, ".").CombinedOutput(); err != nil {
				plain.err = fmt.Errorf("go test -c: %v: %s", err, out)
				return
			}
			plain.bin = bin
		}()
	})
}

// rssBinary is the program whose peak RSS a test reads: this test binary,
// or, when it runs under the race detector (whose shadow memory is several
// times the heap and no part of what ships), these tests built without it.
func rssBinary(t testing.TB) string {
	t.Helper()
	if !raceDetector {
		return os.Args[0]
	}
	buildRSSBinary()
	<-plain.done
	if plain.err != nil {
		t.Fatal(plain.err)
	}
	return plain.bin
}
