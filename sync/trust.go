package sync

import (
	"errors"
	"log/slog"

	"github.com/ferrysync/ferry/fetch"
)

// A source that checks signatures (git --git-verify-keys-file, HTTP
// ?signature=) refuses an unsigned or badly signed revision with an error
// that wraps fetch.ErrUntrusted; when the keys file changed and the
// revision already published no longer verifies, the error also wraps
// fetch.ErrPublishedUntrusted. The loop keeps that revision published
// either way (the app needs its config) and reports it: at ERROR, in
// /status (last_error, published_untrusted) and in the metrics
// ferry_signature_failures_total and ferry_published_untrusted.

// noteTrust records what an attempt's error says of signatures. A
// success clears the published revision's mark; an error that is not
// about signatures (an outage) says nothing of it and leaves it.
func (s *Syncer) noteTrust(src *source, err error) {
	if err != nil && !errors.Is(err, fetch.ErrUntrusted) {
		return
	}
	if err != nil {
		s.metrics.untrusted.WithLabelValues(src.Name).Inc()
	}
	bad := errors.Is(err, fetch.ErrPublishedUntrusted)
	if !bad && err != nil {
		// A new revision refused: the published one keeps its mark.
		src.mu.Lock()
		bad = src.untrusted
		src.mu.Unlock()
	}
	v := 0.0
	if bad {
		v = 1
	}
	s.metrics.distrusted.WithLabelValues(src.Name).Set(v)
	src.mu.Lock()
	src.untrusted = bad
	src.mu.Unlock()
}

// failureLevel is the level a failed sync is logged at: ERROR for config
// that is not signed as it must be, which someone must look at; WARN for
// the rest, which retrying may fix.
func failureLevel(err error) slog.Level {
	if errors.Is(err, fetch.ErrUntrusted) {
		return slog.LevelError
	}
	return slog.LevelWarn
}
