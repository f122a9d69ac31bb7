package signal

import (
	"sync"
	"time"
)

// Result is how telling the application of one source's changes through
// one target went last: what a status page shows. It holds no secret: the
// target and the error are as logs show them.
type Result struct {
	// Target names the way of telling as logs and metric labels do: a
	// redacted URL, "exec:PROGRAM", "process:NAME", "touch:PATH".
	Target string
	Source string
	// Revision is the revision told of; "" while Target has been told of
	// no change of Source yet (Outcome is "" too).
	Revision string
	// Outcome is "ok", "retry" (failed, to be tried again) or "failed"
	// (given up, or refused).
	Outcome string
	Time    time.Time
	// Err is the last attempt's failure; "" after "ok".
	Err string
}

// results keeps the last outcome of each target for each source. Every
// way of telling reports to it beside its counter (metrics.last).
type results struct {
	mu      sync.Mutex
	targets []string // in the order they were configured
	last    map[resultKey]Result
}

type resultKey struct{ target, source string }

// add names a target, so that Results shows it before its first outcome.
func (r *results) add(target string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.targets {
		if t == target {
			return
		}
	}
	r.targets = append(r.targets, target)
}

// note records how telling target of cs went, for each of their sources;
// err is nil for ok.
func (r *results) note(target string, cs Changes, outcome string, err error) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[resultKey]Result{}
	}
	for _, c := range cs {
		res := Result{Target: target, Source: c.Source, Revision: c.Revision, Outcome: outcome, Time: now}
		if err != nil {
			res.Err = err.Error()
		}
		r.last[resultKey{target, c.Source}] = res
	}
}

// of returns the last outcome of every target for source, in the order
// the targets were configured; a target not told of source yet has a
// Result with only Target and Source.
func (r *results) of(source string) []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Result, 0, len(r.targets))
	for _, t := range r.targets {
		res, ok := r.last[resultKey{t, source}]
		if !ok {
			res = Result{Target: t, Source: source}
		}
		out = append(out, res)
	}
	return out
}

// Results says how telling the application of source's changes went
// last, per target: for a status page. Notifiers that tell nobody return
// none.
func (n *Notifiers) Results(source string) []Result {
	if n.results == nil {
		return nil
	}
	return n.results.of(source)
}
