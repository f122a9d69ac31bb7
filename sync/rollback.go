package sync

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferrysync/ferry/signal"
)

// ReasonApp is the reason of a revision the application refused: the
// reason label of ferry_rejected_total.
const ReasonApp = "app"

// appError is the application's refusal of a revision, as a Rejection.
type appError struct {
	target string
	err    error
}

func (e *appError) Error() string  { return fmt.Sprintf("app: %s: %v", e.target, e.err) }
func (e *appError) Unwrap() error  { return e.err }
func (e *appError) Reason() string { return ReasonApp }

var _ Rejection = (*appError)(nil)

// Refused hands the application's refusal of a change to the loop of its
// source, which rolls it back on its next attempt, started now, when
// Rollout.RollbackOnReject is set. It never blocks: a notifier calls it
// from its delivery goroutine. When refusals pile up before the loop
// takes them, the newest wins; a refusal of a revision that is no longer
// the published one is dropped there.
func (s *Syncer) Refused(r signal.Refusal) {
	for _, src := range s.sources {
		if src.Name != r.Change.Source {
			continue
		}
		src.mu.Lock()
		src.refusal = &r
		src.mu.Unlock()
		select {
		case src.trigger <- struct{}{}:
		default:
		}
	}
}

// rollBack acts on the refusal waiting for src, if any: the refused
// revision, when it is still the published one, is replaced by the one it
// replaced, after a deep check of that tree; the app is told; and the
// refused revision is recorded as rejected, so that the poll that follows
// holds it back until the origin moves on. It runs in src's loop, in the
// attempt m, so no publish runs beside it.
func (s *Syncer) rollBack(ctx context.Context, src *source, m *member) {
	src.mu.Lock()
	r := src.refusal
	src.refusal = nil
	cur, prev, prevOrigin := src.revision, src.previous, src.previousOrigin
	src.mu.Unlock()
	if r == nil || !s.cfg.Rollout.RollbackOnReject {
		return
	}
	rev := r.Change.Revision
	why := &appError{target: r.Target, err: r.Err}
	switch {
	case r.Change.RollbackOf != "":
		// Going back further would be guessing, and never to the revision
		// refused first.
		src.log.Error("the app refused the revision put back too; it stays", "revision", rev,
			"rollback_of", r.Change.RollbackOf, "error", why.Error())
		return
	case rev != cur:
		src.log.Info("the app refused a revision already replaced; nothing to roll back", "revision", rev, "published", cur)
		return
	case prev == "":
		s.recordRejection(src, rev, ReasonApp, why, "revision rejected by the app; no earlier revision on disk to roll back to, it stays")
		return
	}
	if err := s.restore(ctx, src, prev); err != nil {
		s.recordRejection(src, rev, ReasonApp, why, "revision rejected by the app; rolling back failed, it stays", "previous", prev, "rollback_error", err.Error())
		return
	}
	now := time.Now()
	src.mu.Lock()
	src.revision, src.origin, src.published, src.verified = prev, prevOrigin, now, now
	src.previous, src.previousOrigin = "", ""
	src.mu.Unlock()
	s.metrics.revision(src.Name, cur, prev)
	s.metrics.rollbacks.WithLabelValues(src.Name).Inc()
	s.recordRejection(src, rev, ReasonApp, why, "revision rejected by the app, rolled back", "restored", prev)
	s.record(Event{Source: src.Name, Kind: "rolled-back", Revision: prev, Previous: rev, Reason: ReasonApp})
	m.publish(signal.Change{Source: src.Name, Revision: prev, Previous: rev, OriginRevision: prevOrigin, Path: s.cfg.Store.LinkPath(src.Name), RollbackOf: rev}, false)
}

// restore points src's link back at rev, a revision kept on disk, once a
// deep check found its tree as it was published: a tree reused must be
// the one that was checked.
func (s *Syncer) restore(ctx context.Context, src *source, rev string) error {
	if err := s.cfg.Store.Verify(ctx, src.Name, rev); err != nil {
		return fmt.Errorf("revision %s on disk: %w", rev, err)
	}
	return s.cfg.Store.Reinstate(src.Name, rev)
}

// Reinstate points ROOT/NAME back at rev, a revision still on disk, and
// stamps it as published now: GC, which keeps the newest, then keeps it
// beside the next revision, so that one can be rolled back too.
func (s *Store) Reinstate(name, rev string) error {
	if !s.treeThere(name, rev) {
		return fmt.Errorf("%w: the tree of revision %s is missing", ErrTreeDamaged, rev)
	}
	if err := s.stamp(name, rev); err != nil {
		return fmt.Errorf("reinstate %s: %w", rev, err)
	}
	return s.swap(name, rev)
}

// errNoRollback is New's answer to a rollback with nothing kept to roll
// back to.
var errNoRollback = errors.New("sync: rolling back needs Keep of at least 2: the previous revision is what it puts back")
