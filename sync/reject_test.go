package sync

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/testkit"
	"github.com/ferrysync/ferry/validate"
)

func syntaxChecker(t *testing.T) *validate.Checker {
	t.Helper()
	c, err := validate.New(validate.Options{Checks: validate.CheckSyntax})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const tabIndented = "a: 1\nb:\n\tc: 2\n"

func (h *harness) status(t *testing.T) SourceStatus {
	t.Helper()
	return h.syncer.Status()[0]
}

func TestRejectedRevisionIsNeverPublished(t *testing.T) {
	o := &origin{}
	o.set("r1", map[string]string{"app.yaml": "a: 1\n"})
	rec := &recorder{}
	var logs testkit.LogBuffer
	h := startSyncer(t, Config{
		Sources:   []Source{{Name: "c", Backend: o, Validator: syntaxChecker(t)}},
		Period:    10 * time.Millisecond,
		Notifiers: []Notifier{rec},
		Logger:    logs.Logger(),
	})
	testkit.Eventually(t, 10*time.Second, "r1 published", func() bool { return h.status(t).Revision == "r1" })

	o.set("r2", map[string]string{"app.yaml": tabIndented, "other.json": "{}"})
	testkit.Eventually(t, 10*time.Second, "r2 rejected", func() bool { return h.status(t).RejectedRevision == "r2" })
	st := h.status(t)
	if want := "syntax: app.yaml:3:1: found character"; !strings.HasPrefix(st.RejectedReason, want) || st.Rejected == nil {
		t.Errorf("/status rejected_reason %q (at %v), want it to start with %q", st.RejectedReason, st.Rejected, want)
	}
	rejected := h.syncer.metrics.rejected.WithLabelValues("c", "syntax")
	if v := testutil.ToFloat64(rejected); v != 1 {
		t.Errorf("ferry_rejected_total{reason=syntax} = %v, want 1", v)
	}
	// Later polls find r2 again: it is neither downloaded nor checked
	// again, and r1 stays.
	// The rejecting attempt counts its bytes after it records the
	// rejection: count from two polls on.
	n := o.fetches.Load()
	testkit.Eventually(t, 10*time.Second, "two more polls", func() bool { return o.fetches.Load() >= n+2 })
	bytes := testutil.ToFloat64(h.syncer.metrics.fetched.WithLabelValues("c"))
	n = o.fetches.Load()
	testkit.Eventually(t, 10*time.Second, "more polls", func() bool { return o.fetches.Load() >= n+5 })
	if rev, _ := h.store.Current("c"); rev != "r1" {
		t.Fatalf("ROOT/c -> %q while r2 is rejected, want r1", rev)
	}
	if v := testutil.ToFloat64(rejected); v != 1 {
		t.Errorf("ferry_rejected_total = %v after more polls, want still 1: the revision was checked again", v)
	}
	if b := testutil.ToFloat64(h.syncer.metrics.fetched.WithLabelValues("c")); b != bytes {
		t.Errorf("fetched bytes went from %v to %v: the rejected revision was downloaded again", bytes, b)
	}
	if st := h.status(t); st.RejectedRevision != "r2" || st.Revision != "r1" || st.LastError != "" {
		t.Errorf("/status while r2 is held back: %+v", st)
	}
	if got := rec.got(); len(got) != 0 {
		t.Errorf("the app was told %v of a rejected revision", got)
	}
	if n := strings.Count(logs.String(), "revision rejected"); n != 1 {
		t.Errorf("%d log lines say the revision was rejected, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "level=ERROR msg=\"revision rejected") || strings.Contains(logs.String(), "sync failed") {
		t.Errorf("want one ERROR line for the rejection and no 'sync failed':\n%s", logs.String())
	}

	// The origin moves on to a good revision: published, the rejection
	// forgotten, the app told.
	o.set("r3", map[string]string{"app.yaml": "a: 3\n"})
	testkit.Eventually(t, 10*time.Second, "r3 published", func() bool { return h.status(t).Revision == "r3" })
	if st := h.status(t); st.RejectedRevision != "" || st.RejectedReason != "" || st.Rejected != nil {
		t.Errorf("/status after r3 still shows a rejection: %+v", st)
	}
	testkit.Eventually(t, 10*time.Second, "notify of r3", func() bool { return len(rec.got()) == 1 })
	if got := rec.got(); got[0].Revision != "r3" {
		t.Errorf("notified %+v, want r3", got)
	}
}

func TestRevertToThePublishedRevisionForgetsTheRejection(t *testing.T) {
	o := &origin{}
	good := map[string]string{"app.json": `{"a": 1}`}
	o.set("r1", good)
	h := startSyncer(t, Config{
		Sources: []Source{{Name: "c", Backend: o, Validator: syntaxChecker(t)}},
		Period:  10 * time.Millisecond,
	})
	testkit.Eventually(t, 10*time.Second, "r1 published", func() bool { return h.status(t).Revision == "r1" })
	o.set("r2", map[string]string{"app.json": `{"a": 1,}`})
	testkit.Eventually(t, 10*time.Second, "r2 rejected", func() bool { return h.status(t).RejectedRevision == "r2" })
	o.set("r1", good)
	// The rejection is forgotten when the fetch sees r1, the error a step
	// later, when the attempt ends.
	testkit.Eventually(t, 10*time.Second, "the rejection forgotten", func() bool {
		st := h.status(t)
		return st.RejectedRevision == "" && st.ConsecutiveFailures == 0
	})
	if st := h.status(t); st.Revision != "r1" || st.LastError != "" {
		t.Errorf("/status after the revert: %+v", st)
	}
}

func TestOnceEndsAtOnceOnARejection(t *testing.T) {
	o := &origin{}
	o.set("r1", map[string]string{"conf/app.yaml": tabIndented})
	store := newStore(t, fetch.Limits{})
	s, err := New(Config{
		Store:       store,
		Sources:     []Source{{Name: "c", Backend: o, Validator: syntaxChecker(t)}},
		OnceTimeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	err = s.Once(context.Background())
	if !IsRejected(err) {
		t.Fatalf("Once = %v, want a rejection", err)
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("Once took %s: it retried a rejected revision", took)
	}
	if want := "source c: revision r1 rejected: syntax: conf/app.yaml:3:1: "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Once = %q, want it to start with %q", err, want)
	}
	if o.fetches.Load() != 1 {
		t.Errorf("%d fetches, want 1", o.fetches.Load())
	}
	if _, err := os.Lstat(store.LinkPath("c")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ROOT/c after a rejected first revision: %v, want none", err)
	}
}

// validatorFunc adapts a function to a Validator.
type validatorFunc func(context.Context, validate.Candidate) error

func (f validatorFunc) Validate(ctx context.Context, c validate.Candidate) error { return f(ctx, c) }

func TestValidatorSeesTheCompleteStagedTree(t *testing.T) {
	o := &origin{}
	o.set("r1", map[string]string{"a": "1", "d/b": "2"})
	var seen validate.Candidate
	var files []string
	check := validatorFunc(func(_ context.Context, c validate.Candidate) error {
		seen = c
		for _, f := range []string{"a", "d/b"} {
			if b, err := os.ReadFile(c.Dir + "/" + f); err == nil {
				files = append(files, string(b))
			}
		}
		return nil
	})
	s, err := New(Config{Store: newStore(t, fetch.Limits{}), Sources: []Source{{Name: "c", Backend: o, Validator: check}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if seen.Source != "c" || seen.Revision != "r1" || !strings.Contains(seen.Dir, ".ferry") {
		t.Errorf("candidate %+v", seen)
	}
	if strings.Join(files, ",") != "1,2" {
		t.Errorf("the validator read %q, want every file written", files)
	}
}

func TestValidatorThatCannotRunIsRetried(t *testing.T) {
	o := &origin{}
	o.set("r1", map[string]string{"a": "1"})
	calls := 0
	check := validatorFunc(func(context.Context, validate.Candidate) error {
		calls++
		if calls < 3 {
			return errors.New("checker busy")
		}
		return nil
	})
	s, err := New(Config{Store: newStore(t, fetch.Limits{}), Sources: []Source{{Name: "c", Backend: o, Validator: check}}, Period: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Once(context.Background()); err != nil {
		t.Fatalf("Once = %v, want success after retries", err)
	}
	if calls != 3 || s.Status()[0].RejectedRevision != "" {
		t.Errorf("%d checks, status %+v; want 3 and no rejection", calls, s.Status()[0])
	}
}

// A damaged published tree cannot be replaced while the origin holds a
// rejected revision; the source keeps its revision all the same.
func TestDamageWhileHeldBackKeepsTheRevision(t *testing.T) {
	o := &origin{}
	o.set("r1", map[string]string{"app.yaml": "a: 1\n"})
	h := startSyncer(t, Config{
		Sources: []Source{{Name: "c", Backend: o, Validator: syntaxChecker(t)}},
		Period:  10 * time.Millisecond,
	})
	testkit.Eventually(t, 10*time.Second, "r1 published", func() bool { return h.status(t).Revision == "r1" })
	o.set("r2", map[string]string{"app.yaml": tabIndented})
	testkit.Eventually(t, 10*time.Second, "r2 rejected", func() bool { return h.status(t).RejectedRevision == "r2" })
	if err := os.RemoveAll(h.store.revDir("c", "r1")); err != nil {
		t.Fatal(err)
	}
	n := o.fetches.Load()
	testkit.Eventually(t, 10*time.Second, "polls after the damage", func() bool { return o.fetches.Load() >= n+5 })
	if st := h.status(t); st.Revision != "r1" || st.RejectedRevision != "r2" {
		t.Errorf("/status after damage while r2 is held back: %+v", st)
	}
	if ok, why := h.syncer.Ready(); !ok {
		t.Errorf("not ready: %s", why)
	}
}
