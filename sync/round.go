package sync

import (
	"context"
	"maps"
	"math"
	"slices"
	gosync "sync"
	"time"

	"github.com/ferrysync/ferry/signal"
)

// DefaultSettle bounds how long a published change waits for the other
// sources of its round before the app is told. A git repository, an S3
// prefix and a tarball over HTTP on loopback publish within 0.3 s of each
// other (the end-to-end test logs it), and a cold 52 MB repository takes
// about 1.5 s; a source still syncing after that is slow or stuck, and the
// app should not wait on it.
const DefaultSettle = 2 * time.Second

// never is a wait for the next round's tick or a trigger, nothing sooner.
const never = time.Duration(math.MaxInt64)

// round gathers what the sources publish while they sync together, so that
// the app is told once, with every change, when the last of them is done:
// the sources poll together, every period, and POST /sync without a source
// triggers them all. A change waits for the sources still syncing at most
// settle; then it is told with what the round has so far, and what the
// others publish later is told in turn.
type round struct {
	settle time.Duration
	end    func(changed, first []signal.Change) // tells the app; called in order, one at a time

	mu       gosync.Mutex
	busy     int             // sources in an attempt, or triggered for one, that may still publish
	reserved map[string]bool // sources triggered whose attempt has not joined yet
	changed  []signal.Change // to tell the app at the round's end
	first    []signal.Change // sources' first publishes, for a touch file
	timer    *time.Timer     // the settle bound, while a change waits
	stopped  bool            // Run is over

	ending gosync.Mutex // held from taking the changes to telling them
}

// member is one source's attempt in a round.
type member struct {
	r    *round
	left bool
}

// reserve counts source in the round from the moment it is triggered, so
// that a round does not end before every source triggered with it has
// begun: its attempt joins in its place. It reports whether the place is
// new, not one reserved before.
func (r *round) reserve(source string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reserved[source] {
		return false
	}
	if r.reserved == nil {
		r.reserved = map[string]bool{}
	}
	r.reserved[source] = true
	r.busy++
	return true
}

// unreserve gives up source's place, when no attempt has taken it: its
// trigger was not needed.
func (r *round) unreserve(source string) {
	r.mu.Lock()
	placed := r.reserved[source]
	delete(r.reserved, source)
	r.mu.Unlock()
	if placed {
		r.release()
	}
}

// release gives up one place in the round; the last ends it.
func (r *round) release() {
	r.mu.Lock()
	r.busy--
	last := r.busy == 0
	r.mu.Unlock()
	if last {
		r.finish()
	}
}

// join counts source's attempt in the round until it leaves, in the place
// a trigger reserved for it, if any.
func (r *round) join(source string) *member {
	r.mu.Lock()
	if r.reserved[source] {
		delete(r.reserved, source)
	} else {
		r.busy++
	}
	r.mu.Unlock()
	return &member{r: r}
}

// publish adds a change of the member's source to the round, first when it
// is the source's first publish, and leaves: whoever waits for the
// attempt need wait no more. The round ends when no source is left
// syncing. A source that publishes again in the same round (a rollback
// and then a new revision, or a second attempt) is told once, of its
// newest revision, replacing the one the app had before the round.
func (m *member) publish(c signal.Change, first bool) {
	r := m.r
	r.mu.Lock()
	if first {
		r.first = withChange(r.first, c)
	} else {
		r.changed = withChange(r.changed, c)
	}
	if r.timer == nil && r.settle > 0 {
		r.timer = time.AfterFunc(r.settle, r.finish)
	}
	done := m.left && r.busy == 0 // published again after leaving
	r.mu.Unlock()
	if done {
		r.finish()
	}
	m.leave()
}

// withChange adds c to cs, or puts it in the place of an earlier change of
// its source, keeping what that one replaced.
func withChange(cs []signal.Change, c signal.Change) []signal.Change {
	for i, old := range cs {
		if old.Source == c.Source {
			c.Previous = old.Previous
			cs[i] = c
			return cs
		}
	}
	return append(cs, c)
}

// leave ends the member's part in the round, once; the last to leave ends
// the round.
func (m *member) leave() {
	if !m.left {
		m.left = true
		m.r.release()
	}
}

// finish tells the app what the round gathered, at its end or when the
// settle bound is reached; after stop, nothing.
func (r *round) finish() {
	r.ending.Lock()
	defer r.ending.Unlock()
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	changed, first := r.changed, r.first
	r.changed, r.first = nil, nil
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.mu.Unlock()
	r.end(changed, first)
}

// stop ends the round for good, once a finish under way is done: after
// Run, nothing is told and nothing written.
func (r *round) stop() {
	r.ending.Lock()
	defer r.ending.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
}

// endRound is the round's end: the generation link shows every source's
// revision, then the app is told of what changed. It runs at the end of
// every round, changes or not, so that a generation link removed or never
// written is put in place by the next poll.
func (s *Syncer) endRound(changed, first []signal.Change) {
	// Once writes it itself, and only when every source succeeded.
	if s.cfg.GenerationLink != "" && !s.once {
		if err := s.publishGeneration(); err != nil {
			s.log.Error("generation link not updated", "link", s.cfg.Store.LinkPath(s.cfg.GenerationLink), "error", err)
		}
	}
	if len(changed) == 0 && len(first) == 0 {
		return
	}
	for _, n := range s.cfg.Notifiers {
		if len(changed) > 0 {
			n.Notify(changed...)
		}
		if f, ok := n.(FirstNotifier); ok && len(first) > 0 {
			f.NotifyFirst(first...)
		}
	}
}

// publishGeneration points the generation link at every source's current
// revision, once every source has one; a link already there is kept.
func (s *Syncer) publishGeneration() error {
	g := Generation{}
	for _, src := range s.sources {
		rev := src.current()
		if rev == "" {
			return nil // not every source is there yet: no generation
		}
		g[src.Name] = rev
	}
	if cur := s.cfg.Store.CurrentGeneration(); cur != nil && maps.Equal(cur, g) {
		return nil
	}
	if err := s.cfg.Store.PublishGeneration(g); err != nil {
		return err
	}
	names := slices.Sorted(maps.Keys(g))
	attrs := make([]any, 0, 2*len(names)+2)
	attrs = append(attrs, "link", s.cfg.Store.LinkPath(s.cfg.GenerationLink))
	for _, n := range names {
		attrs = append(attrs, n, g[n])
	}
	s.log.Info("generation published", attrs...)
	return nil
}

// names returns the sources' names, in their order.
func (s *Syncer) names() []string {
	out := make([]string, len(s.sources))
	for i, src := range s.sources {
		out[i] = src.Name
	}
	return out
}

// current returns the revision src has published, or "".
func (src *source) current() string {
	src.mu.Lock()
	defer src.mu.Unlock()
	return src.revision
}

// onTick reports whether the next tick is src's to take (offTick).
func (src *source) onTick() bool {
	src.mu.Lock()
	defer src.mu.Unlock()
	return !src.offTick
}

func (src *source) setOffTick(off bool) {
	src.mu.Lock()
	defer src.mu.Unlock()
	src.offTick = off
}

// tick triggers every source at once, every period, jittered, until ctx is
// done: the sources of a round poll together, and what changed together is
// told together. A source still syncing is left to finish, and one that
// is failing to its backoff, which the period caps.
func (s *Syncer) tick(ctx context.Context) {
	t := time.NewTimer(jittered(s.cfg.Period))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			var due []*source
			for _, src := range s.sources {
				if src.onTick() {
					due = append(due, src)
				}
			}
			s.trigger(due)
			t.Reset(jittered(s.cfg.Period))
		}
	}
}
