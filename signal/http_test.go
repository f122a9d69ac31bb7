package signal

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNotifySendsJSONBodyAndHeaders(t *testing.T) {
	r := newReceiver(t, nil)
	o := fastOptions(r.srv.URL + "/-/reload")
	o.Method = "put"
	h, err := NewHTTP(o)
	if err != nil {
		t.Fatal(err)
	}
	start(t, h)
	h.Notify(Change{Source: "app", Revision: "abc123", Path: "/config/app"})
	waitFor(t, 5*time.Second, "a delivery", func() bool { return len(r.delivered()) == 1 })

	q := r.requests()[0]
	if q.method != http.MethodPut {
		t.Errorf("method = %q, want PUT", q.method)
	}
	var body map[string]string
	if err := json.Unmarshal(q.body, &body); err != nil {
		t.Fatalf("body %q is not JSON: %v", q.body, err)
	}
	want := map[string]string{"source": "app", "revision": "abc123", "path": "/config/app"}
	if len(body) != len(want) {
		t.Errorf("body = %v, want %v", body, want)
	}
	for k, v := range want {
		if body[k] != v {
			t.Errorf("body[%q] = %q, want %q", k, body[k], v)
		}
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

func TestNotifyDefaultsToPOST(t *testing.T) {
	r := newReceiver(t, nil)
	h, err := NewHTTP(fastOptions(r.srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	start(t, h)
	h.Notify(Change{Source: "app", Revision: "r1"})
	waitFor(t, 5*time.Second, "a delivery", func() bool { return len(r.delivered()) == 1 })
	if m := r.requests()[0].method; m != http.MethodPost {
		t.Errorf("method = %q, want POST", m)
	}
}

func TestNotifyRetriesAfter503(t *testing.T) {
	r := newReceiver(t, func(n int, _ Change) (int, http.Header) {
		if n <= 2 {
			return http.StatusServiceUnavailable, nil
		}
		return http.StatusOK, nil
	})
	h, err := NewHTTP(fastOptions(r.srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	start(t, h)
	h.Notify(Change{Source: "app", Revision: "r1"})
	waitFor(t, 5*time.Second, "a delivery", func() bool { return len(r.delivered()) == 1 })
	quiet(t, 200*time.Millisecond, "a request after the delivery", func() bool { return len(r.requests()) == 3 })
}

func TestNotifyRetriesUntilReceiverListens(t *testing.T) {
	// Reserve a port, then free it: the first attempts are refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	reg := prometheus.NewRegistry()
	o := fastOptions("http://" + addr + "/reload")
	o.Registerer = reg
	h, err := NewHTTP(o)
	if err != nil {
		t.Fatal(err)
	}
	start(t, h)
	h.Notify(Change{Source: "app", Revision: "r1"})
	target := "http://" + addr + "/reload"
	waitFor(t, 5*time.Second, "a refused attempt", func() bool {
		return total(h, target, "retry") >= 1
	})

	l, err = net.Listen("tcp", addr)
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

	waitFor(t, 5*time.Second, "a delivery", func() bool { return got.Load() != nil })
	if c := got.Load(); c.Revision != "r1" {
		t.Errorf("delivered revision %q, want r1", c.Revision)
	}
	waitFor(t, 5*time.Second, "the ok metric", func() bool {
		return total(h, target, "ok") == 1
	})
}

func TestNotifyDoesNotRetry404(t *testing.T) {
	r := newReceiver(t, func(int, Change) (int, http.Header) { return http.StatusNotFound, nil })
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	o := fastOptions(r.srv.URL)
	o.Registerer = reg
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	h, err := NewHTTP(o)
	if err != nil {
		t.Fatal(err)
	}
	start(t, h)
	h.Notify(Change{Source: "app", Revision: "r1"})
	waitFor(t, 5*time.Second, "a failure", func() bool {
		return total(h, r.srv.URL, "failed") == 1
	})
	// Several backoff intervals (10-50ms) pass: still only one request.
	quiet(t, 300*time.Millisecond, "404 was retried", func() bool { return len(r.requests()) == 1 })
	if got := total(h, r.srv.URL, "retry"); got != 0 {
		t.Errorf("retry count = %v, want 0", got)
	}
	if s := logs.String(); !strings.Contains(s, "level=ERROR") || !strings.Contains(s, "404") {
		t.Errorf("log has no error line naming the 404:\n%s", s)
	}
}

func TestNotifyBurstDeliversOnlyNewest(t *testing.T) {
	var up atomic.Bool
	r := newReceiver(t, func(int, Change) (int, http.Header) {
		if up.Load() {
			return http.StatusOK, nil
		}
		return http.StatusServiceUnavailable, nil
	})
	reg := prometheus.NewRegistry()
	o := fastOptions(r.srv.URL)
	o.Registerer = reg
	h, err := NewHTTP(o)
	if err != nil {
		t.Fatal(err)
	}
	start(t, h)
	for i := 1; i <= 10; i++ {
		h.Notify(Change{Source: "app", Revision: fmt.Sprintf("r%d", i)})
	}
	// Bring the receiver up only once the worker is on r10: an attempt
	// already in flight cannot be recalled, so this keeps the test exact.
	waitFor(t, 5*time.Second, "an attempt with r10", func() bool {
		for _, q := range r.requests() {
			if q.change.Revision == "r10" {
				return true
			}
		}
		return false
	})
	up.Store(true)
	waitFor(t, 5*time.Second, "a delivery", func() bool { return len(r.delivered()) >= 1 })
	quiet(t, 300*time.Millisecond, "a request after the delivery", func() bool {
		reqs := r.requests()
		return reqs[len(reqs)-1].status == http.StatusOK
	})
	d := r.delivered()
	if len(d) != 1 || d[0].change.Revision != "r10" {
		t.Fatalf("delivered %v, want exactly r10", revisions(d))
	}
	if got := total(h, r.srv.URL, "dropped"); got != 9 {
		t.Errorf("dropped = %v, want 9", got)
	}
}

func TestNotifyKeepsNewestPerSource(t *testing.T) {
	var up atomic.Bool
	r := newReceiver(t, func(int, Change) (int, http.Header) {
		if up.Load() {
			return http.StatusOK, nil
		}
		return http.StatusServiceUnavailable, nil
	})
	h, err := NewHTTP(fastOptions(r.srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	start(t, h)
	for i := 1; i <= 5; i++ {
		h.Notify(Change{Source: "a", Revision: fmt.Sprintf("a%d", i)})
		h.Notify(Change{Source: "b", Revision: fmt.Sprintf("b%d", i)})
	}
	waitFor(t, 5*time.Second, "attempts with a5 and b5", func() bool {
		seen := map[string]bool{}
		for _, q := range r.requests() {
			seen[q.change.Revision] = true
		}
		return seen["a5"] && seen["b5"]
	})
	up.Store(true)
	waitFor(t, 5*time.Second, "two deliveries", func() bool { return len(r.delivered()) >= 2 })
	quiet(t, 300*time.Millisecond, "a request after both deliveries", func() bool {
		reqs := r.requests()
		return reqs[len(reqs)-1].status == http.StatusOK && len(r.delivered()) == 2
	})
	got := map[string]string{}
	for _, q := range r.delivered() {
		got[q.change.Source] = q.change.Revision
	}
	if got["a"] != "a5" || got["b"] != "b5" {
		t.Errorf("delivered %v, want a5 for a and b5 for b", got)
	}
}

func TestNotifyHonoursRetryAfter(t *testing.T) {
	for _, status := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			r := newReceiver(t, func(n int, _ Change) (int, http.Header) {
				if n == 1 {
					return status, http.Header{"Retry-After": {"1"}}
				}
				return http.StatusOK, nil
			})
			o := fastOptions(r.srv.URL)
			o.MaxInterval = 5 * time.Second
			h, err := NewHTTP(o)
			if err != nil {
				t.Fatal(err)
			}
			start(t, h)
			h.Notify(Change{Source: "app", Revision: "r1"})
			waitFor(t, 5*time.Second, "a delivery", func() bool { return len(r.delivered()) == 1 })
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
	r := newReceiver(t, func(n int, _ Change) (int, http.Header) {
		if n == 1 {
			return http.StatusTooManyRequests, http.Header{"Retry-After": {"3600"}}
		}
		return http.StatusOK, nil
	})
	h, err := NewHTTP(fastOptions(r.srv.URL)) // MaxInterval 50ms
	if err != nil {
		t.Fatal(err)
	}
	start(t, h)
	h.Notify(Change{Source: "app", Revision: "r1"})
	waitFor(t, 5*time.Second, "a delivery despite Retry-After: 3600", func() bool { return len(r.delivered()) == 1 })
}

func TestRunReturnsPromptlyWhileWaitingToRetry(t *testing.T) {
	r := newReceiver(t, func(int, Change) (int, http.Header) { return http.StatusServiceUnavailable, nil })
	reg := prometheus.NewRegistry()
	o := fastOptions(r.srv.URL)
	o.InitialInterval, o.MaxInterval = time.Hour, time.Hour // MaxElapsed 0: no bound to pass
	o.Registerer = reg
	h, err := NewHTTP(o)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, h)
	h.Notify(Change{Source: "app", Revision: "r1"})
	waitFor(t, 5*time.Second, "a retry to be scheduled", func() bool {
		return total(h, r.srv.URL, "retry") == 1
	})
	if took := stop(); took > time.Second {
		t.Errorf("Run took %v to return after cancel, want < 1s", took)
	}
}

func TestNewerChangeCutsRetryWaitShort(t *testing.T) {
	var up atomic.Bool
	r := newReceiver(t, func(int, Change) (int, http.Header) {
		if up.Load() {
			return http.StatusOK, nil
		}
		return http.StatusServiceUnavailable, nil
	})
	reg := prometheus.NewRegistry()
	o := fastOptions(r.srv.URL)
	o.InitialInterval, o.MaxInterval = time.Hour, time.Hour // MaxElapsed 0: no bound to pass
	o.Registerer = reg
	h, err := NewHTTP(o)
	if err != nil {
		t.Fatal(err)
	}
	start(t, h)
	h.Notify(Change{Source: "app", Revision: "r1"})
	waitFor(t, 5*time.Second, "a retry to be scheduled", func() bool {
		return total(h, r.srv.URL, "retry") == 1
	})
	up.Store(true)
	h.Notify(Change{Source: "app", Revision: "r2"})
	waitFor(t, 5*time.Second, "r2 delivered long before the 1h backoff", func() bool { return len(r.delivered()) == 1 })
	if d := r.delivered(); d[0].change.Revision != "r2" {
		t.Errorf("delivered %s, want r2", d[0].change.Revision)
	}
}

func TestNotifyGivesUpAfterMaxElapsed(t *testing.T) {
	r := newReceiver(t, func(int, Change) (int, http.Header) { return http.StatusBadGateway, nil })
	reg := prometheus.NewRegistry()
	o := fastOptions(r.srv.URL)
	o.MaxElapsed = 500 * time.Millisecond
	o.Registerer = reg
	h, err := NewHTTP(o)
	if err != nil {
		t.Fatal(err)
	}
	start(t, h)
	h.Notify(Change{Source: "app", Revision: "r1"})
	waitFor(t, 5*time.Second, "giving up", func() bool {
		return total(h, r.srv.URL, "failed") == 1
	})
	n := len(r.requests())
	if n < 2 {
		t.Errorf("%d requests before giving up, want retries", n)
	}
	quiet(t, 200*time.Millisecond, "a request after giving up", func() bool { return len(r.requests()) == n })
}

func TestNotifyMetrics(t *testing.T) {
	var up atomic.Bool
	r := newReceiver(t, func(int, Change) (int, http.Header) {
		if up.Load() {
			return http.StatusNoContent, nil
		}
		return http.StatusServiceUnavailable, nil
	})
	reg := prometheus.NewRegistry()
	o := fastOptions(r.srv.URL)
	o.Registerer = reg
	h, err := NewHTTP(o)
	if err != nil {
		t.Fatal(err)
	}
	// Every result is exported from the start, at zero.
	if n := testutil.CollectAndCount(reg, "ferry_notify_total"); n != 4 {
		t.Errorf("ferry_notify_total has %d series before any notify, want 4", n)
	}
	// Queued before Run: the mailbox already keeps only the newest.
	h.Notify(Change{Source: "app", Revision: "r1"})
	h.Notify(Change{Source: "app", Revision: "r2"})
	h.Notify(Change{Source: "app", Revision: "r3"})
	up.Store(true)
	start(t, h)
	waitFor(t, 5*time.Second, "a delivery", func() bool {
		return total(h, r.srv.URL, "ok") == 1
	})
	for result, want := range map[string]float64{"ok": 1, "dropped": 2, "retry": 0, "failed": 0} {
		if got := total(h, r.srv.URL, result); got != want {
			t.Errorf("ferry_notify_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	if n := testutil.CollectAndCount(reg, "ferry_notify_duration_seconds"); n != 1 {
		t.Errorf("ferry_notify_duration_seconds has %d series, want 1", n)
	}
	if d := r.delivered(); len(d) != 1 || d[0].change.Revision != "r3" {
		t.Errorf("delivered %v, want r3 only", revisions(d))
	}
}

func TestNotifyKeepsSecretsOutOfLogsAndMetrics(t *testing.T) {
	r := newReceiver(t, nil)
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	// A token in the query reaches the app but never a label or a log.
	withToken := r.srv.URL + "/reload?token=s3cret"
	o := fastOptions(withToken)
	o.Registerer = reg
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	h, err := NewHTTP(o)
	if err != nil {
		t.Fatal(err)
	}
	start(t, h)
	h.Notify(Change{Source: "app", Revision: "r1"})
	waitFor(t, 5*time.Second, "a delivery", func() bool { return len(r.delivered()) == 1 })
	waitFor(t, 5*time.Second, "the ok metric under scheme, host and path", func() bool {
		v, ok := gathered(t, reg, r.srv.URL+"/reload", "ok")
		return ok && v == 1
	})
	if _, ok := gathered(t, reg, withToken, "ok"); ok {
		t.Errorf("a metric is labelled with the query token")
	}
	waitFor(t, 5*time.Second, "the delivery log line", func() bool {
		return strings.Contains(logs.String(), "notified application")
	})
	if strings.Contains(logs.String(), "s3cret") {
		t.Errorf("log shows the token:\n%s", logs.String())
	}
	// Credentials in the URL are refused, and the refusal does not echo them.
	withPassword := strings.Replace(r.srv.URL, "http://", "http://user:s3cret@", 1)
	if _, err := NewHTTP(HTTPOptions{URLs: []string{withPassword}}); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("NewHTTP(%s) error %v: want a refusal without the password", withPassword, err)
	}
}

func TestNewHTTPRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    HTTPOptions
		want string
	}{
		{"no URL", HTTPOptions{}, "no notify URL"},
		{"scheme", HTTPOptions{URLs: []string{"ftp://host/x"}}, "scheme"},
		{"relative", HTTPOptions{URLs: []string{"/reload"}}, "scheme"},
		{"no host", HTTPOptions{URLs: []string{"http:///reload"}}, "no host"},
		{"unparsable", HTTPOptions{URLs: []string{"http://host:port:x/"}}, "notify URL"},
		{"twice", HTTPOptions{URLs: []string{"http://h/x", "http://h/x"}}, "twice"},
		{"method", HTTPOptions{URLs: []string{"http://h/x"}, Method: "PO ST"}, "method"},
		{"negative timeout", HTTPOptions{URLs: []string{"http://h/x"}, Timeout: -1}, "timeout"},
		{"intervals", HTTPOptions{URLs: []string{"http://h/x"}, InitialInterval: time.Minute, MaxInterval: time.Second}, "initial interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewHTTP(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewHTTP error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	// All problems are reported together.
	_, err := NewHTTP(HTTPOptions{URLs: []string{"ftp://a/", "http:///b"}, Method: "A B"})
	for _, want := range []string{"scheme", "no host", "method"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NewHTTP error %v, want it to mention %q", err, want)
		}
	}
}

func TestRunTwiceAtOnceIsRefused(t *testing.T) {
	h, err := NewHTTP(fastOptions("http://127.0.0.1:1/"))
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, h)
	waitFor(t, 5*time.Second, "Run to start", func() bool { return h.running.Load() })
	if err := h.Run(t.Context()); err == nil {
		t.Errorf("second concurrent Run returned nil, want an error")
	}
	stop()
	if h.running.Load() {
		t.Errorf("still marked running after Run returned")
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

// total reads ferry_notify_total{target,result} of h.
func total(h *HTTP, target, result string) float64 {
	return testutil.ToFloat64(h.metrics.total.WithLabelValues(target, result))
}

// gathered reads ferry_notify_total{target,result} as reg exports it, and
// whether that series exists at all.
func gathered(t *testing.T, reg *prometheus.Registry, target, result string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ferry_notify_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["target"] == target && labels["result"] == result {
				return m.GetCounter().GetValue(), true
			}
		}
	}
	return 0, false
}

func revisions(reqs []request) []string {
	var out []string
	for _, q := range reqs {
		out = append(out, q.change.Revision)
	}
	return out
}
