package sync

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/testkit"
	"github.com/ferrysync/ferry/signal"
)

// origin is an in-memory origin for loop tests: the loop's behaviour, not a
// protocol, is under test here (each backend has its own real-server tests).
type origin struct {
	mu      gosync.Mutex
	rev     string
	files   map[string]string
	err     error
	fetches atomic.Int64
	block   chan struct{} // when set, Fetch waits on it, ignoring ctx
	delay   time.Duration
}

func (o *origin) set(rev string, files map[string]string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.rev, o.files, o.err = rev, files, nil
}

func (o *origin) fail(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.err = err
}

func (o *origin) Fetch(ctx context.Context, prev string, w fetch.Writer) (string, error) {
	o.fetches.Add(1)
	o.mu.Lock()
	rev, files, err, block, delay := o.rev, o.files, o.err, o.block, o.delay
	o.mu.Unlock()
	if block != nil {
		<-block
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	if err != nil {
		return "", err
	}
	if rev == prev {
		return prev, nil
	}
	for p, c := range files {
		if err := w.WriteFile(p, 0o644, c, opener(c)); err != nil {
			return "", err
		}
	}
	return rev, nil
}

// recorder collects notifications, each change and each call, and first
// publishes apart.
type recorder struct {
	mu      gosync.Mutex
	changes []signal.Change
	calls   [][]signal.Change
	firsts  []signal.Change
}

func (r *recorder) NotifyFirst(cs ...signal.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.firsts = append(r.firsts, cs...)
}

func (r *recorder) Notify(cs ...signal.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, cs...)
	r.calls = append(r.calls, cs)
}

func (r *recorder) got() []signal.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]signal.Change(nil), r.changes...)
}

type harness struct {
	syncer *Syncer
	store  *Store
	reg    *prometheus.Registry
}

func startSyncer(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{reg: prometheus.NewRegistry()}
	if cfg.Store == nil {
		cfg.Store = newStore(t, fetch.Limits{})
	}
	h.store = cfg.Store
	cfg.Registerer = h.reg
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.syncer = s
	testkit.Background(t, s.Run)
	return h
}

func TestRunNotifiesOnlyWhenARevisionIsReplaced(t *testing.T) {
	o := &origin{}
	o.set("r1", map[string]string{"f": "1"})
	rec := &recorder{}
	h := startSyncer(t, Config{
		Sources: []Source{{Name: "c", Backend: o}}, Period: 10 * time.Millisecond, Notifiers: []Notifier{rec},
	})
	testkit.Eventually(t, 10*time.Second, "first publish", func() bool { ok, _ := h.syncer.Ready(); return ok })
	// Several unchanged polls: no publish, no notify.
	n := o.fetches.Load()
	testkit.Eventually(t, 10*time.Second, "unchanged polls", func() bool { return o.fetches.Load() >= n+3 })
	if got := rec.got(); len(got) != 0 {
		t.Fatalf("notified %v on the first publish or unchanged polls", got)
	}
	o.set("r2", map[string]string{"f": "2"})
	testkit.Eventually(t, 10*time.Second, "notify of r2", func() bool { return len(rec.got()) == 1 })
	want := signal.Change{Source: "c", Revision: "r2", Previous: "r1", Path: h.store.LinkPath("c")}
	n = o.fetches.Load()
	testkit.Eventually(t, 10*time.Second, "more polls", func() bool { return o.fetches.Load() >= n+3 })
	if got := rec.got(); len(got) != 1 || got[0] != want {
		t.Fatalf("notifications = %+v, want exactly %+v", got, want)
	}
	rec.mu.Lock()
	firsts := rec.firsts
	rec.mu.Unlock()
	if first := (signal.Change{Source: "c", Revision: "r1", Path: h.store.LinkPath("c")}); len(firsts) != 1 || firsts[0] != first {
		t.Fatalf("first publishes told = %+v, want exactly %+v", firsts, first)
	}
	if v := testutil.ToFloat64(h.syncer.metrics.syncs.WithLabelValues("c", "published")); v != 2 {
		t.Fatalf("ferry_syncs_total{result=published} = %v, want 2", v)
	}
	if v := testutil.ToFloat64(h.syncer.metrics.revisions.WithLabelValues("c", "r2")); v != 1 {
		t.Fatalf("ferry_revision_info{revision=r2} = %v, want 1", v)
	}
	if n := testutil.CollectAndCount(h.syncer.metrics.revisions); n != 1 {
		t.Fatalf("ferry_revision_info has %d series, want only the current revision", n)
	}
}

