package sync

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/testkit"
)

func TestAdoptDelayIsDeterministicAndSpreadOverTheWindow(t *testing.T) {
	const window = 10 * time.Second
	var buckets [10]int
	for i := range 2000 {
		id := fmt.Sprintf("pod-%d", i)
		d := adoptDelay(window, id, "cfg", "abc123")
		if d < 0 || d >= window {
			t.Fatalf("delay %v outside [0, %v)", d, window)
		}
		if again := adoptDelay(window, id, "cfg", "abc123"); again != d {
			t.Fatalf("delay of %s: %v then %v", id, d, again)
		}
		buckets[d*10/window]++
	}
	for i, n := range buckets {
		if n < 140 || n > 260 { // 200 expected
			t.Errorf("second %d of the window holds %d of 2000 instances: %v", i, n, buckets)
		}
	}
	// The same pod is early for one change and late for another.
	early, late := false, false
	for i := range 50 {
		d := adoptDelay(window, "pod-1", "cfg", fmt.Sprint("rev", i))
		early, late = early || d < window/4, late || d > 3*window/4
	}
	if !early || !late {
		t.Error("pod-1 is always early or always late")
	}
}

// instanceWithDelay finds an instance ID whose delay for rev of source c
// lies within [lo, hi).
func instanceWithDelay(t *testing.T, window time.Duration, rev string, lo, hi time.Duration) string {
	t.Helper()
	for i := range 10000 {
		id := fmt.Sprint("pod-", i)
		if d := adoptDelay(window, id, "c", rev); d >= lo && d < hi {
			return id
		}
	}
	t.Fatal("no instance ID found")
	return ""
}

func TestWindowHoldsANewRevisionUntilItsTime(t *testing.T) {
	const window = 4 * time.Second
	id := instanceWithDelay(t, window, "r2", 1500*time.Millisecond, 2500*time.Millisecond)
	o := &origin{}
	o.set("r1", map[string]string{"f": "1"})
	rec := &recorder{}
	h := startSyncer(t, Config{
		Sources: []Source{{Name: "c", Backend: o}}, Period: 20 * time.Millisecond, Notifiers: []Notifier{rec},
		Rollout: Rollout{Window: window, InstanceID: id},
	})
	// The first publish does not wait.
	testkit.Eventually(t, time.Second, "r1 published at once", func() bool { return h.status(t).Revision == "r1" })

	seen := time.Now()
	o.set("r2", map[string]string{"f": "2"})
	testkit.Eventually(t, 5*time.Second, "r2 pending", func() bool { return h.status(t).PendingRevision == "r2" })
	st := h.status(t)
	want := seen.Add(adoptDelay(window, id, "c", "r2"))
	if st.Revision != "r1" || st.AdoptAt == nil || st.AdoptAt.Before(want) || st.AdoptAt.After(want.Add(time.Second)) {
		t.Fatalf("/status while r2 waits: %+v, want adopt_at near %v", st, want)
	}
	gauge := h.syncer.metrics.pending.WithLabelValues("c")
	if v := testutil.ToFloat64(gauge); v != float64(st.AdoptAt.UnixNano())/1e9 {
		t.Errorf("ferry_pending_adoption_timestamp_seconds = %v, want %v", v, st.AdoptAt.Unix())
	}
	// Polls go on, without downloading r2 again.
	bytes := testutil.ToFloat64(h.syncer.metrics.fetched.WithLabelValues("c"))
	n := o.fetches.Load()
	testkit.Eventually(t, 5*time.Second, "polls while r2 waits", func() bool { return o.fetches.Load() >= n+5 })
	if rev, _ := h.store.Current("c"); rev != "r1" || testutil.ToFloat64(h.syncer.metrics.fetched.WithLabelValues("c")) != bytes {
		t.Errorf("while r2 waits: ROOT/c -> %s, bytes fetched %v (was %v)", rev, testutil.ToFloat64(h.syncer.metrics.fetched.WithLabelValues("c")), bytes)
	}

	testkit.Eventually(t, 5*time.Second, "r2 adopted", func() bool { return h.status(t).Revision == "r2" })
	if early := time.Until(*st.AdoptAt); early > 0 {
		t.Errorf("r2 adopted %v before its time", early)
	}
	if st := h.status(t); st.PendingRevision != "" || st.AdoptAt != nil || testutil.ToFloat64(gauge) != 0 {
		t.Errorf("after adoption: %+v, gauge %v", st, testutil.ToFloat64(gauge))
	}
	testkit.Eventually(t, 5*time.Second, "the app told of r2", func() bool { return len(rec.got()) == 1 })
	if rev, _ := h.store.Current("c"); rev != "r2" {
		t.Errorf("ROOT/c -> %s, want r2", rev)
	}
}

