package sync

import (
	"errors"
	"strings"
	"time"
	"unicode"

	"github.com/ferrysync/ferry/internal/report"
)

// maxInstanceID bounds an instance's name: a pod name is at most 253
// bytes.
const maxInstanceID = 253

// Rollout says how new revisions reach the application: when this
// instance adopts one, and what happens when the application refuses one.
type Rollout struct {
	// RollbackOnReject puts the previous revision back when the
	// application refuses a new one (Syncer.Refused), tells it so, and
	// holds the refused revision back, as a rejected one, until the
	// origin moves on. The previous revision must still be on disk: Keep
	// must be at least 2.
	RollbackOnReject bool
	// Window spreads the adoption of each new revision over a fleet: this
	// instance waits a delay in [0, Window) drawn from a hash of
	// InstanceID, the source and the revision before it publishes one. A
	// revision the origin moved on from before its time is never
	// published. Once, the first publish of a source, and Adopt ignore it;
	// 0 adopts at once.
	Window time.Duration
	// InstanceID names this instance among the fleet (a pod name), for
	// Window's hash; required with Window.
	InstanceID string
}

// Validate reports every problem of r together, naming fields with
// {Field}.
func (r Rollout) Validate() error {
	var errs []error
	if r.Window < 0 {
		errs = append(errs, report.Fieldf("{Window} must not be negative (0 adopts at once)"))
	}
	if r.Window > 0 && r.InstanceID == "" {
		errs = append(errs, report.Fieldf("{InstanceID} is required with {Window}: it draws this instance's delay"))
	}
	if len(r.InstanceID) > maxInstanceID || strings.ContainsFunc(r.InstanceID, unicode.IsControl) {
		errs = append(errs, report.Fieldf("{InstanceID} %q: want at most %d bytes and no control characters", report.FirstLine(r.InstanceID), maxInstanceID))
	}
	return errors.Join(errs...)
}
