package sync

import (
	"context"
	"time"
)

// Event is one thing that happened to a published revision, as the pull
// API streams it: a publish, a repair, a rejection or a rollback; or to
// its source: it started failing, or recovered (once per outage).
type Event struct {
	ID       uint64    `json:"id"`
	Time     time.Time `json:"time"`
	Source   string    `json:"source"`
	Kind     string    `json:"kind"` // published, repaired, rejected, rolled-back, failing, recovered
	Revision string    `json:"revision"`
	Previous string    `json:"previous_revision,omitempty"`
	Reason   string    `json:"reason,omitempty"` // of a rejection
	Error    string    `json:"error,omitempty"`  // of a failure: the status's last error
}

// eventHistory bounds the events kept for a client resuming a stream.
const eventHistory = 256

// record appends an event to the history and wakes those waiting.
func (s *Syncer) record(e Event) {
	s.changeMu.Lock()
	s.lastEventID++
	e.ID, e.Time = s.lastEventID, time.Now()
	s.events = append(s.events, e)
	if len(s.events) > eventHistory {
		s.events = append(s.events[:0:0], s.events[len(s.events)-eventHistory:]...)
	}
	s.changeMu.Unlock()
	s.broadcast()
}

// Events returns the events after the one with ID after (all that are
// kept when after is older than the history), waiting until there is one
// or ctx ends.
func (s *Syncer) Events(ctx context.Context, after uint64) []Event {
	for {
		ch := s.changedCh()
		s.changeMu.Lock()
		var out []Event
		for _, e := range s.events {
			if e.ID > after {
				out = append(out, e)
			}
		}
		s.changeMu.Unlock()
		if len(out) > 0 {
			return out
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		}
	}
}
