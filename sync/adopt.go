package sync

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// A new revision under Rollout.Window is staged, checked, and kept staged
// until its adoption time: the polls in between ask the origin whether it
// still holds that revision (the cheap "unchanged" answer), so it is
// downloaded once, and a revision the origin moved on from is dropped
// without ever reaching ROOT/NAME.

// pendingRevision is a new revision this instance waits to adopt.
type pendingRevision struct {
	revision string
	stage    *Stage // complete and checked; published at adoption
	stats    Stats
	seen     time.Time
	adoptAt  time.Time
}

// errWaiting is fetch's answer while the origin still holds the pending
// revision and its time has not come: what is published stays.
var errWaiting = errors.New("a new revision waits for its adoption time")

// adoptDelay is this instance's wait before it adopts rev of source: a
// point in [0, window) drawn from a hash of the three, so that the same
// instance waits the same for the same change (a restart does not
// reshuffle the fleet), while across changes each instance is early or
// late at random.
func adoptDelay(window time.Duration, instance, source, rev string) time.Duration {
	h := sha256.Sum256([]byte(instance + "\x00" + source + "\x00" + rev))
	u := binary.BigEndian.Uint64(h[:8]) >> 11 // 53 bits: exact in a float64
	return time.Duration(float64(window) * float64(u) / (1 << 53))
}

// Adopt asks for a sync now, of one source by name or of all when name is
// empty, that publishes what it finds at once, whatever the rollout
// window: a pending revision, or a newer one.
func (s *Syncer) Adopt(name string) error {
	for _, src := range s.sources {
		if name == "" || src.Name == name {
			src.mu.Lock()
			src.adoptNow = true
			src.mu.Unlock()
		}
	}
	return s.Trigger(name)
}

// takeAdoptNow returns whether Adopt was asked since the last attempt, and
// clears it.
func (src *source) takeAdoptNow() bool {
	src.mu.Lock()
	defer src.mu.Unlock()
	now := src.adoptNow
	src.adoptNow = false
	return now
}

// window returns how long src waits before it adopts rev over base: 0
// when there is no window, under Once, when nothing intact is published
// (a starting pod, or a damaged tree, needs config now), or when asked to
// adopt now.
func (s *Syncer) window(src *source, base, rev string, now bool) time.Duration {
	if s.cfg.Rollout.Window <= 0 || s.once || base == "" || now {
		return 0
	}
	return adoptDelay(s.cfg.Rollout.Window, s.cfg.Rollout.InstanceID, src.Name, rev)
}

// hold keeps the staged, checked rev as src's pending revision, to be
// adopted after delay.
func (s *Syncer) hold(src *source, rev string, stage *Stage, delay time.Duration) {
	now := time.Now()
	p := &pendingRevision{revision: rev, stage: stage, stats: stage.Stats(), seen: now, adoptAt: now.Add(delay)}
	src.mu.Lock()
	src.pending = p
	src.mu.Unlock()
	s.metrics.pending.WithLabelValues(src.Name).Set(float64(p.adoptAt.UnixNano()) / 1e9)
	src.log.Info("new revision waits for its adoption time", "revision", rev,
		"adopt_at", p.adoptAt.Format(time.RFC3339Nano), "delay", delay.Round(time.Millisecond))
}

// pendingNow returns src's pending revision, nil when none.
func (src *source) pendingNow() *pendingRevision {
	src.mu.Lock()
	defer src.mu.Unlock()
	return src.pending
}

// takePending forgets src's pending revision and returns it; the caller
// publishes or discards its stage.
func (s *Syncer) takePending(src *source) *pendingRevision {
	src.mu.Lock()
	p := src.pending
	src.pending = nil
	src.mu.Unlock()
	s.metrics.pending.WithLabelValues(src.Name).Set(0)
	return p
}

// dropPending discards src's pending revision, with why in the log ("" for
// none: shutting down).
func (s *Syncer) dropPending(src *source, why string, attrs ...any) {
	p := s.takePending(src)
	if p == nil {
		return
	}
	p.stage.Discard()
	if why != "" {
		src.log.Info(why, append([]any{"revision", p.revision, "adopt_at", p.adoptAt.Format(time.RFC3339Nano)}, attrs...)...)
	}
}

// adopt publishes the pending revision p, whose time has come, from its
// stage. The stats are p's, less the bytes counted when it was staged.
func (s *Syncer) adopt(src *source, p *pendingRevision) (Stats, error) {
	defer p.stage.Discard()
	st := p.stats
	st.BytesWritten = 0
	if err := p.stage.Publish(p.revision); err != nil {
		return st, fmt.Errorf("adopt %s: %w", p.revision, err)
	}
	return st, nil
}

// untilAdoption shortens the wait before src's next attempt to its
// pending revision's adoption time.
func (src *source) untilAdoption(wait time.Duration) time.Duration {
	if p := src.pendingNow(); p != nil {
		return max(0, min(wait, time.Until(p.adoptAt)))
	}
	return wait
}
