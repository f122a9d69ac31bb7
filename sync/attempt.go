package sync

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/signal"
)

// syncOnce fetches one source, publishes what changed, and tells the
// notifiers when a revision was replaced. What is on disk is checked
// first, and repaired: a link deleted or moved is linked again, a tree
// damaged is fetched and published again, whether or not the origin moved.
func (s *Syncer) syncOnce(ctx context.Context, src *source) error {
	m := s.round.join(src.Name)
	defer m.leave()
	s.rollBack(ctx, src, m)
	start := time.Now()
	src.mu.Lock()
	src.lastAttempt = start
	prev, prevOrigin := src.revision, src.origin
	src.mu.Unlock()

	base, repairing, err := s.repair(ctx, src, prev, start)
	if err != nil {
		s.metrics.sync(src.Name, "error", time.Since(start))
		s.finish(src, prev, src.originNow(), err)
		return err
	}
	rev, stats, err := s.fetch(ctx, src, base, prev)
	held := errors.Is(err, errHeld) || errors.Is(err, errWaiting)
	if held {
		// What is published stays, even a damaged tree fetch could not
		// replace (base "").
		rev, err = prev, nil
	}
	result := "unchanged"
	switch {
	case IsRejected(err):
		result = "rejected"
	case err != nil:
		result = "error"
	case held:
		// The origin still holds the revision refused earlier, or one
		// waiting for its time: nothing to do, and nothing repaired.
	case rev != prev:
		result = "published"
	case base != prev:
		result = "repaired"
	}
	s.metrics.sync(src.Name, result, time.Since(start))
	s.metrics.bytes(src.Name, stats.BytesWritten)
	s.noteTrust(src, err)
	origin := src.originNow()
	if !held {
		origin = s.origin(src)
	}
	s.finish(src, rev, origin, err)
	if result != "published" && result != "repaired" {
		return err
	}
	if result == "published" {
		s.metrics.revision(src.Name, prev, rev)
		src.mu.Lock()
		src.previous, src.previousOrigin = prev, prevOrigin
		src.mu.Unlock()
	} else {
		src.setVerified(time.Now())
	}
	if repairing {
		s.metrics.repair(src.Name)
		src.repaired()
	}
	attrs := []any{"revision", rev, "previous", prev,
		"files", stats.Files, "bytes", stats.Bytes, "reused", stats.Reused, "reread", stats.Reread, "damaged", stats.Damaged, "ignored", stats.Ignored,
		"bytes_written", stats.BytesWritten, "duration", time.Since(start).Round(time.Millisecond)}
	if origin != "" && origin != rev {
		attrs = append(attrs, "origin_revision", origin)
	}
	src.log.Info(result, attrs...)
	s.record(Event{Source: src.Name, Kind: result, Revision: rev, Previous: prev})
	// The app is told of a new revision, and of a tree put back after it
	// was damaged (what it read may have been wrong); not of a revision
	// published again only to record its manifest.
	c := signal.Change{Source: src.Name, Revision: rev, Previous: prev, OriginRevision: origin, Path: s.cfg.Store.LinkPath(src.Name)}
	switch {
	case prev != "" && (result == "published" || repairing):
		m.publish(c, false)
	case prev == "" && result == "published":
		m.publish(c, true)
	}
	// Housekeeping comes after the app was told: it is not on the path
	// from a change to the app.
	if err := s.cfg.Store.GC(src.Name, s.cfg.Keep); err != nil {
		src.log.Warn("removing old revisions failed", "error", err)
	}
	if err := s.cfg.Store.Seal(src.Name, rev); errors.Is(err, ErrDamaged) {
		// Changed between its publish and now: the next poll checks the
		// whole tree and publishes it again.
		src.log.Warn("published revision damaged on disk", "revision", rev, "reason", err)
		src.setVerified(time.Time{})
	} else if err != nil {
		src.log.Warn("recording the published files failed; the next publish reads them again", "error", err)
	}
	return nil
}

