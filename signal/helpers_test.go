package signal

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrysync/ferry/internal/localproc"
	"github.com/ferrysync/ferry/internal/testkit"
)

// request is what a receiver saw.
type request struct {
	method string
	header http.Header
	body   []byte
	change Change
	status int
	at     time.Time
}

// receiver is a real HTTP reload endpoint that records every request and
// answers 503 while down, else what reply says.
type receiver struct {
	srv   *httptest.Server
	url   string
	down  atomic.Bool
	reply func(n int) (status int, header http.Header)

	mu   sync.Mutex
	reqs []request
}

// newReceiver starts a receiver; reply gets the 1-based request number. A
// nil reply answers 200.
func newReceiver(t *testing.T, reply func(n int) (int, http.Header)) *receiver {
	t.Helper()
	r := &receiver{reply: reply}
	r.srv = httptest.NewServer(r)
	r.url = r.srv.URL
	t.Cleanup(r.srv.Close)
	return r
}

// answer is a reply that gives the n-th request the n-th status, and the
// last status from then on.
func answer(codes ...int) func(int) (int, http.Header) {
	return func(n int) (int, http.Header) { return codes[min(n, len(codes))-1], nil }
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var c Change
	_ = json.Unmarshal(body, &c)
	r.mu.Lock()
	n := len(r.reqs) + 1
	status, header := http.StatusOK, http.Header(nil)
	switch {
	case r.down.Load():
		status = http.StatusServiceUnavailable
	case r.reply != nil:
		status, header = r.reply(n)
	}
	r.reqs = append(r.reqs, request{method: req.Method, header: req.Header.Clone(), body: body,
		change: c, status: status, at: time.Now()})
	r.mu.Unlock()
	for k, v := range header {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, http.StatusText(status))
}

func (r *receiver) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.reqs...)
}

// delivered returns the revisions of the requests answered with a 2xx.
func (r *receiver) delivered() []string {
	var out []string
	for _, q := range r.requests() {
		if q.status/100 == 2 {
			out = append(out, q.change.Revision)
		}
	}
	return out
}

// saw reports whether the receiver got a request for every revision.
func (r *receiver) saw(revisions ...string) bool {
	seen := map[string]bool{}
	for _, q := range r.requests() {
		seen[q.change.Revision] = true
	}
	for _, rev := range revisions {
		if !seen[rev] {
			return false
		}
	}
	return true
}

// fastOptions are Options for urls with intervals short enough for tests.
func fastOptions(urls ...string) Options {
	return Options{
		URLs:            urls,
		Method:          DefaultMethod,
		Timeout:         5 * time.Second,
		InitialInterval: 10 * time.Millisecond,
		MaxInterval:     50 * time.Millisecond,
	}
}

// notifiers is Notifiers under test, with a registry and logs of its own.
type notifiers struct {
	*Notifiers
	reg  *prometheus.Registry
	logs *testkit.LogBuffer
}

// newNotifiers returns New(o) with o's Registerer and Logger replaced.
func newNotifiers(t *testing.T, o Options) *notifiers {
	t.Helper()
	n := &notifiers{reg: prometheus.NewRegistry(), logs: &testkit.LogBuffer{}}
	o.Registerer, o.Logger = n.reg, n.logs.Logger()
	var err error
	if n.Notifiers, err = New(o); err != nil {
		t.Fatal(err)
	}
	return n
}

// start runs n until the test ends and checks that Run then returns nil.
// The returned stop cancels Run early and reports how long it took to return.
func (n *notifiers) start(t *testing.T) (stop func() time.Duration) {
	t.Helper()
	return testkit.Background(t, n.Run)
}

// total reads ferry_notify_total{target,result} as the registry exports
// it, or -1 when that series does not exist.
func (n *notifiers) total(t *testing.T, target, result string) float64 {
	t.Helper()
	mfs, err := n.reg.Gather()
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
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

// waitTotal waits until ferry_notify_total{target,result} is want.
func (n *notifiers) waitTotal(t *testing.T, target, result string, want float64) {
	t.Helper()
	testkit.Eventually(t, 5*time.Second, "ferry_notify_total "+result+" of "+target, func() bool {
		return n.total(t, target, result) == want
	})
}

// quiet asserts that cond keeps holding for d: used to show that nothing
// more happens, e.g. no further request after a final answer.
func quiet(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if !cond() {
			t.Fatalf("%s", what)
		}
	}
}

// freeAddr returns a loopback address where nothing listens.
func freeAddr(t *testing.T) string {
	addr, err := localproc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