func TestRunKeepsLastGoodRevisionThroughFailures(t *testing.T) {
	o := &origin{}
	o.set("r1", map[string]string{"f": "good"})
	h := startSyncer(t, Config{Sources: []Source{{Name: "c", Backend: o}}, Period: 10 * time.Millisecond})
	testkit.Eventually(t, 10*time.Second, "first publish", func() bool { ok, _ := h.syncer.Ready(); return ok })
	o.fail(errors.New("origin down"))
	testkit.Eventually(t, 10*time.Second, "failures", func() bool { return h.syncer.Status()[0].ConsecutiveFailures >= 2 })

	st := h.syncer.Status()[0]
	if st.Revision != "r1" || !strings.Contains(st.LastError, "origin down") {
		t.Fatalf("status = %+v", st)
	}
	if ok, reason := h.syncer.Ready(); !ok {
		t.Fatalf("not ready during an outage (%s): an outage must not pull pods out of Service", reason)
	}
	if got := readTree(t, h.store.LinkPath("c")); got["f"] != "good" {
		t.Fatalf("published tree = %v", got)
	}
	o.set("r2", map[string]string{"f": "new"})
	testkit.Eventually(t, 10*time.Second, "recovery", func() bool { return h.syncer.Status()[0].Revision == "r2" })
	if st := h.syncer.Status()[0]; st.ConsecutiveFailures != 0 || st.LastError != "" {
		t.Fatalf("status after recovery = %+v", st)
	}
}

func TestRunBacksOffBetweenFailures(t *testing.T) {
	o := &origin{}
	o.fail(errors.New("down"))
	// With a period of 400ms the backoff starts at min(1s, period) and is
	// capped at the period, each wait jittered by +-50%: at most 10 fetches
	// in 2s. A retry storm would show as hundreds.
	startSyncer(t, Config{Sources: []Source{{Name: "c", Backend: o}}, Period: 400 * time.Millisecond})
	time.Sleep(2 * time.Second)
	if n := o.fetches.Load(); n < 2 || n > 11 {
		t.Fatalf("%d fetches in 2s with a 400ms period: want a few, not a retry storm", n)
	}
}

func TestReadyWaitsForEverySource(t *testing.T) {
	a, b := &origin{}, &origin{}
	a.set("r1", map[string]string{"f": "1"})
	b.fail(errors.New("not yet"))
	h := startSyncer(t, Config{Sources: []Source{{Name: "a", Backend: a}, {Name: "b", Backend: b}}, Period: 10 * time.Millisecond})
	testkit.Eventually(t, 10*time.Second, "a published", func() bool { return h.syncer.Status()[0].Revision == "r1" })
	ok, reason := h.syncer.Ready()
	if ok || !strings.Contains(reason, "b: no revision yet") {
		t.Fatalf("Ready = %v, %q; want not ready naming b", ok, reason)
	}
	b.set("r1", map[string]string{"g": "1"})
	testkit.Eventually(t, 10*time.Second, "ready", func() bool { ok, _ := h.syncer.Ready(); return ok })
}

