package sync

import (
	"fmt"
	"strings"
	"time"
)

// SourceStatus is what /status shows of one source. It holds no secret: the
// URL is redacted and errors name causes, not credentials.
type SourceStatus struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	Kind string `json:"kind"`
	// Path is ROOT/NAME, where the app reads the revision.
	Path                string     `json:"path"`
	Revision            string     `json:"revision"`
	PreviousRevision    string     `json:"previous_revision,omitempty"`
	OriginRevision      string     `json:"origin_revision,omitempty"`
	Published           *time.Time `json:"published,omitempty"`
	LastAttempt         *time.Time `json:"last_attempt,omitempty"`
	LastSuccess         *time.Time `json:"last_success,omitempty"`
	LastError           string     `json:"last_error,omitempty"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
	// RejectedRevision is the revision refused last, while the origin
	// still holds it; RejectedReason says why, in one line that starts
	// with what refused it ("syntax: conf/app.yaml:3:1: ...").
	RejectedRevision string     `json:"rejected_revision,omitempty"`
	RejectedReason   string     `json:"rejected_reason,omitempty"`
	Rejected         *time.Time `json:"rejected_at,omitempty"`
	// PublishedUntrusted: the published revision no longer verifies
	// against the keys file (trust.go); LastError says why.
	PublishedUntrusted bool `json:"published_untrusted,omitempty"`
	// PendingRevision is a new revision this instance holds back under the
	// rollout window, to be published at AdoptAt unless the origin moves
	// on first.
	PendingRevision string     `json:"pending_revision,omitempty"`
	AdoptAt         *time.Time `json:"adopt_at,omitempty"`
	// Stale: no successful sync for MaxStaleness, or, without one, for as
	// long as /healthz allows between attempts (staleAfter): what is
	// published may lag the origin by more than its owner expects.
	Stale bool `json:"stale,omitempty"`
}

// Status returns the state of every source, in configuration order.
func (s *Syncer) Status() []SourceStatus {
	out := make([]SourceStatus, 0, len(s.sources))
	now := time.Now()
	for _, src := range s.sources {
		src.mu.Lock()
		out = append(out, SourceStatus{
			Name:                src.Name,
			URL:                 src.URL,
			Kind:                src.Kind,
			Path:                s.cfg.Store.LinkPath(src.Name),
			Revision:            src.revision,
			PreviousRevision:    src.previous,
			OriginRevision:      src.origin,
			Published:           timePtr(src.published),
			LastAttempt:         timePtr(src.lastAttempt),
			LastSuccess:         timePtr(src.lastSuccess),
			LastError:           src.lastError,
			ConsecutiveFailures: src.failures,
			RejectedRevision:    src.rejected.revision,
			RejectedReason:      src.rejected.message,
			Rejected:            timePtr(src.rejected.at),
			PublishedUntrusted:  src.untrusted,
			Stale:               now.Sub(s.lastSynced(src)) > s.staleAfter(),
		})
		if p := src.pending; p != nil {
			out[len(out)-1].PendingRevision, out[len(out)-1].AdoptAt = p.revision, timePtr(p.adoptAt)
		}
		src.mu.Unlock()
	}
	return out
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Ready reports whether every source has a published revision (and, with
// MaxStaleness, synced recently). The reason says which source is missing.
func (s *Syncer) Ready() (bool, string) {
	var waiting []string
	now := time.Now()
	for _, src := range s.sources {
		src.mu.Lock()
		switch {
		case src.revision == "":
			waiting = append(waiting, src.Name+": no revision yet")
		case s.cfg.MaxStaleness > 0 && now.Sub(s.lastSynced(src)) > s.cfg.MaxStaleness:
			waiting = append(waiting, fmt.Sprintf("%s: no successful sync for %s", src.Name, s.cfg.MaxStaleness))
		}
		src.mu.Unlock()
	}
	if len(waiting) == 0 && s.cfg.GenerationLink != "" && !s.cfg.Store.generationShows(s.names()) {
		waiting = append(waiting, "generation link "+s.cfg.GenerationLink+": not written yet for every source")
	}
	if len(waiting) > 0 {
		return false, strings.Join(waiting, "; ")
	}
	return true, "ok"
}

// Healthy reports whether the loop makes progress: every source started an
// attempt recently. A fetch that ignores its deadline, or a dead goroutine,
// stops new attempts, and a liveness probe on this catches it.
func (s *Syncer) Healthy() (bool, string) {
	stall := s.stallAfter()
	now := time.Now()
	for _, src := range s.sources {
		src.mu.Lock()
		last := latest(src.lastAttempt, s.started)
		src.mu.Unlock()
		if now.Sub(last) > stall {
			return false, fmt.Sprintf("%s: no sync attempt for %s", src.Name, now.Sub(last).Round(time.Second))
		}
	}
	return true, "ok"
}

// stallAfter is how long without a new attempt counts as wedged: a few
// periods (or backoff steps) plus one whole fetch timeout.
func (s *Syncer) stallAfter() time.Duration {
	// Retries wait at most one period, so the period bounds every wait.
	return stallPeriods*s.cfg.Period + s.cfg.Timeout
}

// lastSynced is when src was last known to match its origin: its last
// success or publish, or the start, which gives a revision left by an
// earlier run the benefit of the doubt. src.mu is held.
func (s *Syncer) lastSynced(src *source) time.Time {
	return latest(src.lastSuccess, src.published, s.started)
}

// staleAfter is how long without a successful sync makes a source stale:
// MaxStaleness, the readiness budget, when set; otherwise the time without
// an attempt that makes /healthz call the loop wedged, several periods
// (and backoff steps) plus a whole fetch.
func (s *Syncer) staleAfter() time.Duration {
	if s.cfg.MaxStaleness > 0 {
		return s.cfg.MaxStaleness
	}
	return s.stallAfter()
}

func latest(ts ...time.Time) time.Time {
	var l time.Time
	for _, t := range ts {
		if t.After(l) {
			l = t
		}
	}
	return l
}
