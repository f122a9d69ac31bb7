package sync

import (
	"maps"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrysync/ferry/internal/testkit"
	"github.com/ferrysync/ferry/signal"
)

func TestIgnorePatternsFollowGitignore(t *testing.T) {
	ig, err := parseIgnore([]string{"*.log", "# a comment", "", "/build/", "!keep.log", "docs/**/*.md"})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"a.log": true, "x/y/a.log": true, "keep.log": false, "build/out.bin": true, "x/build/out.bin": false,
		"docs/a/b/c.md": true, "docs/c.txt": false, "app.yaml": false,
	} {
		if got := ig.match(name, false); got != want {
			t.Errorf("match(%q) = %v, want %v", name, got, want)
		}
	}
	if ig, err := parseIgnore([]string{" ", "#x"}); ig != nil || err != nil {
		t.Fatalf("no pattern: %v, %v; want nil, nil", ig, err)
	}
}

// TestIgnoredChangePublishesNothing: ignored entries are never published,
// and a new revision of the source that changed only them is no change:
// no publish, no notify, and the polls after it are unchanged polls.
func TestIgnoredChangePublishesNothing(t *testing.T) {
	o := &origin{}
	o.set("r1", map[string]string{"app.yaml": "1", "tmp/run.log": "a", "build/x": "b"})
	rec := &recorder{}
	h := startSyncer(t, Config{
		Sources: []Source{{Name: "c", Backend: o, Ignore: []string{"*.log", "build/"}}}, Period: 10 * time.Millisecond, Notifiers: []Notifier{rec},
	})
	testkit.Eventually(t, 10*time.Second, "first publish", func() bool { ok, _ := h.syncer.Ready(); return ok })
	assertTree(t, readTree(t, h.store.LinkPath("c")), map[string]string{"app.yaml": "1"})

	o.set("r2", map[string]string{"app.yaml": "1", "tmp/run.log": "changed", "build/x": "changed"})
	n := o.fetches.Load()
	testkit.Eventually(t, 10*time.Second, "polls", func() bool { return o.fetches.Load() >= n+4 })
	if rev, _ := h.store.Current("c"); rev != "r1" {
		t.Fatalf("an ignored change published %s", rev)
	}
	if got := rec.got(); len(got) != 0 {
		t.Fatalf("an ignored change notified %v", got)
	}
	if v := testutil.ToFloat64(h.syncer.metrics.syncs.WithLabelValues("c", "published")); v != 1 {
		t.Fatalf("ferry_syncs_total{result=published} = %v, want 1", v)
	}

	o.set("r3", map[string]string{"app.yaml": "3", "tmp/run.log": "changed"})
	testkit.Eventually(t, 10*time.Second, "notify of r3", func() bool { return len(rec.got()) == 1 })
	if got := rec.got()[0]; got != (signal.Change{Source: "c", Revision: "r3", Previous: "r1", Path: h.store.LinkPath("c")}) {
		t.Fatalf("notified %+v", got)
	}
	assertTree(t, readTree(t, h.store.LinkPath("c")), map[string]string{"app.yaml": "3"})
}

func assertTree(t *testing.T, got, want map[string]string) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Fatalf("tree %v, want %v", got, want)
	}
}