func TestReadyFailsPastStalenessBudget(t *testing.T) {
	o := &origin{}
	o.set("r1", map[string]string{"f": "1"})
	h := startSyncer(t, Config{Sources: []Source{{Name: "c", Backend: o}}, Period: 10 * time.Millisecond, MaxStaleness: 150 * time.Millisecond})
	testkit.Eventually(t, 10*time.Second, "ready", func() bool { ok, _ := h.syncer.Ready(); return ok })
	o.fail(errors.New("down"))
	testkit.Eventually(t, 10*time.Second, "stale", func() bool { ok, _ := h.syncer.Ready(); return !ok })
	if _, reason := h.syncer.Ready(); !strings.Contains(reason, "no successful sync") {
		t.Fatalf("reason = %q", reason)
	}
}

// TestStatusTurnsStaleWithoutSuccess: a source that has not synced for
// the staleness budget, or without one for as long as /healthz allows
// between attempts, is marked stale in its status, and fresh again once
// it syncs.
func TestStatusTurnsStaleWithoutSuccess(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"budget", Config{Period: 10 * time.Millisecond, MaxStaleness: 150 * time.Millisecond}},
		// 3 periods plus the timeout: 130ms.
		{"no budget", Config{Period: 10 * time.Millisecond, Timeout: 100 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &origin{}
			o.set("r1", map[string]string{"f": "1"})
			tc.cfg.Sources = []Source{{Name: "c", Backend: o}}
			h := startSyncer(t, tc.cfg)
			testkit.Eventually(t, 10*time.Second, "ready", func() bool { ok, _ := h.syncer.Ready(); return ok })
			if h.syncer.Status()[0].Stale {
				t.Fatal("stale right after a publish")
			}
			o.fail(errors.New("down"))
			testkit.Eventually(t, 10*time.Second, "stale", func() bool { return h.syncer.Status()[0].Stale })
			o.set("r1", map[string]string{"f": "1"})
			testkit.Eventually(t, 10*time.Second, "fresh again", func() bool { return !h.syncer.Status()[0].Stale })
		})
	}
}

func TestHealthyTurnsFalseWhenAFetchWedges(t *testing.T) {
	o := &origin{}
	o.set("r1", map[string]string{"f": "1"})
	block := make(chan struct{})
	defer close(block)
	// Wedged means no new attempt for 3 periods plus the timeout: 650ms.
	h := startSyncer(t, Config{Sources: []Source{{Name: "c", Backend: o}}, Period: 50 * time.Millisecond, Timeout: 500 * time.Millisecond})
	testkit.Eventually(t, 10*time.Second, "ready", func() bool { ok, _ := h.syncer.Ready(); return ok })
	if ok, reason := h.syncer.Healthy(); !ok {
		t.Fatalf("unhealthy while polling: %s", reason)
	}
	// A fetch that ignores its context and never returns.
	o.mu.Lock()
	o.block = block
	o.mu.Unlock()
	testkit.Eventually(t, 10*time.Second, "unhealthy", func() bool { ok, _ := h.syncer.Healthy(); return !ok })
	if _, reason := h.syncer.Healthy(); !strings.Contains(reason, "c: no sync attempt for") {
		t.Fatalf("reason = %q", reason)
	}
}

func TestTriggersDuringASyncCoalesceIntoOne(t *testing.T) {
	o := &origin{delay: 200 * time.Millisecond}
	o.set("r1", map[string]string{"f": "1"})
	h := startSyncer(t, Config{Sources: []Source{{Name: "c", Backend: o}}, Period: time.Hour})
	testkit.Eventually(t, 10*time.Second, "first fetch under way", func() bool { return o.fetches.Load() == 1 })
	for range 100 {
		if err := h.syncer.Trigger(""); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 10*time.Second, "second fetch", func() bool { return o.fetches.Load() == 2 })
	time.Sleep(600 * time.Millisecond)
	if n := o.fetches.Load(); n != 2 {
		t.Fatalf("100 triggers during one sync caused %d more syncs, want 1", n-1)
	}
	if err := h.syncer.Trigger("nope"); err == nil {
		t.Fatal("Trigger of an unknown source succeeded")
	}
}

