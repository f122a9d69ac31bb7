package e2e

// What a kill or a full volume leaves behind: always a whole revision,
// and a restart, or space coming back, converges.

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
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
	// OCI beside the kinds every hardening test runs: a registry in
	// process, each generation pushed under one tag.
	kinds := append(originKinds[:len(originKinds):len(originKinds)], struct {
		kind string
		new  func(t testing.TB) origin
	}{"oci", func(t testing.TB) origin { return newOCIOrigin(t) }})
	for _, k := range kinds {
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
		keepChanging(rng, d, func() {
			gen++
			o.set(t, gen, nil)
		})
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

		left = leftovers(root)
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
	if l := leftovers(root); len(l) > 0 {
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

// keepChanging calls next every 5-30ms, at random, for d.
func keepChanging(rng *rand.Rand, d time.Duration, next func()) {
	end := time.Now().Add(d)
	for {
		step := time.Duration(5+rng.IntN(25)) * time.Millisecond
		if time.Until(end) < step {
			time.Sleep(time.Until(end))
			return
		}
		time.Sleep(step)
		next()
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

// TestGitStoreWithATruncatedRefRecovers is the deterministic form of what
// the chaos test finds about one run in ten: the state a kill leaves
// mid-ref-write must not wedge the git source.
func TestGitStoreWithATruncatedRefRecovers(t *testing.T) {
	t.Parallel()
	o := newGitOrigin(t)
	p, link := startAtGen1(t, o, "--period", "100ms")
	p.kill()

	refs, _ := filepath.Glob(filepath.Join(p.root, ".ferry", "cfg", ".state", "*", "refs", "ferry", "fetched"))
	if len(refs) != 1 {
		t.Fatalf("the git store has no refs/ferry/fetched to truncate: %v", refs)
	}
	if err := os.Truncate(refs[0], 0); err != nil {
		t.Fatal(err)
	}
	o.set(t, 2, nil)
	p = startFerry(t, procOptions{root: p.root, args: append(o.source("cfg"), "--period", "100ms")})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if g, err := checkGeneration(link); err == nil && g == 2 {
			return
		}
		if st := p.status()["cfg"]; time.Now().After(deadline) {
			t.Fatalf("no recovery from a truncated ref within 15s: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFullVolumeFailsTheSyncCleanlyAndSpaceBackRecovers fills the volume
// two ways: RLIMIT_FSIZE (a per-process stand-in that needs no privilege:
// writes past it fail with EFBIG) and, where the test may mount, a tmpfs
// too small for the next revision (ENOSPC). A revision that does not fit
// fails mid-write (in staging, the HTTP download spool, or git's object
// store). ferry must report it in one line naming the cause, remove the
// staging, keep serving the last good revision, survive (SIGXFSZ must not
// kill it), and publish again once the source shrinks, or once space is
// back (a restart without the limit, or a file removed from the volume).
func TestFullVolumeFailsTheSyncCleanlyAndSpaceBackRecovers(t *testing.T) {
	t.Parallel()
	big := make([]byte, 1<<20) // incompressible, so an archive of it is big too
	rand.NewChaCha8([32]byte{1}).Read(big)
	for _, how := range []string{"rlimit", "tmpfs"} {
		for _, k := range originKinds {
			t.Run(how+"/"+k.kind, func(t *testing.T) {
				t.Parallel()
				fullVolume(t, how, k.new, big)
			})
		}
	}
}

func fullVolume(t *testing.T, how string, newOrigin func(testing.TB) origin, big []byte) {
	const limit = 256 << 10
	root := t.TempDir()
	var fsize int64
	var filler string
	switch how {
	case "rlimit":
		fsize = limit
	case "tmpfs":
		// Room for a few small revisions and git's store (about 800 KiB
		// free), not for big; removing the filler gives 2 MiB back.
		mountTmpfs(t, root, "3m")
		filler = filepath.Join(root, "filler")
		if err := os.WriteFile(filler, make([]byte, 2<<20+200<<10), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o := newOrigin(t)
	link := filepath.Join(root, "cfg")
	// A long period: the test drives every attempt with POST /sync, so
	// that nothing runs between a failure and the checks.
	args := append(o.source("cfg"), "--period", "1h", "--timeout", "30s", "--keep", "2")
	o.set(t, 1, nil)
	p := startFerry(t, procOptions{root: root, args: args, fsize: fsize})
	waitForGen(t, 20*time.Second, link, 1)

	// The source grows past what the volume takes.
	o.set(t, 2, map[string]string{"big.bin": string(big)})
	// The cause must be named, at the latest by the third attempt: a
	// source may first meet a consequence (git: go-git can lose the write
	// error of a pack; the broken store is then removed and fetched again).
	st := syncUntilFailure(t, p, 1)
	for !namesDiskCause(st.LastError) && st.ConsecutiveFailures < 3 {
		t.Logf("failure %d does not name the cause yet: %q", st.ConsecutiveFailures, st.LastError)
		st = syncUntilFailure(t, p, st.ConsecutiveFailures+1)
	}
	if !namesDiskCause(st.LastError) {
		t.Fatalf("after %d failures the last error does not name the cause: %q", st.ConsecutiveFailures, st.LastError)
	}
	if strings.Contains(st.LastError, "\n") {
		t.Fatalf("last error spans lines: %q", st.LastError)
	}
	// An attempt triggered already (a POST /sync that waited for the
	// failing one, or the backoff's retry) may be under way as the failure
	// shows: its staging is its own and goes when it ends. What a failed
	// sync left would stay.
	var l []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if l = leftovers(root); len(l) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("staging left after the failed sync, for 10s: %v", l)
		}
	}
	if g, err := checkGeneration(link); err != nil || g != 1 {
		t.Fatalf("after the failure ROOT/cfg is gen %d, %v; want gen 1", g, err)
	}
	if p.exited() {
		t.Fatalf("ferry died on the full volume: %v\n%s", p.err, tail(p.stderr.String(), 10))
	}
	if !logged(p, "sync failed", "file too large") && !logged(p, "sync failed", "no space") {
		t.Errorf("no 'sync failed' log record naming the cause:\n%s", tail(p.stderr.String(), 10))
	}

	// The source shrinks: the next sync succeeds on the same volume.
	o.set(t, 3, nil)
	if _, isGit := o.(*gitOrigin); isGit && how == "tmpfs" {
		// go-git leaks the descriptor of a loose object whose write failed
		// (ObjectWriter.Close returns before closing the file when the zlib
		// flush fails), and that pins the space even after ferry removes
		// the file and the store: only a restart, which a sidecar gets from
		// its liveness probe or --max-failures, gives it back.
		if code, _ := p.term(); code != 0 {
			t.Fatalf("exit %d on SIGTERM", code)
		}
		p = startFerry(t, procOptions{root: root, args: args})
	}
	httpPost("http://" + p.addr + "/sync")
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if g, err := checkGeneration(link); err == nil && g == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no gen 3 on the same volume within 20s: /status %+v\nferry's last lines:\n%s", p.status()["cfg"], tail(p.stderr.String(), 8))
		}
	}

	// The big revision again, then space comes back.
	o.set(t, 4, map[string]string{"big.bin": string(big)})
	syncUntilFailure(t, p, 1)
	if how == "rlimit" {
		// A restart without the limit.
		if code, _ := p.term(); code != 0 {
			t.Fatalf("exit %d on SIGTERM", code)
		}
		p = startFerry(t, procOptions{root: root, args: args})
	} else {
		// Someone frees space; the next sync needs no restart.
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		httpPost("http://" + p.addr + "/sync")
	}
	testkit.Eventually(t, 20*time.Second, "gen 4 once space is back", func() bool {
		if g, err := checkGeneration(link); err == nil && g == 4 {
			return true
		}
		if how == "tmpfs" {
			httpPost("http://" + p.addr + "/sync") // the backoff may be long
		}
		time.Sleep(200 * time.Millisecond)
		return false
	})
	data, err := os.ReadFile(filepath.Join(link, "big.bin"))
	if err != nil || !bytes.Equal(data, big) {
		t.Fatalf("big.bin published wrong: %d bytes, %v", len(data), err)
	}
	if code, _ := p.term(); code != 0 {
		t.Fatalf("exit %d on SIGTERM", code)
	}
	if l := leftovers(root); len(l) > 0 {
		t.Fatalf("leftovers: %v", l)
	}
	t.Logf("%s: %q", how, st.LastError)
}

// mountTmpfs mounts a tmpfs of size on dir for the test, or skips the
// test where mounting is not allowed (not root, no CAP_SYS_ADMIN).
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
}

func namesDiskCause(msg string) bool {
	msg = strings.ToLower(msg)
	return strings.Contains(msg, "file too large") || strings.Contains(msg, "no space")
}

// syncUntilFailure triggers syncs until /status shows more than n-1
// consecutive failures, and returns that status. A failure is recorded
// after its staging was removed, so the caller may check the volume at
// once: nothing else runs before the next trigger.
func syncUntilFailure(t *testing.T, p *ferryProc, n int) sourceStatus {
	t.Helper()
	var st sourceStatus
	testkit.Eventually(t, 30*time.Second, "a failed sync", func() bool {
		st = p.status()["cfg"]
		if st.ConsecutiveFailures >= n {
			return true
		}
		if code := httpPost("http://" + p.addr + "/sync"); code != http.StatusAccepted {
			t.Fatalf("POST /sync: %d", code)
		}
		time.Sleep(100 * time.Millisecond)
		st = p.status()["cfg"]
		return st.ConsecutiveFailures >= n
	})
	return st
}

// logged reports whether a log record with message msg has an error
// holding part.
func logged(p *ferryProc, msg, part string) bool {
	for _, r := range p.logs() {
		if r.str("msg") == msg && strings.Contains(strings.ToLower(r.str("error")), part) {
			return true
		}
	}
	return false
}
