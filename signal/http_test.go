package signal

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrysync/ferry/internal/testkit"
)

const wait = 5 * time.Second

func TestNotifySendsJSONBodyAndHeaders(t *testing.T) {
	r := newReceiver(t, nil)
	o := fastOptions(r.url + "/-/reload")
	o.Method = "put"
	n := newNotifiers(t, o)
	n.start(t)
	n.Notify(Change{Source: "app", Revision: "abc123", Path: "/config/app"})
	testkit.Eventually(t, wait, "a delivery", func() bool { return len(r.delivered()) == 1 })

	q := r.requests()[0]
	if q.method != http.MethodPut {
		t.Errorf("method = %q, want PUT", q.method)
	}
	// One change: its fields at the top level, as receivers written for
	// one source read them, and under "changes", as the others do.
	want := `{"source":"app","revision":"abc123","path":"/config/app","changes":[{"source":"app","revision":"abc123","path":"/config/app"}]}`
	if string(q.body) != want {
		t.Errorf("body = %s\nwant   %s", q.body, want)
	}
	for k, v := range map[string]string{
		"Content-Type":   "application/json",
		"Ferry-Source":   "app",
		"Ferry-Revision": "abc123",
		"User-Agent":     "ferry",
	} {
		if got := q.header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
}

// TestNotifyTellsChangesTogetherInOneRequest: changes handed over together
// are one request, whose body lists them all and nothing at the top level;
// a change that replaces one of them while it is being retried takes the
// others along.
func TestNotifyTellsChangesTogetherInOneRequest(t *testing.T) {
	r := newReceiver(t, answer(503, 200, 200))
	o := fastOptions(r.url)
	// The retry must not come before a2 does; a2 is sent at once.
	o.InitialInterval, o.MaxInterval = 10*time.Second, 10*time.Second
	n := newNotifiers(t, o)
	n.start(t)
	n.Notify(Change{Source: "b", Revision: "b1", Path: "/c/b"}, Change{Source: "a", Revision: "a1", Path: "/c/a"})
	testkit.Eventually(t, wait, "the first attempt", func() bool { return len(r.requests()) == 1 })
	n.Notify(Change{Source: "c", Revision: "c1", Path: "/c/c"}) // apart: a source of its own
	n.Notify(Change{Source: "a", Revision: "a2", Path: "/c/a"}) // replaces a1, takes b1 along
	testkit.Eventually(t, wait, "two deliveries", func() bool { return len(r.delivered()) == 2 })
	quiet(t, 200*time.Millisecond, "another request", func() bool { return len(r.requests()) == 3 })

	var got []string
	for _, q := range r.requests() {
		got = append(got, q.header.Get("Ferry-Source")+" "+q.header.Get("Ferry-Revision")+" "+string(q.body))
	}
	slices.Sort(got[1:]) // the two deliveries run in either order
	want := []string{
		`a,b a1,b1 {"changes":[{"source":"a","revision":"a1","path":"/c/a"},{"source":"b","revision":"b1","path":"/c/b"}]}`,
		`a,b a2,b1 {"changes":[{"source":"a","revision":"a2","path":"/c/a"},{"source":"b","revision":"b1","path":"/c/b"}]}`,
		`c c1 {"source":"c","revision":"c1","path":"/c/c","changes":[{"source":"c","revision":"c1","path":"/c/c"}]}`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if v := n.total(t, r.url, resultDropped); v != 1 {
		t.Errorf("dropped = %v, want 1 (a1)", v)
	}
}

func TestNotifyRetriesAfter503(t *testing.T) {
	r := newReceiver(t, answer(503, 503, 200))
	n := newNotifiers(t, fastOptions(r.url))
	n.start(t)
	n.Notify(Change{Source: "app", Revision: "r1"})
	testkit.Eventually(t, wait, "a delivery", func() bool { return len(r.delivered()) == 1 })
	quiet(t, 200*time.Millisecond, "a request after the delivery", func() bool { return len(r.requests()) == 3 })
}

// TestNotifyRetriesAreLoggedOnceThenNowAndThen: the first failure of a
// delivery is a WARN with its status (an app refusing every reload must
// not stay silent until the outcome); the retries that follow within
// retryLogEvery are DEBUG; then the outcome.
func TestNotifyRetriesAreLoggedOnceThenNowAndThen(t *testing.T) {
	r := newReceiver(t, answer(503, 503, 503, 200))
	n := newNotifiers(t, fastOptions(r.url))
	n.start(t)
	n.Notify(Change{Source: "app", Revision: "r1"})
	testkit.Eventually(t, wait, "a delivery", func() bool { return len(r.delivered()) == 1 })
	testkit.Eventually(t, wait, "the outcome logged", func() bool { return strings.Contains(n.logs.String(), "notified application") })
	logs := n.logs.String()
	if w := strings.Count(logs, `level=WARN msg="notify failed, will retry"`); w != 1 || !strings.Contains(logs, "503") {
		t.Fatalf("%d WARN lines for three failures in a row, want 1 naming the status:\n%s", w, logs)
	}
}

func TestNotifyRetriesUntilReceiverListens(t *testing.T) {
	addr := freeAddr(t) // the first attempts are refused
	target := "http://" + addr + "/reload"
	n := newNotifiers(t, fastOptions(target))
	n.start(t)
	n.Notify(Change{Source: "app", Revision: "r1"})
	testkit.Eventually(t, wait, "a refused attempt", func() bool { return n.total(t, target, resultRetry) >= 1 })

	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	var got atomic.Pointer[Change]
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var c Change
		_ = json.NewDecoder(req.Body).Decode(&c)
		got.Store(&c)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	n.waitTotal(t, target, resultOK, 1)
	if c := got.Load(); c.Revision != "r1" {
		t.Errorf("delivered revision %q, want r1", c.Revision)
	}
}

func TestNotifyDoesNotRetry404(t *testing.T) {
	r := newReceiver(t, answer(404))
	n := newNotifiers(t, fastOptions(r.url))
	n.start(t)
	n.Notify(Change{Source: "app", Revision: "r1"})
	n.waitTotal(t, r.url, resultFailed, 1)
	// Several backoff intervals (10-50ms) pass: still only one request.
	quiet(t, 300*time.Millisecond, "404 was retried", func() bool { return len(r.requests()) == 1 })
	if got := n.total(t, r.url, resultRetry); got != 0 {
		t.Errorf("retry count = %v, want 0", got)
	}
	if s := n.logs.String(); !strings.Contains(s, "level=ERROR") || !strings.Contains(s, "404") {
		t.Errorf("log has no error line naming the 404:\n%s", s)
	}
}

// While the app is down, a burst of changes to two sources leaves one
// job per source: only the newest of each is delivered once it is up.
func TestNotifyKeepsOnlyTheNewestPerSource(t *testing.T) {
	r := newReceiver(t, nil)
	r.down.Store(true)
	n := newNotifiers(t, fastOptions(r.url))
	n.start(t)
	for i := 1; i <= 10; i++ {
		n.Notify(Change{Source: "a", Revision: fmt.Sprintf("a%d", i)})
		if i%2 == 0 {
			n.Notify(Change{Source: "b", Revision: fmt.Sprintf("b%d", i)})
		}
	}
	// Bring the receiver up only once the worker is on the newest: an
	// attempt already in flight cannot be recalled, so this keeps the test
	// exact.
	testkit.Eventually(t, wait, "attempts with a10 and b10", func() bool { return r.saw("a10", "b10") })
	r.down.Store(false)
	testkit.Eventually(t, wait, "two deliveries", func() bool { return len(r.delivered()) >= 2 })
	quiet(t, 300*time.Millisecond, "a request after both deliveries", func() bool {
		reqs := r.requests()
		return reqs[len(reqs)-1].status == http.StatusOK && len(r.delivered()) == 2
	})
	if d := r.delivered(); !slices.Contains(d, "a10") || !slices.Contains(d, "b10") {
		t.Errorf("delivered %v, want a10 and b10", d)
	}
	if got := n.total(t, r.url, resultDropped); got != 9+4 {
		t.Errorf("dropped = %v, want 13", got)
	}
}

func TestNotifyHonoursRetryAfter(t *testing.T) {
	for _, status := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			r := newReceiver(t, func(n int) (int, http.Header) {
				if n == 1 {
					return status, http.Header{"Retry-After": {"1"}}
				}
				return http.StatusOK, nil
			})
			o := fastOptions(r.url)
			o.MaxInterval = 5 * time.Second
			n := newNotifiers(t, o)
			n.start(t)
			n.Notify(Change{Source: "app", Revision: "r1"})
			testkit.Eventually(t, wait, "a delivery", func() bool { return len(r.delivered()) == 1 })
			reqs := r.requests()
			if len(reqs) != 2 {
				t.Fatalf("%d requests, want 2", len(reqs))
			}
			// The backoff alone would retry after 10ms.
			if gap := reqs[1].at.Sub(reqs[0].at); gap < 900*time.Millisecond {
				t.Errorf("retried after %v, want about 1s as Retry-After asked", gap)
			}
		})
	}
}