func TestRunEndsAfterMaxFailures(t *testing.T) {
	o := &origin{}
	o.fail(errors.New("boom"))
	s, err := New(Config{Store: newStore(t, fetch.Limits{}), Sources: []Source{{Name: "c", Backend: o}}, Period: 5 * time.Millisecond, MaxFailures: 3})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run(context.Background())
	if !errors.Is(err, ErrTooManyFailures) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Run = %v, want ErrTooManyFailures with the cause", err)
	}
	if n := o.fetches.Load(); n != 3 {
		t.Fatalf("%d fetches, want 3", n)
	}
}

func TestRunStopsPromptlyOnCancelAndRemovesStaging(t *testing.T) {
	o := &origin{delay: time.Hour}
	o.set("r1", map[string]string{"f": "1"})
	store := newStore(t, fetch.Limits{})
	s, _ := New(Config{Store: store, Sources: []Source{{Name: "c", Backend: o}}})
	stop := testkit.Background(t, s.Run)
	testkit.Eventually(t, 10*time.Second, "fetch under way", func() bool { return o.fetches.Load() == 1 })
	if took := stop(); took > 2*time.Second {
		t.Fatalf("Run took %s to stop after cancel", took)
	}
	if m, _ := filepath.Glob(filepath.Join(store.Root(), ".ferry/c/.stage-*")); len(m) > 0 {
		t.Fatalf("staging left after cancel: %v", m)
	}
}

func TestOnceRetriesTransientFailures(t *testing.T) {
	o := &origin{}
	o.fail(errors.New("warming up"))
	go func() {
		time.Sleep(300 * time.Millisecond)
		o.set("r1", map[string]string{"f": "1"})
	}()
	s, _ := New(Config{Store: newStore(t, fetch.Limits{}), Sources: []Source{{Name: "c", Backend: o}}, Period: 100 * time.Millisecond, OnceTimeout: 10 * time.Second})
	if err := s.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if o.fetches.Load() < 2 {
		t.Fatal("Once succeeded without retrying")
	}
}

func TestOnceGivesUpAfterTimeoutAndAtOnceOnPermanent(t *testing.T) {
	cases := []struct {
		name    string
		err     error
		maxTime time.Duration
		want    string
	}{
		{"transient", errors.New("connection refused"), 3 * time.Second, "(bound 500ms): connection refused"},
		{"permanent", fetch.Permanent(errors.New("checksum mismatch")), 200 * time.Millisecond, "checksum mismatch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := &origin{}
			o.fail(tc.err)
			s, _ := New(Config{Store: newStore(t, fetch.Limits{}), Sources: []Source{{Name: "c", Backend: o}}, Period: 50 * time.Millisecond, OnceTimeout: 500 * time.Millisecond})
			start := time.Now()
			err := s.Once(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Once = %v, want %q", err, tc.want)
			}
			if took := time.Since(start); took > tc.maxTime {
				t.Fatalf("Once took %s", took)
			}
			if tc.name == "permanent" && o.fetches.Load() != 1 {
				t.Fatalf("a permanent error was retried (%d fetches)", o.fetches.Load())
			}
			// What it says it tried is what it tried.
			if n := o.fetches.Load(); tc.name == "transient" && !strings.Contains(err.Error(), fmt.Sprintf("gave up after %d attempts in ", n)) {
				t.Fatalf("Once = %v, want it to count %d attempts", err, n)
			}
		})
	}
}

func TestOnceTimeoutBoundsAHangingAttempt(t *testing.T) {
	o := &origin{delay: time.Hour} // honours its context, never answers
	o.set("r1", map[string]string{"f": "1"})
	s, _ := New(Config{Store: newStore(t, fetch.Limits{}), Sources: []Source{{Name: "c", Backend: o}},
		Timeout: time.Hour, OnceTimeout: 300 * time.Millisecond})
	start := time.Now()
	err := s.Once(context.Background())
	if err == nil || !strings.Contains(err.Error(), "gave up after 1 attempt in ") || !strings.Contains(err.Error(), "(bound 300ms)") {
		t.Fatalf("Once = %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Once took %s with --once-timeout 300ms", took)
	}
}

