package e2e

// A fault-injecting proxy in front of each network origin: backoff,
// timeouts, recovery and SIGTERM mid-transfer.

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testkit"
)

// faultMode is what the injector does to the requests it sees.
type faultMode int

const (
	healthy faultMode = iota // everything passes
	flaky                    // every request fails, in a random way
	stalled                  // matching requests stall mid-body, the rest pass
)

// faultInjector sits in front of an origin like a broken proxy or load
// balancer would. Its randomness is seeded, so a failure can be replayed.
type faultInjector struct {
	next http.Handler
	// attempt reports whether a request starts a sync attempt (the GET of
	// the bundle, an S3 listing, git's ref advertisement).
	attempt func(r *http.Request) bool
	// stallIf picks the requests stalled in the stalled mode.
	stallIf func(r *http.Request) bool

	mu      gosync.Mutex
	rng     *rand.Rand
	mode    faultMode
	starts  []time.Time // of attempt requests while flaky or stalled
	faults  map[string]int
	holding int             // requests stalled right now
	held    []time.Duration // how long each stalled request was held
	stop    chan struct{}
}

// injectFaults puts a fault injector in front of an origin's server,
// passing what it lets through to next, the server itself.
func injectFaults(t testing.TB, front *frontable, next http.Handler, attempt, stallIf func(*http.Request) bool) *faultInjector {
	seed := uint64(time.Now().UnixNano())
	t.Logf("fault seed %d", seed)
	f := &faultInjector{next: next, attempt: attempt, stallIf: stallIf, rng: rand.New(rand.NewPCG(seed, 0xfa17)),
		faults: map[string]int{}, stop: make(chan struct{})}
	t.Cleanup(func() { close(f.stop) })
	front.setFront(f)
	return f
}

func (f *faultInjector) setMode(m faultMode) {
	f.mu.Lock()
	f.mode = m
	f.mu.Unlock()
}

func (f *faultInjector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	mode := f.mode
	if mode != healthy && f.attempt(r) {
		f.starts = append(f.starts, time.Now())
	}
	fault := "pass"
	switch mode {
	case flaky:
		fault = []string{"drop", "stall", "500", "503", "429", "slow"}[f.rng.IntN(6)]
	case stalled:
		if f.stallIf(r) {
			fault = "stall"
		}
	}
	slow := time.Duration(200+f.rng.IntN(400)) * time.Millisecond
	f.faults[fault]++
	f.mu.Unlock()

	switch fault {
	case "pass":
		f.next.ServeHTTP(w, r)
	case "drop":
		// The connection closes before any reply, as a crashed proxy's.
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	case "stall":
		f.stall(w, r)
	case "slow":
		select {
		case <-time.After(slow):
		case <-r.Context().Done():
			return
		}
		http.Error(w, "slow and then unavailable", http.StatusServiceUnavailable)
	case "429":
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many requests", http.StatusTooManyRequests)
	case "500":
		http.Error(w, "internal error", http.StatusInternalServerError)
	case "503":
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	}
}

// stall sends the status, the headers and half the body of the real
// answer, then nothing, until the client gives up.
func (f *faultInjector) stall(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	f.next.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(rec.Code)
	w.Write(body[:len(body)/2])
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush()
	}
	start := time.Now()
	f.mu.Lock()
	f.holding++
	f.mu.Unlock()
	select {
	case <-r.Context().Done():
	case <-f.stop:
	}
	f.mu.Lock()
	f.holding--
	f.held = append(f.held, time.Since(start))
	f.mu.Unlock()
}

func (f *faultInjector) stalledNow() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.holding
}

// takeStarts returns the attempt starts recorded so far and forgets them.
func (f *faultInjector) takeStarts() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.starts
	f.starts = nil
	return s
}

// faultCounts returns how many requests met each fault so far.
func (f *faultInjector) faultCounts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.faults)
}

func (f *faultInjector) heldTimes() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.held...)
}

// faultyOrigin is an origin a fault injector can stand in front of.
type faultyOrigin struct {
	kind string
	new  func(t testing.TB) (origin, *faultInjector)
	// perAttempt bounds the requests one sync attempt makes to the origin
	// while every request fails: net/http resends a GET once on a dropped
	// keep-alive connection, the S3 SDK retries once itself.
	perAttempt int
	// immediateRetryOnly is true when a second request of one attempt can
	// only be net/http's immediate resend (not a delayed SDK retry).
	immediateRetryOnly bool
}

