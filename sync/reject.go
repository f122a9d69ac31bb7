package sync

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferrysync/ferry/validate"
)

// Validator checks a staged revision just before it is published. An
// error that is a Rejection refuses the revision: it is not published, the
// last good one stays, and it is not fetched or checked again until the
// origin moves to another revision. Any other error means the check could
// not run, and the attempt is retried like a failed fetch.
type Validator interface {
	Validate(ctx context.Context, c validate.Candidate) error
}

// Rejection is an error that refuses a revision for its content, not for
// a failure to get it.
type Rejection interface {
	error
	// Reason names what refused it, from a small fixed set ("syntax",
	// "schema", "command", "app"): the reason label of
	// ferry_rejected_total.
	Reason() string
}

// RejectedError is what an attempt that refused a revision returns: Run
// waits for the origin to move, Once gives up at once.
type RejectedError struct {
	Revision string
	Reason   string
	Err      error
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("revision %s rejected: %v", e.Revision, e.Err)
}

// Unwrap returns the refusal.
func (e *RejectedError) Unwrap() error { return e.Err }

// IsRejected reports whether err, or an error it wraps, is a RejectedError.
func IsRejected(err error) bool {
	var r *RejectedError
	return errors.As(err, &r)
}

// rejection is the revision a source refused last, kept in memory only:
// a restart checks it again.
type rejection struct {
	revision string
	reason   string // the label
	message  string // what refused it, one line
	at       time.Time
}

// reject records that src refused rev, logs it in one line, counts it,
// and returns the error the attempt ends with. err says why; its Reason
// is the label when it has one.
func (s *Syncer) reject(src *source, rev, reason string, err error) error {
	var r Rejection
	if errors.As(err, &r) {
		reason = r.Reason()
	}
	s.recordRejection(src, rev, reason, err, "revision rejected, not published")
	return &RejectedError{Revision: rev, Reason: reason, Err: err}
}

// recordRejection remembers rev as the revision src refused, counts it,
// and logs msg at ERROR with attrs after the usual ones.
func (s *Syncer) recordRejection(src *source, rev, reason string, err error, msg string, attrs ...any) {
	src.mu.Lock()
	src.rejected = rejection{revision: rev, reason: reason, message: err.Error(), at: time.Now()}
	published := src.revision
	src.mu.Unlock()
	s.metrics.rejected.WithLabelValues(src.Name, reason).Inc()
	all := []any{"revision", rev, "reason", reason, "error", err.Error()}
	if published != "" && published != rev {
		all = append(all, "published", published)
	}
	var o interface{ Output() string }
	if errors.As(err, &o) && o.Output() != "" {
		all = append(all, "output", o.Output())
	}
	src.log.Error(msg, append(all, attrs...)...)
	s.record(Event{Source: src.Name, Kind: "rejected", Revision: rev, Previous: published, Reason: reason})
}

// rejectedRevision returns the revision src refused last, "" when none.
func (src *source) rejectedRevision() string {
	src.mu.Lock()
	defer src.mu.Unlock()
	return src.rejected.revision
}

// forgetRejection drops the refusal once the origin holds another
// revision: the new one is judged on its own.
func (src *source) forgetRejection() {
	src.mu.Lock()
	src.rejected = rejection{}
	src.mu.Unlock()
}

// validate runs src's Validator on the complete staged tree dir of rev. A
// refusal is recorded and returned as a RejectedError.
func (s *Syncer) validate(ctx context.Context, src *source, rev, dir string) error {
	if src.Validator == nil {
		return nil
	}
	err := src.Validator.Validate(ctx, validate.Candidate{Source: src.Name, Revision: rev, Dir: dir})
	var r Rejection
	if err == nil || !errors.As(err, &r) {
		return err
	}
	return s.reject(src, rev, r.Reason(), err)
}
