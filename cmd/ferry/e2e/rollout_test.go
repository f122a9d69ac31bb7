package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testkit"
)

// publishedAt returns when ferry published each revision, from its log.
func (p *ferryProc) publishedAt() map[string]time.Time {
	out := map[string]time.Time{}
	for _, r := range p.logs() {
		if r.str("msg") != "published" {
			continue
		}
		if at, err := time.Parse(time.RFC3339Nano, r.str("time")); err == nil {
			out[r.str("revision")] = at
		}
	}
	return out
}

// A fleet of 20 'ferry run' on one origin, with a 10s rollout window: a
// change reaches the instances spread over the window, not all at once,
// and a bad change reverted 3s after its push never reaches the instances
// whose time had not come; POST /sync?adopt=now brings back at once those
// that had adopted it.
func TestFleetAdoptsAChangeOverTheWindowAndARevertStopsIt(t *testing.T) {
	const (
		fleet  = 20
		window = 10 * time.Second
	)
	o := newFileOrigin(t)
	o.set(t, 1, nil)
	procs := make([]*ferryProc, fleet)
	links := make([]string, fleet)
	for i := range procs {
		root := t.TempDir()
		links[i] = filepath.Join(root, "cfg")
		procs[i] = startFerry(t, procOptions{root: root, args: append(o.source("cfg"),
			"--period", "500ms", "--rollout-window", window.String(), "--instance-id", fmt.Sprintf("pod-%d", i))})
	}
	// The first publish does not wait for the window.
	for _, link := range links {
		waitForGen(t, 10*time.Second, link, 1)
	}
	rev1 := procs[0].status()["cfg"].Revision

	// A good change: spread over the window.
	pushed := time.Now()
	o.set(t, 2, nil)
	var sawPending bool
	testkit.Eventually(t, window+20*time.Second, "every instance on generation 2", func() bool {
		all := true
		for i, p := range procs {
			st := p.status()["cfg"]
			sawPending = sawPending || st.PendingRevision != "" && st.AdoptAt != nil && p.metric("ferry_pending_adoption_timestamp_seconds", "source", "cfg") > 0
			if g, err := checkGeneration(links[i]); err != nil || g != 2 {
				all = false
			}
		}
		return all
	})
	if !sawPending {
		t.Error("no instance showed pending_revision, adopt_at and ferry_pending_adoption_timestamp_seconds while it waited")
	}
	rev2 := procs[0].status()["cfg"].Revision
	var offsets []time.Duration
	for _, p := range procs {
		at, ok := p.publishedAt()[rev2]
		if !ok {
			t.Fatalf("no 'published' line for %s:\n%s", rev2, tail(p.stderr.String(), 10))
		}
		offsets = append(offsets, at.Sub(pushed))
	}
	slices.Sort(offsets)
	t.Logf("adoption after the push: %v", offsets)
	firstSecond := 0
	for _, d := range offsets {
		if d < time.Second {
			firstSecond++
		}
	}
	// 20 draws from [0, 10s): the spread is about 9s and two instances or
	// so fall in the first second; polls and load only delay adoptions.
	if spread := offsets[fleet-1] - offsets[0]; spread < 4*time.Second || firstSecond > fleet/2 {
		t.Errorf("adoptions spread over %v, %d in the first second: want them over the window", spread, firstSecond)
	}

	// A bad change, reverted 3s later (the same tree as generation 2: the
	// same revision).
	o.set(t, 3, nil)
	time.Sleep(3 * time.Second)
	o.set(t, 2, nil)
	// Once no instance holds the bad revision pending, none can publish it.
	var bad string
	testkit.Eventually(t, 20*time.Second, "the revert seen by every instance", func() bool {
		for _, p := range procs {
			st := p.status()["cfg"]
			if st.Revision != rev2 && st.Revision != rev1 {
				bad = st.Revision
			}
			if st.PendingRevision != "" && st.PendingRevision != rev2 {
				return false
			}
		}
		return true
	})
	var adopted, spared []int
	for i, p := range procs {
		published := p.publishedAt()
		delete(published, rev1)
		delete(published, rev2)
		if len(published) > 0 {
			adopted = append(adopted, i)
			for r := range published {
				bad = r
			}
		} else {
			spared = append(spared, i)
		}
	}
	t.Logf("bad revision %s published by %v, never by %v", bad, adopted, spared)
	if len(spared) == 0 {
		t.Fatal("every instance published the bad revision: the revert did not stop the rollout")
	}
	dropped := 0
	for _, i := range spared {
		for _, r := range procs[i].logs() {
			if r.str("msg") == "the origin moved on before adoption; the pending revision is dropped" {
				dropped++
				break
			}
		}
	}
	if dropped == 0 {
		t.Error("no spared instance logged that it dropped the pending revision")
	}

	// Those that took the bad revision wait their window for the revert,
	// unless told to adopt now.
	var wg sync.WaitGroup
	for _, i := range adopted {
		wg.Go(func() {
			if code := httpPost("http://" + procs[i].addr + "/sync?adopt=now"); code != http.StatusAccepted {
				t.Errorf("POST /sync?adopt=now = %d", code)
			}
		})
	}
	wg.Wait()
	for _, link := range links {
		waitForGen(t, 10*time.Second, link, 2)
	}
}
