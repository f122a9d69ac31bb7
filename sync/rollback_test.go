package sync

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/testkit"
	"github.com/ferrysync/ferry/signal"
)

// app is a real reload endpoint that answers each change by its revision,
// and records what it was told.
type app struct {
	url    string
	answer func(c signal.Change) int

	mu  gosync.Mutex
	got []signal.Change
}

func newApp(t *testing.T, answer func(signal.Change) int) *app {
	t.Helper()
	a := &app{answer: answer}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var c signal.Change
		_ = json.NewDecoder(r.Body).Decode(&c)
		a.mu.Lock()
		a.got = append(a.got, c)
		a.mu.Unlock()
		w.WriteHeader(a.answer(c))
	}))
	t.Cleanup(srv.Close)
	a.url = srv.URL + "/-/reload"
	return a
}

func (a *app) told() []signal.Change {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]signal.Change(nil), a.got...)
}

// refusing answers 400 to the revisions given, 200 to others.
func refusing(revs ...string) func(signal.Change) int {
	return func(c signal.Change) int {
		for _, r := range revs {
			if c.Revision == r {
				return http.StatusBadRequest
			}
		}
		return http.StatusOK
	}
}

// startWithApp runs a Syncer on o with RollbackOnReject, telling a through
// real HTTP notifiers whose refusals go back to the Syncer.
func startWithApp(t *testing.T, o *origin, a *app, logs *testkit.LogBuffer) *harness {
	t.Helper()
	return startWithAppIn(t, PublishSymlink, o, a, logs)
}