func TestNewReadsWhatIsAlreadyPublished(t *testing.T) {
	store := newStore(t, fetch.Limits{})
	publishFiles(t, store, "c", "r1", map[string]string{"f": "1"})
	o := &origin{}
	o.fail(errors.New("down"))
	s, err := New(Config{Store: store, Sources: []Source{{Name: "c", Backend: o}}})
	if err != nil {
		t.Fatal(err)
	}
	if ok, reason := s.Ready(); !ok {
		t.Fatalf("a restarted sidecar with a published revision is not ready: %s", reason)
	}
}

func TestNewRejectsBadSources(t *testing.T) {
	store := newStore(t, fetch.Limits{})
	o := &origin{}
	for _, srcs := range [][]Source{
		{{Name: "../x", Backend: o}},
		{{Name: ".ferry", Backend: o}},
		{{Name: "a", Backend: o}, {Name: "a", Backend: o}},
		nil,
	} {
		if _, err := New(Config{Store: store, Sources: srcs}); err == nil {
			t.Errorf("New(%v) succeeded", srcs)
		}
	}
}

func TestJitterStaysWithinTenPercent(t *testing.T) {
	lo, hi := time.Hour, time.Duration(0)
	for range 1000 {
		d := jittered(time.Second)
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < 900*time.Millisecond || hi > 1100*time.Millisecond || hi-lo < 150*time.Millisecond {
		t.Fatalf("jitter range [%s, %s], want spread within +-10%%", lo, hi)
	}
}

// TestTwoSyncersShareOneRegistry: registering a second Syncer's metrics on
// the same registry must not panic; both count into the same series.
func TestTwoSyncersShareOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, root := range []string{t.TempDir(), t.TempDir()} {
		s, err := OpenStore(root, fetch.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		o := &origin{}
		o.set("r1", map[string]string{"f": "x"})
		sy, err := New(Config{Store: s, Sources: []Source{{Name: "c", Backend: o}}, Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		if err := sy.Once(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(mustCounter(t, reg, "ferry_syncs_total")); got != 2 {
		t.Fatalf("ferry_syncs_total = %v, want 2 from two syncers", got)
	}
}

func mustCounter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: "sum"})
			for _, m := range mf.GetMetric() {
				c.Add(m.GetCounter().GetValue())
			}
			return c
		}
	}
	t.Fatalf("no %s", name)
	return nil
}

// TestHistogramBoundsPrintCleanly: le="2.5", never le="3.6450000000000005".
func TestHistogramBoundsPrintCleanly(t *testing.T) {
	reg := prometheus.NewRegistry()
	o := &origin{}
	o.set("r1", map[string]string{"f": "x"})
	sy, err := New(Config{Store: newStore(t, fetch.Limits{}), Sources: []Source{{Name: "c", Backend: o}}, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := sy.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	histograms := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetHistogram() == nil {
				continue
			}
			histograms++
			for _, b := range m.GetHistogram().GetBucket() {
				if s := strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64); len(s) > 5 {
					t.Errorf("%s: bucket le=%q", mf.GetName(), s)
				}
			}
		}
	}
	if histograms == 0 {
		t.Fatal("no histogram gathered: the test proves nothing")
	}
}

// releaseCount is what startCounting counts: the image releases, and
// those made while a sync was under way.
type releaseCount struct{ all, underWay atomic.Int64 }

// startCounting is startSyncer with the image releases counted instead of
// made.
func startCounting(t *testing.T, cfg Config) (*harness, *releaseCount) {
	t.Helper()
	h := &harness{reg: prometheus.NewRegistry(), store: newStore(t, fetch.Limits{})}
	cfg.Store, cfg.Registerer, cfg.ReleaseMemory = h.store, h.reg, true
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var n releaseCount
	s.release = func() error {
		if s.syncing.Load() > 0 {
			n.underWay.Add(1)
		}
		n.all.Add(1)
		return nil
	}
	h.syncer = s
	testkit.Background(t, s.Run)
	return h, &n
}