func TestNotifyCapsRetryAfterAtMaxInterval(t *testing.T) {
	r := newReceiver(t, func(n int) (int, http.Header) {
		if n == 1 {
			return http.StatusTooManyRequests, http.Header{"Retry-After": {"3600"}}
		}
		return http.StatusOK, nil
	})
	n := newNotifiers(t, fastOptions(r.url)) // MaxInterval 50ms
	n.start(t)
	n.Notify(Change{Source: "app", Revision: "r1"})
	testkit.Eventually(t, wait, "a delivery despite Retry-After: 3600", func() bool { return len(r.delivered()) == 1 })
}

// With an hour between attempts (and MaxElapsed 0, no bound to pass), a
// newer change is delivered at once, and Run still returns at once.
func TestNewerChangeCutsRetryWaitShortAndRunReturnsPromptly(t *testing.T) {
	r := newReceiver(t, nil)
	r.down.Store(true)
	o := fastOptions(r.url)
	o.InitialInterval, o.MaxInterval = time.Hour, time.Hour
	n := newNotifiers(t, o)
	stop := n.start(t)
	n.Notify(Change{Source: "app", Revision: "r1"})
	n.waitTotal(t, r.url, resultRetry, 1)
	r.down.Store(false)
	n.Notify(Change{Source: "app", Revision: "r2"})
	testkit.Eventually(t, wait, "r2 delivered long before the 1h backoff", func() bool { return len(r.delivered()) == 1 })
	if d := r.delivered(); d[0] != "r2" {
		t.Errorf("delivered %s, want r2", d[0])
	}

	r.down.Store(true)
	n.Notify(Change{Source: "app", Revision: "r3"})
	n.waitTotal(t, r.url, resultRetry, 2)
	if took := stop(); took > time.Second {
		t.Errorf("Run took %v to return after cancel, want < 1s", took)
	}
}

