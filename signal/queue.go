package signal

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Run finds a queue's workers through this interface: check it at compile
// time.
var _ runner = (*queue)(nil)

// queue delivers changes to its targets in the background, the way every
// way of telling that can fail and be retried does (HTTP requests, the exec
// hook): Notify puts a change in each target's mailbox, run delivers. For
// each target and source only the newest change is delivered; each is
// retried with its own backoff, and may end as a Refusal.
type queue struct {
	maxElapsed  time.Duration
	initial     time.Duration
	maxIvl      time.Duration
	refused     func(Refusal)
	rejectAfter time.Duration
	log         *slog.Logger
	metrics     *metrics
	targets     []*target
}

// newQueue returns a queue with o's retry settings and no target yet.
func newQueue(o Options, m *metrics) *queue {
	q := &queue{maxElapsed: o.MaxElapsed, refused: o.Refused, rejectAfter: o.RejectAfter, log: o.Logger, metrics: m}
	q.initial, q.maxIvl = o.intervals()
	return q
}

// target is one place a change is delivered, with its mailbox: at most one
// pending change per source, the newest, in order of arrival.
type target struct {
	name string    // as logs and metric labels show it
	attr slog.Attr // names it in a log line: url=..., command=...
	// send delivers a change once; nil means delivered. An error that
	// retryable says is final ends the change at once.
	send func(ctx context.Context, c Change) error

	mu    sync.Mutex
	inbox []Change
	wake  chan struct{} // capacity 1: "the inbox changed"
}

// add makes a target of the queue and shows its metric series at 0.
func (q *queue) add(name string, attr slog.Attr, send func(context.Context, Change) error) *target {
	t := &target{name: name, attr: attr, send: send, wake: make(chan struct{}, 1)}
	q.metrics.initTarget(t.name, resultOK, resultRetry, resultFailed, resultDropped)
	q.targets = append(q.targets, t)
	return t
}

// Notify queues c for every target. A change still pending or being
// retried for the same source is dropped in favour of c.
func (q *queue) Notify(c Change) {
	for _, t := range q.targets {
		if old, replaced := t.put(c); replaced {
			q.dropped(t, old, c)
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

func (q *queue) dropped(t *target, old, c Change) {
	q.metrics.inc(t.name, resultDropped)
	q.log.Debug("notify superseded by a newer revision", t.attr, "source", c.Source,
		"revision", old.Revision, "newer", c.Revision)
}

// run delivers queued changes, one worker per target, until ctx is done.
func (q *queue) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, t := range q.targets {
		wg.Go(func() { q.work(ctx, t) })
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
	warned   time.Time // the last failure logged at WARN
}

// retryLogEvery bounds the WARN lines of one delivery that keeps failing:
// the first failure, then one per interval, then the outcome.
const retryLogEvery = 30 * time.Second

// work delivers to one target. Each source has at most one job; jobs of
// different sources interleave, so one source in backoff does not hold up
// another, and a newer change replaces its source's job at once, even in
// the middle of a long wait.
func (q *queue) work(ctx context.Context, t *target) {
	jobs := make(map[string]*job)
	var seq uint64
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		for _, c := range t.take() {
			if old, ok := jobs[c.Source]; ok {
				q.dropped(t, old.c, c)
			}
			seq++
			jobs[c.Source] = q.newJob(c, seq)
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
		if q.attempt(ctx, t, j) {
			delete(jobs, j.c.Source)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

func (q *queue) newJob(c Change, seq uint64) *job {
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(q.initial),
		backoff.WithMaxInterval(q.maxIvl),
		// Set explicitly: the library's default gives up after 15 minutes;
		// its 0 is ours, never.
		backoff.WithMaxElapsedTime(q.maxElapsed),
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
func (q *queue) attempt(ctx context.Context, t *target, j *job) (finished bool) {
	j.attempts++
	start := time.Now()
	if j.first.IsZero() {
		j.first = start
	}
	err := t.send(ctx, j.c)
	if err == nil {
		q.log.Info("notified application", t.attr, "source", j.c.Source,
			"revision", j.c.Revision, "attempts", j.attempts)
		q.metrics.last.note(t.name, j.c, resultOK, nil)
		// The counter moves last: whoever sees it can rely on the rest.
		q.metrics.observe(t.name, time.Since(start).Seconds())
		q.metrics.inc(t.name, resultOK)
		return true
	}
	if ctx.Err() != nil {
		return false // shutting down: neither a failure nor a retry
	}
	if !retryable(err) {
		q.failed(t, j, err, "notify refused")
		q.refuse(t, j, err)
		return true
	}
	if q.refused != nil && q.rejectAfter > 0 && time.Since(j.first) >= q.rejectAfter {
		q.failed(t, j, err, "notify still failing after its retries: taken as the app refusing the revision")
		q.refuse(t, j, err)
		return true
	}
	wait := j.bo.NextBackOff()
	if wait == backoff.Stop {
		q.failed(t, j, err, "notify gave up")
		return true
	}
	var se *statusError
	if errors.As(err, &se) && se.RetryAfter > wait {
		wait = min(se.RetryAfter, q.maxIvl)
	}
	j.due = time.Now().Add(wait)
	level := slog.LevelDebug
	if now := time.Now(); now.Sub(j.warned) >= retryLogEvery {
		// Silence at info level until the outcome would hide an app that
		// refuses every reload: say so at once, then now and then.
		level, j.warned = slog.LevelWarn, now
	}
	q.log.Log(ctx, level, "notify failed, will retry", t.attr, "source", j.c.Source,
		"revision", j.c.Revision, "attempts", j.attempts, "failing_for", time.Since(j.first).Round(time.Millisecond), "retry_in", wait, "error", err)
	q.metrics.last.note(t.name, j.c, resultRetry, err)
	q.metrics.inc(t.name, resultRetry)
	return false
}

// refuse tells Refused, when set, that t refused j's change for good.
func (q *queue) refuse(t *target, j *job, err error) {
	if q.refused != nil {
		q.refused(Refusal{Change: j.c, Target: t.name, Err: err})
	}
}

func (q *queue) failed(t *target, j *job, err error, msg string) {
	q.log.Error(msg, t.attr, "source", j.c.Source, "revision", j.c.Revision,
		"attempts", j.attempts, "error", err)
	q.metrics.last.note(t.name, j.c, resultFailed, err)
	q.metrics.inc(t.name, resultFailed)
}
