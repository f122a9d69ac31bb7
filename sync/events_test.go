package sync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testkit"
)

// kept returns the events kept so far, without waiting.
func kept(s *Syncer) []Event {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // look once
	return s.Events(ctx, 0)
}

// TestEventsSayOncePerOutageThatASourceFailsAndRecovers: an outage of many
// failed attempts is one "failing" event, with the error, and one
// "recovered"; a rejection is a "rejected" event and no failure; failures
// before the first publish are none (/readyz says so).
func TestEventsSayOncePerOutageThatASourceFailsAndRecovers(t *testing.T) {
	o := &origin{}
	o.fail(errors.New("not there yet"))
	h := startSyncer(t, Config{
		Sources: []Source{{Name: "c", Backend: o, Validator: syntaxChecker(t)}},
		Period:  10 * time.Millisecond,
	})
	testkit.Eventually(t, 10*time.Second, "failures before the first publish", func() bool { return h.status(t).ConsecutiveFailures >= 2 })
	o.set("r1", map[string]string{"app.yaml": "a: 1\n"})
	testkit.Eventually(t, 10*time.Second, "r1 published", func() bool { return h.status(t).Revision == "r1" })

	o.fail(errors.New("origin down"))
	testkit.Eventually(t, 10*time.Second, "failures", func() bool { return h.status(t).ConsecutiveFailures >= 3 })
	var failing []Event
	for _, e := range kept(h.syncer) {
		if e.Kind == "failing" {
			failing = append(failing, e)
		}
	}
	if len(failing) != 1 || failing[0].Source != "c" || failing[0].Revision != "r1" || !strings.Contains(failing[0].Error, "origin down") {
		t.Fatalf("failing events = %+v, want one for r1 with the error", failing)
	}

	o.set("r1", map[string]string{"app.yaml": "a: 1\n"})
	testkit.Eventually(t, 10*time.Second, "recovery", func() bool { return h.status(t).ConsecutiveFailures == 0 })
	o.set("r2", map[string]string{"app.yaml": tabIndented})
	testkit.Eventually(t, 10*time.Second, "r2 rejected", func() bool { return h.status(t).RejectedRevision == "r2" })
	o.set("r3", map[string]string{"app.yaml": "a: 3\n"})
	testkit.Eventually(t, 10*time.Second, "r3 published", func() bool { return h.status(t).Revision == "r3" })

	var got []string
	for _, e := range kept(h.syncer) {
		got = append(got, e.Kind+" "+e.Revision)
	}
	if want := "[published r1 failing r1 recovered r1 rejected r2 published r3]"; fmt.Sprint(got) != want {
		t.Fatalf("events %s, want %s", got, want)
	}
}