// repair checks what is published for src at rev and mends what it can
// here. It returns the revision the fetch may reuse files from ("" when
// nothing on disk is to be trusted), whether that fetch repairs a damaged
// tree, and an error when the damage is not ferry's to mend.
func (s *Syncer) repair(ctx context.Context, src *source, rev string, now time.Time) (string, bool, error) {
	if rev == "" {
		return "", false, nil
	}
	damage := s.cfg.Store.Check(src.Name, rev)
	if damage == nil {
		src.mu.Lock()
		due := s.cfg.VerifyPeriod > 0 && now.Sub(src.verified) >= s.cfg.VerifyPeriod
		src.mu.Unlock()
		if !due {
			return rev, false, nil
		}
		damage = s.cfg.Store.Verify(ctx, src.Name, rev)
		src.setVerified(now)
		if damage == nil || ctx.Err() != nil {
			return rev, false, nil
		}
	}
	switch {
	case errors.Is(damage, ErrLinkTaken):
		return "", false, damage
	case errors.Is(damage, ErrLinkGone):
		if err := s.cfg.Store.Relink(src.Name, rev); err != nil {
			return "", false, err
		}
		src.log.Warn("the link of the published revision was missing or moved; linked again", "revision", rev, "reason", damage)
		s.metrics.repair(src.Name)
		return rev, false, nil
	case errors.Is(damage, ErrUnverifiable):
		src.log.Info("publishing the revision again to record what it holds", "revision", rev, "reason", damage)
		return "", false, nil
	}
	if src.noteDamage() {
		src.log.Warn("published revision damaged on disk; publishing it again", "revision", rev, "reason", damage)
	}
	return "", true, nil
}

// origin asks the source what the origin calls the revision it returned.
func (s *Syncer) origin(src *source) string {
	if r, ok := src.Backend.(fetch.OriginReporter); ok {
		return r.OriginRevision()
	}
	return ""
}

// errHeld is fetch's answer when the origin still holds the revision
// the source refused last: the attempt is over, quietly.
var errHeld = errors.New("the origin still holds the rejected revision")

// fetch runs the source against a fresh stage, reusing files from base,
// and publishes the result when the revision differs from base, after the
// source's Validator accepted it (unless it is the published revision,
// published, being put back). Staging is always removed, but for a
// revision kept pending (adopt.go).
//
// While a revision refused earlier is remembered, the source is asked
// whether the origin still holds that one rather than base: a source
// answers "unchanged" cheaply (ls-remote, a 304), so a refused revision is
// not downloaded again on every poll. It is then errHeld. A pending
// revision is asked about the same way: errWaiting until its time, then
// its stage is published; dropped when the origin moved on.
func (s *Syncer) fetch(ctx context.Context, src *source, base, published string) (string, Stats, error) {
	fctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	stage := s.cfg.Store.begin(src.Name, base, src.log)
	stage.ignore = src.ignore
	kept := false
	defer func() {
		if !kept {
			stage.Discard()
		}
	}()
	adoptNow := src.takeAdoptNow()
	since := base
	alias := src.aliasOf(base)
	if alias != "" {
		since = alias
	}
	rejected := src.rejectedRevision()
	if rejected != "" {
		since = rejected
	}
	pending := src.pendingNow()
	if pending != nil {
		since = pending.revision
	}
	rev, err := src.Backend.Fetch(fctx, since, stage)
	if err == nil && alias != "" && rev == alias && since == alias {
		rev = base // still only the ignored change
	}
	stats := stage.Stats()
	if err == nil && rev == "" {
		// A source must name what it found; an empty answer with no error
		// (an origin answering 304 to an unconditional request) must not
		// pass for success.
		err = errors.New("the source returned no revision")
	}
	if err == nil && pending != nil {
		if rev == pending.revision {
			// Nothing intact published (base "") cannot wait.
			if !adoptNow && base != "" && time.Now().Before(pending.adoptAt) {
				return base, stats, errWaiting
			}
			stats, err := s.adopt(src, s.takePending(src))
			if err != nil {
				// Staged again by the next attempt, and published then.
				src.mu.Lock()
				src.adoptNow = true
				src.mu.Unlock()
				return base, stats, err
			}
			return rev, stats, nil
		}
		s.dropPending(src, "the origin moved on before adoption; the pending revision is dropped", "origin_holds", rev)
	}
	if err == nil && rejected != "" {
		if rev == rejected {
			src.log.Debug("the origin still holds the rejected revision", "revision", rev)
			return base, stats, errHeld
		}
		src.forgetRejection()
		src.log.Info("the origin moved on from the rejected revision", "rejected", rejected, "revision", rev)
	}
	if err == nil && rev != base && src.ignore != nil && base != "" && base == published {
		same, serr := stage.sameAs(base)
		if err = serr; same {
			src.log.Info("only ignored entries changed; nothing to publish", "revision", base, "source_revision", rev, "ignored", stats.Ignored)
			src.setAlias(rev, base)
			return base, stats, nil
		}
	}
	if err == nil && rev != base {
		if delay := s.window(src, base, rev, adoptNow); delay > 0 {
			if err = s.check(fctx, src, stage, rev, published); err == nil {
				s.hold(src, rev, stage, delay)
				kept = true
				return base, stats, errWaiting
			}
		} else {
			err = s.publish(fctx, src, stage, rev, published)
		}
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("timed out after %s: %w", s.cfg.Timeout, err)
		}
		return base, stats, err
	}
	return rev, stats, nil
}