// startWithAppIn is startWithApp with the source published in mode.
func startWithAppIn(t *testing.T, mode PublishMode, o *origin, a *app, logs *testkit.LogBuffer) *harness {
	t.Helper()
	var h *harness
	n, err := signal.New(signal.Options{
		URLs: []string{a.url}, Method: "POST", Timeout: 5 * time.Second,
		InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond,
		Refused: func(r signal.Refusal) { h.syncer.Refused(r) }, RejectAfter: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	h = startSyncer(t, Config{
		Sources:   []Source{{Name: "c", Backend: o, PublishMode: mode}},
		Period:    10 * time.Millisecond,
		Keep:      2,
		Rollout:   Rollout{RollbackOnReject: true},
		Notifiers: []Notifier{n},
		Logger:    logs.Logger(),
	})
	testkit.Background(t, n.Run)
	return h
}

func TestAppRefusalRollsBackToThePreviousRevision(t *testing.T) {
	o := &origin{}
	o.set("r1", map[string]string{"app.yaml": "a: 1\n"})
	a := newApp(t, refusing("r2"))
	var logs testkit.LogBuffer
	h := startWithApp(t, o, a, &logs)
	testkit.Eventually(t, 10*time.Second, "r1 published", func() bool { return h.status(t).Revision == "r1" })

	o.set("r2", map[string]string{"app.yaml": "a: 2\n"})
	testkit.Eventually(t, 10*time.Second, "r2 refused", func() bool { return h.status(t).RejectedRevision == "r2" })
	st := h.status(t)
	if st.Revision != "r1" || !strings.HasPrefix(st.RejectedReason, "app: "+a.url+": notify: reply 400") {
		t.Errorf("/status after the refusal: %+v", st)
	}
	if rev, _ := h.store.Current("c"); rev != "r1" {
		t.Errorf("ROOT/c -> %q, want r1 back", rev)
	}
	if b, _ := os.ReadFile(filepath.Join(h.store.LinkPath("c"), "app.yaml")); string(b) != "a: 1\n" {
		t.Errorf("ROOT/c/app.yaml = %q after the rollback", b)
	}
	testkit.Eventually(t, 10*time.Second, "the app told of r1 put back", func() bool {
		got := a.told()
		return len(got) == 2 && got[1].Revision == "r1" && got[1].RollbackOf == "r2" && got[1].Previous == "r2"
	})
	for metric, want := range map[string]float64{
		"rejected":  testutil.ToFloat64(h.syncer.metrics.rejected.WithLabelValues("c", ReasonApp)),
		"rollbacks": testutil.ToFloat64(h.syncer.metrics.rollbacks.WithLabelValues("c")),
		"r1 info":   testutil.ToFloat64(h.syncer.metrics.revisions.WithLabelValues("c", "r1")),
	} {
		if want != 1 {
			t.Errorf("%s = %v, want 1", metric, want)
		}
	}
	if n := strings.Count(logs.String(), `level=ERROR msg="revision rejected by the app, rolled back"`); n != 1 {
		t.Errorf("%d ERROR lines for the rollback, want 1:\n%s", n, logs.String())
	}

	// The origin still holds r2: it is not downloaded, published or told
	// again.
	bytes := testutil.ToFloat64(h.syncer.metrics.fetched.WithLabelValues("c"))
	n := o.fetches.Load()
	testkit.Eventually(t, 10*time.Second, "more polls", func() bool { return o.fetches.Load() >= n+5 })
	if b := testutil.ToFloat64(h.syncer.metrics.fetched.WithLabelValues("c")); b != bytes || len(a.told()) != 2 {
		t.Errorf("after more polls: %v bytes fetched (was %v), app told %+v", b, bytes, a.told())
	}
	if st := h.status(t); st.Revision != "r1" || st.RejectedRevision != "r2" || st.LastError != "" {
		t.Errorf("/status while r2 is held back: %+v", st)
	}

	// The origin moves on: r3 is published over r1, and could be rolled
	// back to r1 again.
	o.set("r3", map[string]string{"app.yaml": "a: 3\n"})
	testkit.Eventually(t, 10*time.Second, "r3 published", func() bool { return h.status(t).Revision == "r3" })
	if st := h.status(t); st.RejectedRevision != "" {
		t.Errorf("/status after r3: %+v", st)
	}
	h.syncer.mustPrevious(t, "r1")
}

func (s *Syncer) mustPrevious(t *testing.T, want string) {
	t.Helper()
	src := s.sources[0]
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.previous != want {
		t.Errorf("previous revision %q, want %q", src.previous, want)
	}
}

// Prometheus answers 500 to a reload it cannot do: after RejectAfter that
// is a refusal too.
func TestAppStillFailingAfterRejectAfterIsRolledBack(t *testing.T) {
	o := &origin{}
	o.set("r1", map[string]string{"f": "1"})
	a := newApp(t, func(c signal.Change) int {
		if c.Revision == "r2" {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	var logs testkit.LogBuffer
	h := startWithApp(t, o, a, &logs)
	testkit.Eventually(t, 10*time.Second, "r1 published", func() bool { return h.status(t).Revision == "r1" })
	o.set("r2", map[string]string{"f": "2"})
	testkit.Eventually(t, 10*time.Second, "r2 published", func() bool { return h.status(t).Revision == "r2" })
	testkit.Eventually(t, 10*time.Second, "r2 rolled back", func() bool {
		st := h.status(t)
		return st.Revision == "r1" && st.RejectedRevision == "r2"
	})
	if st := h.status(t); !strings.Contains(st.RejectedReason, "500") {
		t.Errorf("rejected_reason %q does not name the 500", st.RejectedReason)
	}
}

// An app that refuses the revision put back too is not chased further
// back: the rollback happens once.
func TestRefusedRollbackIsNotRolledBackAgain(t *testing.T) {
	o := &origin{}
	o.set("r1", map[string]string{"f": "1"})
	var refuseAll atomic.Bool
	a := newApp(t, func(c signal.Change) int {
		if refuseAll.Load() {
			return http.StatusConflict
		}
		return http.StatusOK
	})
	var logs testkit.LogBuffer
	h := startWithApp(t, o, a, &logs)
	testkit.Eventually(t, 10*time.Second, "r1 published", func() bool { return h.status(t).Revision == "r1" })
	o.set("r0", map[string]string{"f": "0"})
	testkit.Eventually(t, 10*time.Second, "r0 told", func() bool { return len(a.told()) == 1 })
	refuseAll.Store(true)
	o.set("r2", map[string]string{"f": "2"})
	testkit.Eventually(t, 10*time.Second, "r2 rolled back", func() bool { return h.status(t).RejectedRevision == "r2" })
	testkit.Eventually(t, 10*time.Second, "the rollback refused", func() bool {
		return strings.Contains(logs.String(), "the app refused the revision put back too")
	})
	n := o.fetches.Load()
	testkit.Eventually(t, 10*time.Second, "more polls", func() bool { return o.fetches.Load() >= n+5 })
	if st := h.status(t); st.Revision != "r0" || st.RejectedRevision != "r2" {
		t.Errorf("/status: %+v, want r0 published and r2 rejected", st)
	}
	if v := testutil.ToFloat64(h.syncer.metrics.rollbacks.WithLabelValues("c")); v != 1 {
		t.Errorf("%v rollbacks, want 1", v)
	}
}

// The revision put back is checked first, like any tree ferry reuses: a
// damaged one is not linked, and the refused revision stays.
func TestRollbackRefusesADamagedPreviousRevision(t *testing.T) {
	o := &origin{}
	o.set("r1", map[string]string{"f": "1", "g": "1"})
	a := newApp(t, refusing("r2"))
	var logs testkit.LogBuffer
	h := startWithApp(t, o, a, &logs)
	testkit.Eventually(t, 10*time.Second, "r1 published", func() bool { return h.status(t).Revision == "r1" })
	if err := os.Remove(filepath.Join(h.store.revDir("c", "r1"), "g")); err != nil {
		t.Fatal(err)
	}
	o.set("r2", map[string]string{"f": "2", "g": "2"})
	testkit.Eventually(t, 10*time.Second, "r2 refused", func() bool { return h.status(t).RejectedRevision == "r2" })
	if st := h.status(t); st.Revision != "r2" {
		t.Errorf("/status: %+v, want r2 still published", st)
	}
	if rev, _ := h.store.Current("c"); rev != "r2" {
		t.Errorf("ROOT/c -> %q, want r2: r1 is damaged", rev)
	}
	if !strings.Contains(logs.String(), "rolling back failed, it stays") || !strings.Contains(logs.String(), "tree damaged") {
		t.Errorf("the log does not say why it did not roll back:\n%s", logs.String())
	}
}

func TestRollbackNeedsTwoRevisionsKept(t *testing.T) {
	_, err := New(Config{Store: newStore(t, fetch.Limits{}), Sources: []Source{{Name: "c", Backend: &origin{}}},
		Keep: 1, Rollout: Rollout{RollbackOnReject: true}})
	if err == nil || !strings.Contains(err.Error(), "Keep of at least 2") {
		t.Errorf("New with Keep 1 = %v", err)
	}
}

// TestExchangeRollbackPutsThePreviousRevisionBack: --rollback-on-reject
// with --publish-mode exchange. restore() deep-checks the previous
// revision with Store.Verify, which in exchange mode reads the mirror of
// the refused revision: the check always fails and the refused revision
// stays published.
func TestExchangeRollbackPutsThePreviousRevisionBack(t *testing.T) {
	o := &origin{}
	o.set("r1", map[string]string{"app.yaml": "a: 1\n"})
	a := newApp(t, refusing("r2"))
	var logs testkit.LogBuffer
	h := startWithAppIn(t, PublishExchange, o, a, &logs)
	testkit.Eventually(t, 10*time.Second, "r1 published", func() bool { return h.status(t).Revision == "r1" })
	o.set("r2", map[string]string{"app.yaml": "a: 2\n"})
	testkit.Eventually(t, 10*time.Second, "r2 refused", func() bool { return h.status(t).RejectedRevision == "r2" })
	if b, _ := os.ReadFile(filepath.Join(h.store.LinkPath("c"), "app.yaml")); string(b) != "a: 1\n" {
		t.Errorf("ROOT/c/app.yaml = %q after the app refused r2, want r1's %q", b, "a: 1\n")
	}
	if strings.Contains(logs.String(), "rolling back failed") {
		t.Errorf("rollback failed:\n%s", logs.String())
	}
}
