//go:build soak

package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/demoapp"
	"github.com/ferrysync/ferry/internal/localproc"
	"github.com/ferrysync/ferry/internal/testkit"
)

// soakDurationEnv sets how long TestSoak runs (default 3m): make soak.
const soakDurationEnv = "FERRY_SOAK_DURATION"

// processFigures is what the soak samples of the ferry process.
type processFigures struct {
	rss        int64
	fds        int
	goroutines float64
}

func sampleProcess(t *testing.T, p *ferryProc) processFigures {
	t.Helper()
	pid := p.cmd.Process.Pid
	rss, err := vmRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return processFigures{rss: rss, fds: len(fds), goroutines: p.metric("go_goroutines")}
}

func (f processFigures) String() string {
	return fmt.Sprintf("RSS %.1f MiB, %d fds, %.0f goroutines", float64(f.rss)/(1<<20), f.fds, f.goroutines)
}

// TestSoak runs 'ferry run' with three sources (a local directory, HTTP
// serving a tar.gz, S3 on gofakes3) at a 1s period, against origins that
// change every 2 to 5 seconds, while one demo app per source reads its
// tree every 10ms and checks every read (a torn or partial tree is a read
// error). It bounds itself (FERRY_SOAK_DURATION, default 3m) and reports
// syncs, publishes, reads and torn reads, and ferry's RSS, file
// descriptors and goroutines at the start and the end.
func TestSoak(t *testing.T) {
	duration := 3 * time.Minute
	if v := os.Getenv(soakDurationEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s=%q: %v", soakDurationEnv, v, err)
		}
		duration = d
	}
	origins := map[string]origin{"file": newFileOrigin(t), "web": newTarOrigin(t), "bucket": newS3Origin(t)}
	gens := map[string]int{}
	var args []string
	for name, o := range origins {
		gens[name] = 1
		o.set(t, 1, nil)
		args = append(args, o.source(name)...)
	}
	appAddrs := map[string]string{}
	for name := range origins {
		appAddrs[name] = testkit.FreeAddr(t)
		args = append(args, "--notify-url", "http://"+appAddrs[name]+"/-/reload")
	}
	root := t.TempDir()
	p := startFerry(t, procOptions{root: root, args: append(args, "--period", "1s")})
	testkit.Eventually(t, 30*time.Second, "/readyz", func() bool { return testkit.HTTPStatus("http://"+p.addr+"/readyz") == 200 })

	// Only now does the kubelet start the apps.
	for name, addr := range appAddrs {
		startApp(t, addr, filepath.Join(root, name), 10*time.Millisecond)
	}
	time.Sleep(2 * time.Second) // let start-up allocations settle
	start := sampleProcess(t, p)
	t.Logf("start: %s", start)

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	next := map[string]time.Time{}
	for name := range origins {
		next[name] = time.Now().Add(time.Duration(2000+rng.IntN(3000)) * time.Millisecond)
	}
	begin := time.Now()
	lastReport := begin
	changes := 0
	// The first changes open the notify connections (one keep-alive per
	// app: two goroutines and a descriptor each): what must stay flat is
	// measured from once every origin has changed and been notified.
	var warm processFigures
	for time.Since(begin) < duration {
		if warm.rss == 0 && time.Since(begin) > 15*time.Second {
			warm = sampleProcess(t, p)
			t.Logf("warm: %s", warm)
		}
		for name, o := range origins {
			if time.Now().After(next[name]) {
				gens[name]++
				o.set(t, gens[name], nil)
				changes++
				next[name] = time.Now().Add(time.Duration(2000+rng.IntN(3000)) * time.Millisecond)
			}
		}
		if p.exited() {
			t.Fatalf("ferry exited: %v\n%s", p.err, tail(p.stderr.String(), 20))
		}
		if time.Since(lastReport) >= 30*time.Second {
			lastReport = time.Now()
			t.Logf("%s: %s", time.Since(begin).Round(time.Second), sampleProcess(t, p))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The origins settle: every link reaches its origin's newest content.
	for name := range origins {
		testkit.Eventually(t, 30*time.Second, name+" to converge", func() bool {
			g, err := checkGeneration(filepath.Join(root, name))
			return err == nil && g == gens[name]
		})
	}
	time.Sleep(3 * time.Second) // the last notifications, and idle polls
	end := sampleProcess(t, p)

	var syncs, publishes, failures float64
	for name := range origins {
		for _, r := range []string{"published", "unchanged", "error"} {
			v := max(p.metric("ferry_syncs_total", "source", name, "result", r), 0)
			syncs += v
			switch r {
			case "published":
				publishes += v
			case "error":
				failures += v
			}
		}
	}
	var reads, torn, reloads int
	var firstErr string
	for name, addr := range appAddrs {
		st, err := demoapp.Get(addr)
		if err != nil {
			t.Fatalf("app %s: %v", name, err)
		}
		reads += st.Reads
		torn += st.ReadErrs
		reloads += st.Reloads
		if firstErr == "" {
			firstErr = st.FirstErr
		}
	}
	if code, took := p.term(); code != 0 || took > 2*time.Second {
		t.Errorf("SIGTERM: exit %d after %s", code, took)
	}
	report := fmt.Sprintf("soak %s, 3 sources at --period 1s, %d origin changes:\n"+
		"  syncs %.0f (published %.0f, failed %.0f), app reloads %d\n"+
		"  reads %d, torn or failed reads %d\n"+
		"  start: %s (after the first publish)\n  warm:  %s (15s in)\n  end:   %s",
		duration, changes, syncs, publishes, failures, reloads, reads, torn, start, warm, end)
	t.Log(report)
	fmt.Println(report)

	if torn != 0 {
		t.Errorf("%d torn or failed reads; first: %s", torn, firstErr)
	}
	if failures != 0 {
		t.Errorf("%.0f failed syncs against healthy origins:\n%s", failures, grepLines(p.stderr.String(), "sync failed", 5))
	}
	if growth := end.rss - start.rss; growth > 8<<20 {
		t.Errorf("RSS grew by %.1f MiB", float64(growth)/(1<<20))
	}
	if end.fds > warm.fds+2 {
		t.Errorf("file descriptors: %d once warm, %d at the end", warm.fds, end.fds)
	}
	if end.goroutines > warm.goroutines+2 {
		t.Errorf("goroutines: %.0f once warm, %.0f at the end", warm.goroutines, end.goroutines)
	}
	if publishes < float64(changes)/2 {
		t.Errorf("only %.0f publishes for %d changes", publishes, changes)
	}
}

// grepLines returns up to n lines of s holding part.
func grepLines(s, part string, n int) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, part) && len(out) < n {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// vmRSS reads the resident set size of pid, in bytes.
func vmRSS(pid int) (int64, error) {
	m, err := localproc.Status(pid, "VmRSS")
	return m["VmRSS"], err
}
