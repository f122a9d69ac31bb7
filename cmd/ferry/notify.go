package main

import (
	"context"
	"errors"
	gosync "sync"

	"github.com/ferrysync/ferry/signal"
	"github.com/ferrysync/ferry/sync"
)

// sync tells a first publish to what has NotifyFirst: the touch file needs it.
var _ sync.FirstNotifier = (*notifiers)(nil)

// notifiers route each change to the Notifiers of its source, so that a
// change of source A tells only the apps that asked for A. Sources that
// share their options (every source of the command line) share one
// Notifiers, as they always have: one worker per URL, a mailbox per source.
type notifiers struct {
	bySource map[string]*signal.Notifiers
	distinct []*signal.Notifiers
}

// add routes the changes of source to n.
func (r *notifiers) add(source string, n *signal.Notifiers) {
	if r.bySource == nil {
		r.bySource = map[string]*signal.Notifiers{}
	}
	r.bySource[source] = n
	for _, d := range r.distinct {
		if d == n {
			return
		}
	}
	r.distinct = append(r.distinct, n)
}

// Notify hands each Notifiers the changes of its sources, together: those
// of one round that share their options are one notification. A source
// nobody listens to is told to no one.
func (r *notifiers) Notify(cs ...signal.Change) {
	for n, mine := range r.route(cs) {
		n.Notify(mine...)
	}
}

// NotifyFirst hands sources' first publishes to their Notifiers: only a
// touch file takes them (signal.Notifiers.NotifyFirst).
func (r *notifiers) NotifyFirst(cs ...signal.Change) {
	for n, mine := range r.route(cs) {
		n.NotifyFirst(mine...)
	}
}

// route groups cs by the Notifiers of their sources.
func (r *notifiers) route(cs []signal.Change) map[*signal.Notifiers][]signal.Change {
	out := map[*signal.Notifiers][]signal.Change{}
	for _, c := range cs {
		if n := r.bySource[c.Source]; n != nil {
			out[n] = append(out[n], c)
		}
	}
	return out
}

// results says how telling the app of source's changes went, per target,
// for the status page.
func (r *notifiers) results(source string) []signal.Result {
	if n := r.bySource[source]; n != nil {
		return n.Results(source)
	}
	return nil
}

// Run runs every Notifiers until ctx is done; the first to fail stops
// the others, and its error is returned.
func (r *notifiers) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg gosync.WaitGroup
	errs := make([]error, len(r.distinct))
	for i, n := range r.distinct {
		wg.Go(func() {
			if errs[i] = n.Run(ctx); errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