// publish checks the complete staged tree of rev and publishes it.
func (s *Syncer) publish(ctx context.Context, src *source, stage *Stage, rev, published string) error {
	if err := s.check(ctx, src, stage, rev, published); err != nil {
		return err
	}
	return stage.Publish(rev)
}

// check runs the source's Validator on the complete staged tree of rev.
// The published revision, put back after damage, is not checked again: it
// was accepted (or published before checks were configured).
func (s *Syncer) check(ctx context.Context, src *source, stage *Stage, rev, published string) error {
	if src.Validator == nil || rev == published {
		return nil
	}
	dir, err := stage.complete()
	if err != nil {
		return err
	}
	return s.validate(ctx, src, rev, dir)
}

func (src *source) failureCount() int {
	src.mu.Lock()
	defer src.mu.Unlock()
	return src.failures
}

// finish records an attempt's outcome, and the event it makes when the
// source starts or stops failing.
func (s *Syncer) finish(src *source, rev, origin string, err error) {
	if e, ok := src.finish(rev, origin, err); ok {
		s.record(e)
	}
}

// finish records an attempt's outcome in one step, so /status never shows
// a new revision beside an old error. It returns the event a change of
// health makes, once per outage of a source with a published revision:
// "failing" at the first failure (but a rejection, which has an event of
// its own), "recovered" at the success after it; a status page learns of
// both without polling. Before the first publish, /readyz tells.
func (src *source) finish(rev, origin string, err error) (Event, bool) {
	src.mu.Lock()
	defer src.mu.Unlock()
	if err != nil {
		src.failures++
		src.lastError = err.Error()
		if src.failing || src.revision == "" || IsRejected(err) {
			return Event{}, false
		}
		src.failing = true
		return Event{Source: src.Name, Kind: "failing", Revision: src.revision, Error: src.lastError}, true
	}
	if src.failures > 0 {
		src.log.Info("sync recovered", "failures", src.failures)
	}
	now := time.Now()
	if rev != src.revision {
		src.revision, src.published = rev, now
	}
	src.origin = origin
	src.failures, src.lastError, src.lastSuccess = 0, "", now
	if !src.failing {
		return Event{}, false
	}
	src.failing = false
	return Event{Source: src.Name, Kind: "recovered", Revision: rev}, true
}

// publishedAt is when the current revision was published.
func (src *source) publishedAt() time.Time {
	src.mu.Lock()
	defer src.mu.Unlock()
	return src.published
}

func (src *source) setVerified(t time.Time) {
	src.mu.Lock()
	src.verified = t
	src.mu.Unlock()
}

// noteDamage marks the source's tree as damaged; it reports whether this
// is news, so a damage that takes several attempts to repair is warned
// about once.
func (src *source) noteDamage() bool {
	src.mu.Lock()
	defer src.mu.Unlock()
	news := !src.damaged
	src.damaged = true
	return news
}

// repaired ends a damage episode.
func (src *source) repaired() {
	src.mu.Lock()
	src.damaged = false
	src.mu.Unlock()
}

// originNow returns the origin revision recorded last.
func (src *source) originNow() string {
	src.mu.Lock()
	defer src.mu.Unlock()
	return src.origin
}
