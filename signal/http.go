package signal

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Run finds the HTTP worker through this interface: check it at compile time.
var _ runner = (*httpNotifier)(nil)

// httpNotifier sends each change to the application's reload endpoints.
// Notify queues; run delivers. For each URL and source only the newest
// change is delivered.
type httpNotifier struct {
	method      string
	maxElapsed  time.Duration
	initial     time.Duration
	maxIvl      time.Duration
	refused     func(Refusal)
	rejectAfter time.Duration
	client      *http.Client
	log         *slog.Logger
	metrics     *metrics
	targets     []*target
}

// target is one URL with its mailbox: at most one pending change per
// source, the newest, in order of arrival.
type target struct {
	url  string // as given; may hold credentials, never logged
	name string // redacted, for logs and metric labels
	// secrets are the values of the URL's query, as written and decoded:
	// none is shown, even where an error or a reply repeats it.
	secrets []string

	mu    sync.Mutex
	inbox []Change
	wake  chan struct{} // capacity 1: "the inbox changed"
}

// newHTTP returns the notifier of o's URLs, which o.Validate accepted.
func newHTTP(o Options, m *metrics) *httpNotifier {
	h := &httpNotifier{
		method:      strings.ToUpper(o.Method),
		maxElapsed:  o.MaxElapsed,
		refused:     o.Refused,
		rejectAfter: o.RejectAfter,
		// An own transport, so that run can close its idle connections
		// (and their goroutines) without touching anyone else's.
		client:  &http.Client{Timeout: o.Timeout, Transport: http.DefaultTransport.(*http.Transport).Clone()},
		log:     o.Logger,
		metrics: m,
	}
	h.initial, h.maxIvl = o.intervals()
	for _, raw := range o.URLs {
		u, _ := url.Parse(raw)
		t := &target{url: raw, name: displayName(u), secrets: queryValues(u.RawQuery), wake: make(chan struct{}, 1)}
		m.initTarget(t.name, resultOK, resultRetry, resultFailed, resultDropped)
		h.targets = append(h.targets, t)
	}
	return h
}

// Notify queues c for every URL. A change still pending or being retried
// for the same source is dropped in favour of c.
func (h *httpNotifier) Notify(c Change) {
	for _, t := range h.targets {
		if old, replaced := t.put(c); replaced {
			h.dropped(t, old, c)
		}
	}
}

func (t *target) put(c Change) (old Change, replaced bool) {
	t.mu.Lock()
	if i := slices.IndexFunc(t.inbox, func(p Change) bool { return p.Source == c.Source }); i >= 0 {
		old, replaced = t.inbox[i], true
		t.inbox[i] = c
	} else {
		t.inbox = append(t.inbox, c)
	}
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default: // a wake-up is already pending; it will see c
	}
	return old, replaced
}

// take empties the inbox, oldest arrival first.
func (t *target) take() []Change {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.inbox
	t.inbox = nil
	return out
}

func (h *httpNotifier) dropped(t *target, old, c Change) {
	h.metrics.inc(t.name, resultDropped)
	h.log.Debug("notify superseded by a newer revision", "url", t.name, "source", c.Source,
		"revision", old.Revision, "newer", c.Revision)
}

// run delivers queued changes, one worker per URL, until ctx is done.
func (h *httpNotifier) run(ctx context.Context) {
	defer h.client.CloseIdleConnections()
	var wg sync.WaitGroup
	for _, t := range h.targets {
		wg.Go(func() { h.work(ctx, t) })
	}
	wg.Wait()
}

// job is one change being delivered to one target, with its own backoff.
type job struct {
	c        Change
	seq      uint64 // arrival order, to break ties between due jobs
	bo       *backoff.ExponentialBackOff
	attempts int
	due      time.Time
	first    time.Time // the first attempt, for RejectAfter
}

// work delivers to one target. Each source has at most one job; jobs of
// different sources interleave, so one source in backoff does not hold up
// another, and a newer change replaces its source's job at once, even in
// the middle of a long wait.
func (h *httpNotifier) work(ctx context.Context, t *target) {
	jobs := make(map[string]*job)
	var seq uint64
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		for _, c := range t.take() {
			if old, ok := jobs[c.Source]; ok {
				h.dropped(t, old.c, c)
			}
			seq++
			jobs[c.Source] = h.newJob(c, seq)
		}
		j := nextJob(jobs)
		if j == nil {
			select {
			case <-ctx.Done():
				return
			case <-t.wake:
				continue
			}
		}
		if d := time.Until(j.due); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-t.wake:
				timer.Stop()
			case <-timer.C:
			}
			continue // look at the inbox again before sending anything
		}
		if h.attempt(ctx, t, j) {
			delete(jobs, j.c.Source)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

func (h *httpNotifier) newJob(c Change, seq uint64) *job {
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(h.initial),
		backoff.WithMaxInterval(h.maxIvl),
		// Set explicitly: the library's default gives up after 15 minutes;
		// its 0 is ours, never.
		backoff.WithMaxElapsedTime(h.maxElapsed),
	)
	return &job{c: c, seq: seq, bo: bo, due: time.Now()}
}

func nextJob(jobs map[string]*job) *job {
	var best *job
	for _, j := range jobs {
		if best == nil || j.due.Before(best.due) || (j.due.Equal(best.due) && j.seq < best.seq) {
			best = j
		}
	}
	return best
}

// attempt sends j once and reports whether j is finished (delivered or
// given up). Otherwise it schedules the next attempt.
func (h *httpNotifier) attempt(ctx context.Context, t *target, j *job) (finished bool) {
	j.attempts++
	start := time.Now()
	if j.first.IsZero() {
		j.first = start
	}
	err := h.send(ctx, t, j.c)
	if err == nil {
		h.log.Info("notified application", "url", t.name, "source", j.c.Source,
			"revision", j.c.Revision, "attempts", j.attempts)
		// The counter moves last: whoever sees it can rely on the rest.
		h.metrics.observe(t.name, time.Since(start).Seconds())
		h.metrics.inc(t.name, resultOK)
		return true
	}
	if ctx.Err() != nil {
		return false // shutting down: neither a failure nor a retry
	}
	if !retryable(err) {
		h.failed(t, j, err, "notify refused")
		h.refuse(t, j, err)
		return true
	}
	if h.refused != nil && h.rejectAfter > 0 && time.Since(j.first) >= h.rejectAfter {
		h.failed(t, j, err, "notify still failing after its retries: taken as the app refusing the revision")
		h.refuse(t, j, err)
		return true
	}
	wait := j.bo.NextBackOff()
	if wait == backoff.Stop {
		h.failed(t, j, err, "notify gave up")
		return true
	}
	var se *statusError
	if errors.As(err, &se) && se.RetryAfter > wait {
		wait = min(se.RetryAfter, h.maxIvl)
	}
	j.due = time.Now().Add(wait)
	h.log.Debug("notify failed, will retry", "url", t.name, "source", j.c.Source,
		"revision", j.c.Revision, "attempts", j.attempts, "wait", wait, "error", err)
	h.metrics.inc(t.name, resultRetry)
	return false
}

// refuse tells Refused, when set, that t refused j's change for good.
func (h *httpNotifier) refuse(t *target, j *job, err error) {
	if h.refused != nil {
		h.refused(Refusal{Change: j.c, Target: t.name, Err: err})
	}
}

func (h *httpNotifier) failed(t *target, j *job, err error, msg string) {
	h.log.Error(msg, "url", t.name, "source", j.c.Source, "revision", j.c.Revision,
		"attempts", j.attempts, "error", err)
	h.metrics.inc(t.name, resultFailed)
}
