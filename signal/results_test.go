package signal

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testkit"
)

// TestResultsSayHowEachTargetWentLastPerSource: every configured target is
// listed for a source, told or not yet; each shows its last outcome for
// that source, with the error of a failure, and an ok clears the error.
func TestResultsSayHowEachTargetWentLastPerSource(t *testing.T) {
	ok := newReceiver(t, nil)
	flaky := newReceiver(t, answer(500, 500, 200))
	refusing := newReceiver(t, answer(400))
	o := fastOptions(ok.url, flaky.url, refusing.url)
	o.TouchFile = filepath.Join(t.TempDir(), "reloaded")
	n := newNotifiers(t, o)
	n.start(t)
	n.Notify(Change{Source: "app", Revision: "r1"})
	n.waitTotal(t, refusing.url, resultFailed, 1)
	n.waitTotal(t, flaky.url, resultOK, 1)

	show := func(rs []Result) string {
		var out []string
		for _, r := range rs {
			out = append(out, fmt.Sprintf("%s %s %s %q", r.Target, r.Outcome, r.Revision, r.Err))
		}
		return strings.Join(out, "\n")
	}
	want := strings.Join([]string{
		"touch:" + o.TouchFile + ` ok r1 ""`,
		ok.url + ` ok r1 ""`,
		flaky.url + ` ok r1 ""`,
		refusing.url + ` failed r1 "notify: reply 400 Bad Request: Bad Request"`,
	}, "\n")
	if got := show(n.Results("app")); got != want {
		t.Errorf("Results(app):\n%s\nwant:\n%s", got, want)
	}
	for _, r := range n.Results("app") {
		if r.Time.IsZero() || time.Since(r.Time) > time.Minute {
			t.Errorf("%s: time %v", r.Target, r.Time)
		}
	}
	// Another source, told of nothing yet: every target, no outcome.
	if got, want := show(n.Results("other")), strings.Join([]string{
		"touch:" + o.TouchFile + `   ""`, ok.url + `   ""`, flaky.url + `   ""`, refusing.url + `   ""`,
	}, "\n"); got != want {
		t.Errorf("Results(other):\n%s\nwant:\n%s", got, want)
	}

	// While a retry waits, the failure shows.
	flaky.down.Store(true)
	n.Notify(Change{Source: "app", Revision: "r2"})
	testkit.Eventually(t, 5*time.Second, "a retry of r2", func() bool { return n.total(t, flaky.url, resultRetry) >= 3 })
	for _, r := range n.Results("app") {
		if r.Target == flaky.url && (r.Outcome != resultRetry || r.Revision != "r2" || !strings.Contains(r.Err, "503")) {
			t.Errorf("while retrying: %+v", r)
		}
	}
	if rs := (&Notifiers{}).Results("app"); rs != nil {
		t.Errorf("Notifiers that tell nobody: %v", rs)
	}
}
