package signal

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
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
// answers with whatever reply says.
type receiver struct {
	srv *httptest.Server

	mu    sync.Mutex
	reqs  []request
	reply func(n int, c Change) (status int, header http.Header)
}

// newReceiver starts a receiver; reply gets the 1-based request number and
// the decoded change. A nil reply answers 200.
func newReceiver(t *testing.T, reply func(n int, c Change) (int, http.Header)) *receiver {
	t.Helper()
	r := &receiver{reply: reply}
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var c Change
	_ = json.Unmarshal(body, &c)
	r.mu.Lock()
	n := len(r.reqs) + 1
	status, header := http.StatusOK, http.Header(nil)
	if r.reply != nil {
		status, header = r.reply(n, c)
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

// delivered returns the requests answered with a 2xx.
func (r *receiver) delivered() []request {
	var out []request
	for _, q := range r.requests() {
		if q.status/100 == 2 {
			out = append(out, q)
		}
	}
	return out
}

// syncBuffer is a log sink that tests may read while workers write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fastOptions are HTTPOptions with intervals short enough for tests.
func fastOptions(urls ...string) HTTPOptions {
	return HTTPOptions{
		URLs:            urls,
		Timeout:         5 * time.Second,
		InitialInterval: 10 * time.Millisecond,
		MaxInterval:     50 * time.Millisecond,
	}
}

// start runs h until the test ends and checks that Run then returns nil.
// The returned stop cancels Run early and reports how long it took to return.
func start(t *testing.T, h *HTTP) (stop func() time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	var once sync.Once
	var took time.Duration
	stop = func() time.Duration {
		once.Do(func() {
			begin := time.Now()
			cancel()
			select {
			case err := <-done:
				took = time.Since(begin)
				if err != nil {
					t.Errorf("Run returned %v, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Run did not return within 10s of cancel")
			}
		})
		return took
	}
	t.Cleanup(func() { stop() })
	return stop
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// quiet asserts that cond keeps holding for d: used to show that nothing
// more happens, e.g. no further request after a final answer.
func quiet(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !cond() {
			t.Fatalf("%s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newTextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}

func itoa(n int) string { return strconv.Itoa(n) }
