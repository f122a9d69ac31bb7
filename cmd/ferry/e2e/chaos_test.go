package e2e

import (
	"encoding/json"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testkit"
)

// chaosKills is how many times each source's ferry is killed.
const chaosKills = 24

// TestSIGKILLAnywhereLeavesACompleteRevisionAndARestartConverges runs the
// real binary on each source kind while the origin changes every few
// milliseconds, and SIGKILLs it at random moments: while it polls,
// downloads, stages, renames, swaps the link or collects old revisions.
// After every kill ROOT/NAME must resolve to one whole generation with its
// manifest; the next start must remove what the killed one left before it
// serves its endpoints; and once the origin stops changing, a restart must
// publish the newest generation and leave nothing behind.
func TestSIGKILLAnywhereLeavesACompleteRevisionAndARestartConverges(t *testing.T) {
	t.Parallel()
	for _, k := range originKinds {
		t.Run(k.kind, func(t *testing.T) {
			t.Parallel()
			chaos(t, k.new(t))
		})
	}
}

func chaos(t *testing.T, o origin) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	root := t.TempDir()
	link := filepath.Join(root, "cfg")
	gen := 1
	o.set(t, gen, nil)
	args := append(o.source("cfg"), "--period", "20ms", "--keep", "2", "--timeout", "20s")

	// change sets the next generation every 5-30ms for d.
	change := func(d time.Duration) {
		end := time.Now().Add(d)
		for {
			step := time.Duration(5+rng.IntN(25)) * time.Millisecond
			if time.Until(end) < step {
				time.Sleep(time.Until(end))
				return
			}
			time.Sleep(step)
			gen++
			o.set(t, gen, nil)
		}
	}

	var (
		left     []string // what the last kill left
		moments  = map[string]int{}
		seenGens = map[int]bool{}
	)
	for i := range chaosKills {
		p := startFerry(t, procOptions{root: root, args: args})
		checkCleaned(t, i, left)
		if i == 0 {
			// Strike only once something is published, however slow the
			// machine: every later kill then has a revision to check.
			testkit.Eventually(t, 30*time.Second, "the first publish", func() bool {
				_, err := os.Readlink(link)
				return err == nil
			})
		}
		change(time.Duration(rng.IntN(250)) * time.Millisecond)
		p.kill()

		left = volumeLeftovers(t, root)
		moments[killMoment(root, leftovers(root))]++
		g, err := checkGeneration(link)
		if err != nil {
			t.Fatalf("kill %d (%s): %v\nferry's last lines:\n%s", i, killMoment(root, left), err, tail(p.stderr.String(), 10))
		}
		seenGens[g] = true
		checkManifest(t, root, link)
	}

	// The origin settles; a restart publishes its newest content and then
	// has nothing in flight.
	gen++
	o.set(t, gen, nil)
	p := startFerry(t, procOptions{root: root, args: args})
	checkCleaned(t, chaosKills, left)
	deadline := time.Now().Add(30 * time.Second)
	for {
		g, err := checkGeneration(link)
		if err == nil && g == gen {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no convergence to gen %d within 30s: ROOT/cfg is gen %d (%v); /status %+v\nempty files in the source state: %v\nferry's last lines:\n%s",
				gen, g, err, p.status()["cfg"], emptyFiles(filepath.Join(root, ".ferry", "cfg", ".state")), tail(p.stderr.String(), 5))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Let a few idle polls pass, then stop cleanly.
	time.Sleep(100 * time.Millisecond)
	if code, took := p.term(); code != 0 || took > 2*time.Second {
		t.Fatalf("SIGTERM: exit %d after %s\n%s", code, took, tail(p.stderr.String(), 20))
	}
	if l := volumeLeftovers(t, root); len(l) > 0 {
		t.Fatalf("after converging and a clean stop: leftovers %v", l)
	}
	checkManifest(t, root, link)
	revs := revisionDirs(root, "cfg")
	if len(revs) > 2 {
		t.Fatalf("%d revisions kept with --keep 2: %v", len(revs), revs)
	}
	if strings.Contains(p.stderr.String(), `"level":"ERROR"`) {
		t.Errorf("errors logged by the last run:\n%s", p.stderr.String())
	}
	t.Logf("%d kills at %v; %d distinct generations seen after kills; converged to gen %d",
		chaosKills, moments, len(seenGens), gen)
	if moments["idle"] == chaosKills {
		t.Errorf("no kill landed mid-publish: the test did not exercise what it claims")
	}
}

// checkCleaned asserts that a restart removed what the killed process
// left. The store's leftovers (staging, temporary links and manifests) go
// when it opens, before the endpoints answer; a source's own (the HTTP
// download spool) at the start of its first fetch, which follows at once.
func checkCleaned(t *testing.T, kill int, left []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, l := range left {
		for {
			if _, err := os.Lstat(l); err != nil {
				break
			}
			if !strings.Contains(l, "/.state/") || time.Now().After(deadline) {
				t.Fatalf("after kill %d, the restart left %s in place", kill, l)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// emptyFiles lists the empty regular files under dir: a file truncated
// by a kill is the usual cause of a store that no longer opens.
func emptyFiles(dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil && fi.Size() == 0 {
				rel, _ := filepath.Rel(dir, p)
				out = append(out, rel)
			}
		}
		return nil
	})
	return out
}

// killMoment names what the killed process was doing, from what it left.
func killMoment(root string, left []string) string {
	for _, l := range left {
		switch {
		case strings.Contains(l, ".stage-"):
			return "staging"
		case strings.Contains(l, ".link-"):
			return "swap"
		case strings.Contains(l, ".tmp-"):
			return "manifest"
		case strings.Contains(l, "spool"), strings.HasSuffix(l, ".tmp"):
			return "download"
		}
	}
	if len(revisionDirs(root, "cfg")) > 2 {
		return "gc"
	}
	return "idle"
}

// revisionDirs lists the published revisions of a source.
func revisionDirs(root, name string) []string {
	entries, _ := os.ReadDir(filepath.Join(root, ".ferry", name))
	var out []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

// checkManifest asserts that the published revision has its manifest: it
// is written before the swap, and reuse depends on it.
func checkManifest(t *testing.T, root, link string) {
	t.Helper()
	target, err := os.Readlink(link)
	if err != nil {
		t.Fatal(err)
	}
	rev := filepath.Base(target)
	data, err := os.ReadFile(filepath.Join(root, ".ferry", "cfg", ".meta", rev))
	var m map[string]any
	if err == nil {
		err = json.Unmarshal(data, &m)
	}
	if err != nil || len(m) == 0 {
		t.Fatalf("published revision %s has no readable manifest: %v", rev, err)
	}
}