// A revert within the window stops the rollout here: the pending revision
// is dropped, never published, and the app hears of nothing.
func TestRevertBeforeAdoptionDropsThePendingRevision(t *testing.T) {
	o := &origin{}
	o.set("r1", map[string]string{"f": "1"})
	rec := &recorder{}
	h := startSyncer(t, Config{
		Sources: []Source{{Name: "c", Backend: o}}, Period: 20 * time.Millisecond, Notifiers: []Notifier{rec},
		Rollout: Rollout{Window: time.Hour, InstanceID: "pod-0"},
	})
	testkit.Eventually(t, 5*time.Second, "r1 published", func() bool { return h.status(t).Revision == "r1" })
	o.set("bad", map[string]string{"f": "bad"})
	testkit.Eventually(t, 5*time.Second, "bad pending", func() bool { return h.status(t).PendingRevision == "bad" })
	o.set("r3", map[string]string{"f": "3"})
	testkit.Eventually(t, 5*time.Second, "r3 pending instead", func() bool { return h.status(t).PendingRevision == "r3" })
	o.set("r1", map[string]string{"f": "1"})
	testkit.Eventually(t, 5*time.Second, "nothing pending", func() bool { return h.status(t).PendingRevision == "" })
	n := o.fetches.Load()
	testkit.Eventually(t, 5*time.Second, "more polls", func() bool { return o.fetches.Load() >= n+3 })
	if st := h.status(t); st.Revision != "r1" || len(rec.got()) != 0 {
		t.Errorf("/status %+v, notified %v: want r1 and no notification", st, rec.got())
	}
	if v := testutil.ToFloat64(h.syncer.metrics.syncs.WithLabelValues("c", "published")); v != 1 {
		t.Errorf("%v publishes, want 1", v)
	}
}

func TestAdoptPublishesThePendingRevisionAtOnce(t *testing.T) {
	o := &origin{}
	o.set("r1", map[string]string{"f": "1"})
	h := startSyncer(t, Config{
		Sources: []Source{{Name: "c", Backend: o}}, Period: time.Hour,
		Rollout: Rollout{Window: time.Hour, InstanceID: "pod-0"},
	})
	testkit.Eventually(t, 5*time.Second, "r1 published", func() bool { return h.status(t).Revision == "r1" })
	o.set("r2", map[string]string{"f": "2"})
	h.syncer.Trigger("c")
	testkit.Eventually(t, 5*time.Second, "r2 pending", func() bool { return h.status(t).PendingRevision == "r2" })
	if err := h.syncer.Adopt("c"); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "r2 adopted", func() bool { return h.status(t).Revision == "r2" })
	if err := h.syncer.Adopt("nope"); err == nil {
		t.Error("Adopt of an unknown source succeeded")
	}
}

func TestOnceIgnoresTheWindow(t *testing.T) {
	store := newStore(t, fetch.Limits{})
	o := &origin{}
	o.set("r1", map[string]string{"f": "1"})
	publishFiles(t, store, "c", "r0", map[string]string{"f": "0"})
	s, err := New(Config{Store: store, Sources: []Source{{Name: "c", Backend: o}}, Rollout: Rollout{Window: time.Hour, InstanceID: "pod-0"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rev, _ := store.Current("c"); rev != "r1" {
		t.Errorf("ROOT/c -> %s after once, want r1", rev)
	}
}
