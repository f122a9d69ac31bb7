package sync

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testkit"
	"github.com/ferrysync/ferry/signal"
)

// threeOrigins returns origins a, b and c at revision rN, each holding a
// file "n" that says N.
func threeOrigins(n int) map[string]*origin {
	out := map[string]*origin{}
	for _, name := range []string{"a", "b", "c"} {
		out[name] = &origin{}
	}
	setAll(out, n)
	return out
}

func setAll(origins map[string]*origin, n int) {
	for _, o := range origins {
		o.set(fmt.Sprintf("r%d", n), map[string]string{"n": fmt.Sprint(n)})
	}
}

// hold makes o's fetches wait until release is called.
func (o *origin) hold() (release func()) {
	block := make(chan struct{})
	o.mu.Lock()
	o.block = block
	o.mu.Unlock()
	return func() {
		o.mu.Lock()
		o.block = nil
		o.mu.Unlock()
		close(block)
	}
}

func sourcesOf(origins map[string]*origin) []Source {
	var out []Source
	for _, name := range []string{"a", "b", "c"} {
		out = append(out, Source{Name: name, Backend: origins[name]})
	}
	return out
}

func sourcesOfCall(call []signal.Change) string {
	var names []string
	for _, c := range call {
		names = append(names, c.Source+"@"+c.Revision)
	}
	slices.Sort(names)
	return strings.Join(names, " ")
}

// TestRoundTellsWhatChangedTogetherOnce: three sources changed together,
// one of them slower, are one notification naming all three.
func TestRoundTellsWhatChangedTogetherOnce(t *testing.T) {
	origins := threeOrigins(1)
	origins["b"].delay = 150 * time.Millisecond
	rec := &recorder{}
	h := startSyncer(t, Config{Sources: sourcesOf(origins), Period: time.Hour, Notifiers: []Notifier{rec}})
	testkit.Eventually(t, 10*time.Second, "first publish", func() bool { ok, _ := h.syncer.Ready(); return ok })
	setAll(origins, 2)
	if err := h.syncer.Trigger(""); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the changes told", func() bool { return len(rec.got()) == 3 })
	rec.mu.Lock()
	calls, firsts := rec.calls, rec.firsts
	rec.mu.Unlock()
	if len(calls) != 1 || sourcesOfCall(calls[0]) != "a@r2 b@r2 c@r2" {
		t.Fatalf("notifications: %v, want one naming a, b and c", calls)
	}
	if got := sourcesOfCall(firsts); got != "a@r1 b@r1 c@r1" {
		t.Fatalf("first publishes told: %s", got)
	}
}

// TestSettleBoundsTheWaitForASlowSource: a change does not wait longer than
// the settle bound for a source that is still syncing; that source's
// change is told on its own when it comes.
func TestSettleBoundsTheWaitForASlowSource(t *testing.T) {
	origins := threeOrigins(1)
	rec := &recorder{}
	h := startSyncer(t, Config{Sources: sourcesOf(origins), Period: time.Hour, Settle: 100 * time.Millisecond, Notifiers: []Notifier{rec}})
	testkit.Eventually(t, 10*time.Second, "first publish", func() bool { ok, _ := h.syncer.Ready(); return ok })
	release := origins["c"].hold()
	setAll(origins, 2)
	h.syncer.Trigger("")
	testkit.Eventually(t, 10*time.Second, "a and b told", func() bool { return len(rec.got()) == 2 })
	release()
	testkit.Eventually(t, 10*time.Second, "c told", func() bool { return len(rec.got()) == 3 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.calls) != 2 || sourcesOfCall(rec.calls[0]) != "a@r2 b@r2" || sourcesOfCall(rec.calls[1]) != "c@r2" {
		t.Fatalf("notifications: %v, want a and b, then c", rec.calls)
	}
}

// TestGenerationLinkNeverShowsAMix: a reader that resolves the generation
// link once per read and reads every source through it sees one round's
// revisions, never a mix, over 50 rounds of three sources changed
// together; each round is one notification.
func TestGenerationLinkNeverShowsAMix(t *testing.T) {
	origins := threeOrigins(0)
	rec := &recorder{}
	h := startSyncer(t, Config{Sources: sourcesOf(origins), Period: time.Hour, Keep: 2, GenerationLink: "all", Notifiers: []Notifier{rec}})
	testkit.Eventually(t, 10*time.Second, "first publish", func() bool { ok, _ := h.syncer.Ready(); return ok })
	link := h.store.LinkPath("all")
	testkit.Eventually(t, 10*time.Second, "the generation link", func() bool { _, err := os.Readlink(link); return err == nil })

	var reads, mixes atomic.Int64
	stop := make(chan struct{})
	done := make(chan error)
	go func() {
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			target, err := os.Readlink(link)
			if err != nil {
				done <- err
				return
			}
			gen := filepath.Join(h.store.Root(), target)
			var seen []string
			for _, src := range []string{"a", "b", "c"} {
				b, err := os.ReadFile(filepath.Join(gen, src, "n"))
				if err != nil {
					done <- fmt.Errorf("read %s through %s: %w", src, target, err)
					return
				}
				seen = append(seen, string(b))
			}
			if seen[0] != seen[1] || seen[1] != seen[2] {
				mixes.Add(1)
			}
			reads.Add(1)
		}
	}()
	const rounds = 50
	for n := 1; n <= rounds; n++ {
		setAll(origins, n)
		h.syncer.Trigger("")
		testkit.Eventually(t, 10*time.Second, "the round told", func() bool { return len(rec.got()) == 3*n })
		// Let the reader read this generation too.
		for at := reads.Load(); reads.Load() < at+200; {
			time.Sleep(time.Millisecond)
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	calls := len(rec.calls)
	rec.mu.Unlock()
	if calls != rounds {
		t.Errorf("%d notifications for %d rounds", calls, rounds)
	}
	if reads.Load() < 10_000 || mixes.Load() != 0 {
		t.Fatalf("%d mixes in %d reads", mixes.Load(), reads.Load())
	}
	t.Logf("%d reads, no mix", reads.Load())
	// Generations that point at revisions GC removed are gone.
	entries, _ := os.ReadDir(filepath.Join(h.store.Root(), ".ferry/.generations"))
	if len(entries) > 3 {
		t.Errorf("%d generations kept with keep 2", len(entries))
	}
}
