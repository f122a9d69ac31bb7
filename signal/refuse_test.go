package signal

import (
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testkit"
)

// refusals collects what Refused is told.
type refusals struct {
	mu  sync.Mutex
	got []Refusal
}

func (r *refusals) add(x Refusal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, x)
}

func (r *refusals) list() []Refusal {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Refusal(nil), r.got...)
}

func TestFinal4xxIsReportedAsARefusal(t *testing.T) {
	r := newReceiver(t, answer(422))
	var got refusals
	o := fastOptions(r.url + "/-/reload")
	o.Refused = got.add
	n := newNotifiers(t, o)
	n.start(t)
	n.Notify(Change{Source: "app", Revision: "r2"})
	testkit.Eventually(t, wait, "a refusal", func() bool { return len(got.list()) == 1 })
	x := got.list()[0]
	if x.Change.Revision != "r2" || x.Target != r.url+"/-/reload" || x.Err == nil {
		t.Errorf("refusal %+v", x)
	}
	quiet(t, 200*time.Millisecond, "a second request or refusal", func() bool {
		return len(r.requests()) == 1 && len(got.list()) == 1
	})
}

// Prometheus answers 500 to a reload of a config it cannot load, and
// keeps its old one: with RejectAfter, that is a refusal, and the retries
// end.
func TestFailuresLongerThanRejectAfterAreARefusal(t *testing.T) {
	r := newReceiver(t, answer(500))
	var got refusals
	o := fastOptions(r.url)
	o.Refused, o.RejectAfter = got.add, 300*time.Millisecond
	n := newNotifiers(t, o)
	n.start(t)
	start := time.Now()
	n.Notify(Change{Source: "app", Revision: "r2"})
	testkit.Eventually(t, wait, "a refusal", func() bool { return len(got.list()) == 1 })
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("refused after %s, before RejectAfter", took)
	}
	if len(r.requests()) < 2 {
		t.Errorf("%d requests: the change was not retried before it was refused", len(r.requests()))
	}
	sent := len(r.requests())
	quiet(t, 200*time.Millisecond, "retries after the refusal", func() bool { return len(r.requests()) == sent })
	n.waitTotal(t, r.url, resultFailed, 1)
}

// 408 and 429 say "later", not "no": they are retried, never refused.
func TestTimeoutAndTooManyRequestsAreNotRefusals(t *testing.T) {
	r := newReceiver(t, answer(408, 429, 200))
	var got refusals
	o := fastOptions(r.url)
	o.Refused = got.add
	n := newNotifiers(t, o)
	n.start(t)
	n.Notify(Change{Source: "app", Revision: "r1"})
	n.waitTotal(t, r.url, resultOK, 1)
	if len(got.list()) != 0 || len(r.requests()) != 3 {
		t.Errorf("refusals %v after %d requests, want none after 3", got.list(), len(r.requests()))
	}
}

// Each URL answers for itself: one that refuses is reported, the other's
// delivery goes on.
func TestAnyURLCanRefuse(t *testing.T) {
	ok := newReceiver(t, nil)
	no := newReceiver(t, answer(400))
	var got refusals
	o := fastOptions(ok.url, no.url)
	o.Refused = got.add
	n := newNotifiers(t, o)
	n.start(t)
	n.Notify(Change{Source: "app", Revision: "r2"})
	testkit.Eventually(t, wait, "a refusal", func() bool { return len(got.list()) == 1 })
	n.waitTotal(t, ok.url, resultOK, 1)
	if x := got.list()[0]; x.Target != no.url {
		t.Errorf("refused by %s, want %s", x.Target, no.url)
	}
}