func TestNotifyGivesUpAfterMaxElapsed(t *testing.T) {
	r := newReceiver(t, answer(http.StatusBadGateway))
	o := fastOptions(r.url)
	o.MaxElapsed = 500 * time.Millisecond
	n := newNotifiers(t, o)
	n.start(t)
	n.Notify(Change{Source: "app", Revision: "r1"})
	n.waitTotal(t, r.url, resultFailed, 1)
	count := len(r.requests())
	if count < 2 {
		t.Errorf("%d requests before giving up, want retries", count)
	}
	quiet(t, 200*time.Millisecond, "a request after giving up", func() bool { return len(r.requests()) == count })
}

func TestNotifyMetrics(t *testing.T) {
	r := newReceiver(t, answer(http.StatusNoContent))
	n := newNotifiers(t, fastOptions(r.url))
	// Every result is exported from the start, at zero.
	if c := testutil.CollectAndCount(n.reg, "ferry_notify_total"); c != 4 {
		t.Errorf("ferry_notify_total has %d series before any notify, want 4", c)
	}
	// Queued before Run: the mailbox already keeps only the newest.
	for _, rev := range []string{"r1", "r2", "r3"} {
		n.Notify(Change{Source: "app", Revision: rev})
	}
	n.start(t)
	n.waitTotal(t, r.url, resultOK, 1)
	for result, want := range map[string]float64{resultOK: 1, resultDropped: 2, resultRetry: 0, resultFailed: 0} {
		if got := n.total(t, r.url, result); got != want {
			t.Errorf("ferry_notify_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	if c := testutil.CollectAndCount(n.reg, "ferry_notify_duration_seconds"); c != 1 {
		t.Errorf("ferry_notify_duration_seconds has %d series, want 1", c)
	}
	if d := r.delivered(); len(d) != 1 || d[0] != "r3" {
		t.Errorf("delivered %v, want r3 only", d)
	}
}

func TestNotifyKeepsSecretsOutOfLogsAndMetrics(t *testing.T) {
	r := newReceiver(t, nil)
	// A token in the query reaches the app but never a label or a log.
	n := newNotifiers(t, fastOptions(r.url+"/reload?token=s3cret"))
	n.start(t)
	n.Notify(Change{Source: "app", Revision: "r1"})
	n.waitTotal(t, r.url+"/reload", resultOK, 1)
	if got := n.total(t, r.url+"/reload?token=s3cret", resultOK); got != -1 {
		t.Errorf("a metric is labelled with the query token")
	}
	testkit.Eventually(t, wait, "the delivery log line", func() bool {
		return strings.Contains(n.logs.String(), "notified application")
	})
	if strings.Contains(n.logs.String(), "s3cret") {
		t.Errorf("log shows the token:\n%s", n.logs.String())
	}
}

func TestParseRetryAfter(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"":                              -1,
		"2":                             2 * time.Second,
		" 0 ":                           0,
		"-3":                            -1,
		"Wed, 21 Oct 2015 07:28:00 GMT": -1,
		"99999999999999999999":          -1,
		"999999999":                     (1 << 20) * time.Second,
	} {
		if got := parseRetryAfter(in); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestRetryableClassifiesErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&statusError{Code: 500}, true},
		{&statusError{Code: 503}, true},
		{&statusError{Code: 429}, true},
		{&statusError{Code: 408}, true},
		{&statusError{Code: 404}, false},
		{&statusError{Code: 400}, false},
		{&statusError{Code: 302}, false},
		{fmt.Errorf("wrapped: %w", &statusError{Code: 502}), true},
		{errors.New("dial tcp: connection refused"), true},
	} {
		if got := retryable(tc.err); got != tc.want {
			t.Errorf("retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestNotifyNamesEachSourceOnce: a batch that names a source twice is told
// with the last of its changes only.
func TestNotifyNamesEachSourceOnce(t *testing.T) {
	r := newReceiver(t, nil)
	n := newNotifiers(t, fastOptions(r.url))
	n.start(t)
	n.Notify(Change{Source: "a", Revision: "a1"}, Change{Source: "b", Revision: "b1"}, Change{Source: "a", Revision: "a2"})
	testkit.Eventually(t, wait, "a delivery", func() bool { return len(r.delivered()) == 1 })
	if q := r.requests()[0]; q.header.Get("Ferry-Source") != "a,b" || q.header.Get("Ferry-Revision") != "a2,b1" {
		t.Fatalf("told %s at %s", q.header.Get("Ferry-Source"), q.header.Get("Ferry-Revision"))
	}
}