func isS3List(r *http.Request) bool {
	return r.Method == http.MethodGet && r.URL.Query().Has("list-type")
}

func isS3Get(r *http.Request) bool {
	return r.Method == http.MethodGet && !r.URL.Query().Has("list-type") && strings.Count(strings.Trim(r.URL.Path, "/"), "/") >= 1
}

func isGitRefs(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/info/refs") }

func isGitPack(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-upload-pack")
}

func anyRequest(*http.Request) bool { return true }

// faultyOrigins are the network sources, each behind an injector.
var faultyOrigins = []faultyOrigin{
	{"http", func(t testing.TB) (origin, *faultInjector) {
		o := newTarOrigin(t)
		return o, injectFaults(t, &o.frontable, http.HandlerFunc(o.serve), anyRequest, anyRequest)
	}, 2, true},
	{"s3", func(t testing.TB) (origin, *faultInjector) {
		o := newS3Origin(t)
		return o, injectFaults(t, &o.frontable, o.direct, isS3List, isS3Get)
	}, 2, false},
	{"git", func(t testing.TB) (origin, *faultInjector) {
		o := newGitOrigin(t)
		return o, injectFaults(t, &o.frontable, o.handler, isGitRefs, isGitPack)
	}, 2, true},
}

// groupAttempts merges request times closer than within into one.
func groupAttempts(starts []time.Time, within time.Duration) []time.Time {
	var out []time.Time
	for _, s := range starts {
		if len(out) > 0 && s.Sub(out[len(out)-1]) < within {
			continue
		}
		out = append(out, s)
	}
	return out
}

// Backoff as the sync loop sets it up (sync.retryInitial, the cenkalti
// defaults it keeps: multiplier 1.5, randomization 0.5), capped at
// --period.
const (
	backoffInitial = time.Second
	backoffFactor  = 1.5
	backoffJitter  = 0.5
)

// backoffStep is the k-th wait's nominal value (k from 0).
func backoffStep(k int, period time.Duration) time.Duration {
	return min(time.Duration(float64(backoffInitial)*math.Pow(backoffFactor, float64(k))), period)
}

// maxAttempts is how many attempts can fit in d at the shortest waits the
// schedule allows.
func maxAttempts(d, period time.Duration) int {
	n, sum := 1, time.Duration(0)
	for k := 0; ; k++ {
		sum += time.Duration(float64(backoffStep(k, period)) * (1 - backoffJitter))
		if sum > d {
			return n
		}
		n++
	}
}

// TestFlakyOriginKeepsLastGoodRevisionBacksOffAndRecovers puts a proxy
// that fails every request at random (dropped connection, stall mid-body,
// 500, 503, 429, slow then 503) in front of each network origin, after
// the origin has changed: ferry must keep the last good revision, retry on
// the backoff schedule (never faster; jittered; growing), show the
// failures in /status and /metrics, and publish the change once the origin
// is healthy. Then the origin stalls mid-body: --timeout must cut it.
func TestFlakyOriginKeepsLastGoodRevisionBacksOffAndRecovers(t *testing.T) {
	t.Parallel()
	const (
		period  = 2 * time.Second
		timeout = time.Second
		window  = 6 * time.Second
	)
	for _, fo := range faultyOrigins {
		t.Run(fo.kind, func(t *testing.T) {
			t.Parallel()
			o, f := fo.new(t)
			p, link := startAtGen1(t, o, "--period", period.String(), "--timeout", timeout.String())
			// The link moves a moment before /status records the publish.
			testkit.Eventually(t, 5*time.Second, "gen 1 in /status", func() bool { return p.status()["cfg"].Revision != "" })
			good := p.status()["cfg"].Revision

			// The origin changes, and everything in front of it breaks.
			o.set(t, 2, nil)
			f.setMode(flaky)
			f.takeStarts()
			start := time.Now()
			for time.Since(start) < window {
				if g, err := checkGeneration(link); err != nil || g != 1 {
					t.Fatalf("during the outage ROOT/cfg is gen %d, %v; want the last good gen 1", g, err)
				}
				if p.exited() {
					t.Fatalf("ferry exited during the outage: %v\n%s", p.err, tail(p.stderr.String(), 20))
				}
				time.Sleep(50 * time.Millisecond)
			}
			starts := f.takeStarts()
			st := p.status()["cfg"]
			errorsTotal := p.metric("ferry_syncs_total", "source", "cfg", "result", "error")
			consecutive := p.metric("ferry_consecutive_failures", "source", "cfg")
			if st.Revision != good || st.ConsecutiveFailures < 2 || st.LastError == "" || strings.Contains(st.LastError, "\n") {
				t.Errorf("/status during the outage: %+v; want revision %s, >= 2 failures and a one-line last error", st, good)
			}
			if errorsTotal < 2 || consecutive < 2 {
				t.Errorf("/metrics during the outage: ferry_syncs_total{result=\"error\"} %v, ferry_consecutive_failures %v; want >= 2", errorsTotal, consecutive)
			}

			// No retry storm: the origin saw no more attempts than the
			// shortest schedule allows, and none closer than its first step.
			limit := maxAttempts(window, period)
			if len(starts) == 0 || len(starts) > limit*fo.perAttempt {
				t.Errorf("%d requests starting an attempt in %s of outage; the backoff allows at most %d", len(starts), window, limit*fo.perAttempt)
			}
			if fo.immediateRetryOnly {
				// net/http sends a GET again at once when a reused
				// keep-alive connection closes before any reply: that is
				// the same attempt. Attempts are the groups left.
				attempts := groupAttempts(starts, 100*time.Millisecond)
				minGap := time.Duration(float64(backoffInitial)*(1-backoffJitter)) - 50*time.Millisecond
				for i := 1; i < len(attempts); i++ {
					if gap := attempts[i].Sub(attempts[i-1]); gap < minGap {
						t.Errorf("attempts %d and %d only %s apart; the shortest backoff step is %s", i-1, i, gap, minGap)
					}
				}
			}
			checkRetrySchedule(t, p, start, period)

			// The origin heals: the change is published within one backoff
			// step (at most 1.5 periods) plus a fetch.
			f.setMode(healthy)
			healed := time.Now()
			waitForGen(t, time.Duration(1.5*float64(period))+timeout+5*time.Second, link, 2)
			recovered := time.Since(healed)
			testkit.Eventually(t, 5*time.Second, "/status to clear the failures", func() bool {
				st := p.status()["cfg"]
				return st.ConsecutiveFailures == 0 && st.LastError == ""
			})
			if v := p.metric("ferry_consecutive_failures", "source", "cfg"); v != 0 {
				t.Errorf("ferry_consecutive_failures %v after recovery", v)
			}

			// A transfer that stalls mid-body is cut by --timeout, not by
			// the origin, and the last good revision stays.
			o.set(t, 3, nil)
			f.setMode(stalled)
			testkit.Eventually(t, 3*period+5*time.Second, "a sync to time out", func() bool {
				st := p.status()["cfg"]
				return strings.Contains(st.LastError, "timed out") || strings.Contains(st.LastError, "deadline exceeded")
			})
			if g, err := checkGeneration(link); err != nil || g != 2 {
				t.Fatalf("after a stalled transfer ROOT/cfg is gen %d, %v; want gen 2", g, err)
			}
			testkit.Eventually(t, 2*timeout, "the stalled request to be released", func() bool { return f.stalledNow() == 0 })
			held := f.heldTimes()
			for _, h := range held {
				if h > timeout+time.Second {
					t.Errorf("a stalled request was held %s; --timeout %s should have cut it", h, timeout)
				}
			}
			f.setMode(healthy)
			waitForGen(t, time.Duration(1.5*float64(period))+timeout+5*time.Second, link, 3)
			if code, _ := p.term(); code != 0 {
				t.Fatalf("exit %d", code)
			}
			if l := leftovers(p.root); len(l) > 0 {
				t.Errorf("leftovers after the faults: %v", l)
			}
			t.Logf("faults %v; %d attempt requests in %s of outage (limit %d); %.0f failed syncs; recovered %s after the origin healed; stalls held %v",
				f.faultCounts(), len(starts), window, limit*fo.perAttempt, errorsTotal, recovered.Round(time.Millisecond), held)
		})
	}
}

// checkRetrySchedule reads ferry's "sync failed" log records after since:
// each retry_in must lie within the jitter of its backoff step, the steps
// must grow, and the jitter must vary them.
func checkRetrySchedule(t *testing.T, p *ferryProc, since time.Time, period time.Duration) {
	t.Helper()
	var waits []time.Duration
	for _, r := range p.logs() {
		if r.str("msg") != "sync failed" {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, r.str("time"))
		if err != nil || at.Before(since.Add(-10*time.Millisecond)) {
			continue
		}
		// Durations are written as Go writes them, in both formats.
		d, err := time.ParseDuration(r.str("retry_in"))
		if err != nil {
			t.Fatalf("sync failed record without a readable retry_in: %v: %v", r, err)
		}
		if e := r.str("error"); e == "" || strings.Contains(e, "\n") {
			t.Errorf("sync failed record with an empty or multi-line error: %q", e)
		}
		waits = append(waits, d)
	}
	if len(waits) < 2 {
		t.Fatalf("only %d failed attempts logged during the outage", len(waits))
	}
	// The first failure of the outage may follow earlier failures only if
	// they were not reset by a success; here the outage follows a success.
	ratios := map[string]bool{}
	for k, d := range waits {
		step := backoffStep(k, period)
		lo := time.Duration(float64(step)*(1-backoffJitter)) - 5*time.Millisecond
		hi := time.Duration(float64(step)*(1+backoffJitter)) + 5*time.Millisecond
		if d < lo || d > hi {
			t.Errorf("retry %d waits %s; the schedule says %s +-50%%", k, d, step)
		}
		ratios[fmt.Sprintf("%.2f", float64(d)/float64(step))] = true
	}
	if len(waits) >= 3 && len(ratios) == 1 {
		t.Errorf("retry waits %v are not jittered", waits)
	}
	t.Logf("retry waits during the outage: %v", waits)
}

// TestSIGTERMDuringASyncExitsAtOnceAndLeavesNothing stalls the origin in
// the middle of a body (S3 and git: while a revision is being staged;
// HTTP: while the download is spooled), then sends SIGTERM: ferry exits 0
// within 2 seconds, removes what it had started, and leaves the link as it
// was.
func TestSIGTERMDuringASyncExitsAtOnceAndLeavesNothing(t *testing.T) {
	t.Parallel()
	for _, fo := range faultyOrigins {
		t.Run(fo.kind, func(t *testing.T) {
			t.Parallel()
			o, f := fo.new(t)
			p, link := startAtGen1(t, o, "--period", "1h", "--timeout", "1m")
			before, _ := os.Readlink(link)

			o.set(t, 2, nil)
			f.setMode(stalled)
			if code := httpPost("http://" + p.addr + "/sync"); code != http.StatusAccepted {
				t.Fatalf("POST /sync: %d", code)
			}
			testkit.Eventually(t, 10*time.Second, "a transfer stalled mid-body", func() bool { return f.stalledNow() > 0 })
			if fo.kind == "s3" {
				// Objects stream straight into the staging tree.
				testkit.Eventually(t, 5*time.Second, "a staging tree", func() bool { return len(leftovers(p.root)) > 0 })
			}
			inFlight := leftovers(p.root)

			code, took := p.term()
			if code != 0 || took > 2*time.Second {
				t.Fatalf("SIGTERM mid-sync: exit %d after %s, want 0 within 2s\n%s", code, took, tail(p.stderr.String(), 20))
			}
			if l := leftovers(p.root); len(l) > 0 {
				t.Fatalf("left after SIGTERM: %v", l)
			}
			after, _ := os.Readlink(link)
			if g, err := checkGeneration(link); after != before || err != nil || g != 1 {
				t.Fatalf("link moved or broke: %s -> %s, gen %d, %v", before, after, g, err)
			}
			t.Logf("exit 0 after %s; in flight at SIGTERM: %d leftovers, all removed", took.Round(time.Millisecond), len(inFlight))
		})
	}
}
