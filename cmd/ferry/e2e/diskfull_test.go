package e2e

import (
	"bytes"
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
	testkit.Eventually(t, 20*time.Second, "gen 1", func() bool { g, err := checkGeneration(link); return err == nil && g == 1 })

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
	if l := volumeLeftovers(t, root); len(l) > 0 {
		t.Fatalf("staging left after the failed sync: %v", l)
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
	if l := volumeLeftovers(t, root); len(l) > 0 {
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
