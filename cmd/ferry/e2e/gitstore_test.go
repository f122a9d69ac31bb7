package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testkit"
)

// TestGitStoreWithATruncatedRefRecovers is the deterministic form of what
// the chaos test finds about one run in ten: the state a kill leaves
// mid-ref-write must not wedge the git source.
func TestGitStoreWithATruncatedRefRecovers(t *testing.T) {
	t.Parallel()
	o := newGitOrigin(t)
	o.set(t, 1, nil)
	root := t.TempDir()
	link := filepath.Join(root, "cfg")
	args := append(o.source("cfg"), "--period", "100ms")
	p := startFerry(t, procOptions{root: root, args: args})
	testkit.Eventually(t, 20*time.Second, "gen 1", func() bool { g, err := checkGeneration(link); return err == nil && g == 1 })
	p.kill()

	refs, _ := filepath.Glob(filepath.Join(root, ".ferry", "cfg", ".state", "*", "refs", "ferry", "fetched"))
	if len(refs) != 1 {
		t.Fatalf("the git store has no refs/ferry/fetched to truncate: %v", refs)
	}
	if err := os.Truncate(refs[0], 0); err != nil {
		t.Fatal(err)
	}
	o.set(t, 2, nil)
	p = startFerry(t, procOptions{root: root, args: args})
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