// A poll that publishes nothing still gives the image back: at any period,
// the code a poll ran does not stay mapped until the next.
func TestEveryPollReleasesTheImage(t *testing.T) {
	o := &origin{}
	o.set("r1", map[string]string{"f": "1"})
	h, releases := startCounting(t, Config{Sources: []Source{{Name: "c", Backend: o}}, Period: 10 * time.Millisecond})
	testkit.Eventually(t, 10*time.Second, "first publish", func() bool { ok, _ := h.syncer.Ready(); return ok })
	n, r := o.fetches.Load(), releases.all.Load()
	testkit.Eventually(t, 10*time.Second, "unchanged polls", func() bool { return o.fetches.Load() >= n+3 })
	testkit.Eventually(t, 10*time.Second, "a release after each", func() bool { return releases.all.Load() >= r+3 })
}

// Sources that sync at the same time release the image once, when the last
// one ends: not once each, and never under another's sync.
func TestTheLastSyncUnderWayReleasesTheImage(t *testing.T) {
	quick, slow := &origin{block: make(chan struct{})}, &origin{block: make(chan struct{})}
	quick.set("q1", map[string]string{"f": "1"})
	slow.set("s1", map[string]string{"f": "1"})
	h, releases := startCounting(t, Config{Sources: []Source{{Name: "quick", Backend: quick}, {Name: "slow", Backend: slow}}, Period: time.Hour})
	testkit.Eventually(t, 10*time.Second, "both fetching", func() bool { return quick.fetches.Load() == 1 && slow.fetches.Load() == 1 })
	close(quick.block)
	testkit.Eventually(t, 10*time.Second, "quick's sync over, slow's under way", func() bool {
		return h.syncer.Status()[0].Revision == "q1" && h.syncer.syncing.Load() == 1
	})
	close(slow.block)
	testkit.Eventually(t, 10*time.Second, "slow published, the image released", func() bool {
		return h.syncer.Status()[1].Revision == "s1" && releases.all.Load() >= 2
	})
	if n := releases.underWay.Load(); n != 0 {
		t.Errorf("%d releases while another source's sync was under way", n)
	}
	if n := releases.all.Load(); n != 2 {
		t.Errorf("%d releases, want 2: before the first sync, and when the last sync under way ended", n)
	}
}

// A source idle after a publish keeps no manifest in memory (ReleaseMemory),
// and its next publish still reuses every unchanged file, by the manifest
// on disk.
func TestIdleSourceKeepsNoManifestYetReusesUnchangedFiles(t *testing.T) {
	o := &origin{}
	o.set("r1", map[string]string{"same": "unchanged content", "f": "1"})
	h := startSyncer(t, Config{Sources: []Source{{Name: "c", Backend: o}}, Period: 10 * time.Millisecond, ReleaseMemory: true})
	kept := func() bool {
		h.store.mu.Lock()
		defer h.store.mu.Unlock()
		_, ok := h.store.manifests["c"]
		return ok
	}
	testkit.Eventually(t, 10*time.Second, "first publish, its manifest dropped", func() bool { ok, _ := h.syncer.Ready(); return ok && !kept() })
	fetched := testutil.ToFloat64(h.syncer.metrics.fetched.WithLabelValues("c"))
	o.set("r2", map[string]string{"same": "unchanged content", "f": "22"})
	testkit.Eventually(t, 10*time.Second, "r2 published, its manifest dropped", func() bool { return h.syncer.Status()[0].Revision == "r2" && !kept() })
	if got := testutil.ToFloat64(h.syncer.metrics.fetched.WithLabelValues("c")) - fetched; got != 2 {
		t.Fatalf("r2 fetched %v bytes, want 2: only the changed file, the other reused", got)
	}
	if got := readTree(t, h.store.LinkPath("c")); got["same"] != "unchanged content" || got["f"] != "22" {
		t.Fatalf("published tree = %v", got)
	}
}
