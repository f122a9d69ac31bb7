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
// hook): Notify puts changes in each target's mailbox, run delivers. The
// changes handed over together are delivered together; for each target
// and source only the newest change is delivered; each delivery is retried
// with its own backoff, and may end as a Refusal of each of its changes.
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

// target is one place changes are delivered, with its mailbox: the
// batches handed to Notify, in order of arrival.
type target struct {
	name string    // as logs and metric labels show it
	attr slog.Attr // names it in a log line: url=..., command=...
	// send delivers changes once; nil means delivered. An error that
	// retryable says is final ends the delivery at once.
	send func(ctx context.Context, cs Changes) error

	mu    sync.Mutex
	inbox []Changes
	wake  chan struct{} // capacity 1: "the inbox changed"
}

// add makes a target of the queue and shows its metric series at 0.
func (q *queue) add(name string, attr slog.Attr, send func(context.Context, Changes) error) *target {
	t := &target{name: name, attr: attr, send: send, wake: make(chan struct{}, 1)}
	q.metrics.initTarget(t.name, resultOK, resultRetry, resultFailed, resultDropped)
	q.targets = append(q.targets, t)
	return t
}

// Notify queues cs for every target, to be delivered together. A change
// still pending or being retried for one of their sources is dropped in
// favour of theirs, and the other changes delivered with it join cs.
func (q *queue) Notify(cs Changes) {
	for _, t := range q.targets {
		t.put(cs)
	}
}

func (t *target) put(cs Changes) {
	t.mu.Lock()
	t.inbox = append(t.inbox, cs)
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default: // a wake-up is already pending; it will see cs
	}
}

// take empties the inbox, oldest arrival first.
func (t *target) take() []Changes {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.inbox
	t.inbox = nil
	return out
}

// dropped counts and logs each change of old that one of newer replaces.
func (q *queue) dropped(t *target, old, newer Changes) {
	for _, c := range old {
		for _, n := range newer {
			if n.Source == c.Source {
				q.metrics.inc(t.name, resultDropped)
				q.log.Debug("notify superseded by a newer revision", t.attr, "source", c.Source,
					"revision", c.Revision, "newer", n.Revision)
			}
		}
	}
}

// run delivers queued changes, one worker per target, until ctx is done.
func (q *queue) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, t := range q.targets {
		wg.Go(func() { q.work(ctx, t) })
	}
	wg.Wait()
}

// job is changes being delivered together to one target, with their own
// backoff.
type job struct {
	cs       Changes
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

// work delivers to one target. Each source is in at most one job; jobs
// of different sources interleave, so one source in backoff does not hold
// up another. Changes that name a source of a waiting job replace its
// change of that source and take the rest of it along, at once, even in
// the middle of a long wait: the newest of each source is delivered, and
// what was to be told together still is.
func (q *queue) work(ctx context.Context, t *target) {
	var jobs []*job
	var seq uint64
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		for _, cs := range t.take() {
			jobs = slices.DeleteFunc(jobs, func(old *job) bool {
				if !old.cs.overlaps(cs) {
					return false
				}
				q.dropped(t, old.cs, cs)
				cs = merge(cs, old.cs)
				return true
			})
			seq++
			jobs = append(jobs, q.newJob(cs, seq))
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
			jobs = slices.DeleteFunc(jobs, func(o *job) bool { return o == j })
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// logAttrs name the target and the changes of j in a log line, then more.
func (j *job) logAttrs(t *target, more ...any) []any {
	return append(append([]any{t.attr}, j.cs.logAttrs()...), more...)
}

func (q *queue) newJob(cs Changes, seq uint64) *job {
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(q.initial),
		backoff.WithMaxInterval(q.maxIvl),
		// Set explicitly: the library's default gives up after 15 minutes;
		// its 0 is ours, never.
		backoff.WithMaxElapsedTime(q.maxElapsed),
	)
	return &job{cs: cs, seq: seq, bo: bo, due: time.Now()}
}

func nextJob(jobs []*job) *job {
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
	err := t.send(ctx, j.cs)
	if err == nil {
		q.log.Info("notified application", j.logAttrs(t, "attempts", j.attempts)...)
		q.metrics.observe(t.name, time.Since(start).Seconds())
		q.metrics.outcome(t.name, j.cs, resultOK, nil)
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
	q.log.Log(ctx, level, "notify failed, will retry", j.logAttrs(t,
		"attempts", j.attempts, "failing_for", time.Since(j.first).Round(time.Millisecond), "retry_in", wait, "error", err)...)
	q.metrics.outcome(t.name, j.cs, resultRetry, err)
	return false
}

// refuse tells Refused, when set, that t refused each of j's changes for
// good.
func (q *queue) refuse(t *target, j *job, err error) {
	if q.refused == nil {
		return
	}
	for _, c := range j.cs {
		q.refused(Refusal{Change: c, Target: t.name, Err: err})
	}
}

func (q *queue) failed(t *target, j *job, err error, msg string) {
	q.log.Error(msg, j.logAttrs(t, "attempts", j.attempts, "error", err)...)
	q.metrics.outcome(t.name, j.cs, resultFailed, err)
}
