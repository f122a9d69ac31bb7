package sync

import (
	"context"
	"errors"
	"fmt"
	gosync "sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/ferrysync/ferry/fetch"
)

// Once publishes one revision of every source, retrying transient failures
// with backoff for up to OnceTimeout. A permanent failure, or a revision
// its Validator rejects, ends it at once. It ignores Rollout.Window; a
// Syncer runs either Once or Run, not both.
func (s *Syncer) Once(ctx context.Context) error {
	// A pod that is starting needs its config now: no rollout window.
	s.once = true
	s.releaseInit()
	errs := make([]error, len(s.sources))
	var wg gosync.WaitGroup
	for _, src := range s.sources {
		s.round.reserve(src.Name) // one round: every place before any attempt
	}
	for i, src := range s.sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.onceSource(ctx, src)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Success means the config is there: every link in place, every tree.
	for _, src := range s.sources {
		src.mu.Lock()
		rev := src.revision
		src.mu.Unlock()
		if rev == "" {
			errs = append(errs, &SourceError{src.Name, errors.New("nothing published")})
		} else if err := s.cfg.Store.Check(src.Name, rev); err != nil {
			errs = append(errs, &SourceError{src.Name, err})
		}
	}
	if s.cfg.GenerationLink != "" && errors.Join(errs...) == nil {
		// Written at the round's end, when the last source was done.
		if err := s.publishGeneration(); err != nil {
			errs = append(errs, fmt.Errorf("generation link %s: %w", s.cfg.GenerationLink, err))
		}
	}
	return errors.Join(errs...)
}

// SourceError is the failure of one source; Once and Run join them, so a
// caller can say which source each concerns.
type SourceError struct {
	Source string
	Err    error
}

func (e *SourceError) Error() string { return "source " + e.Source + ": " + e.Err.Error() }
func (e *SourceError) Unwrap() error { return e.Err }

func (s *Syncer) onceSource(ctx context.Context, src *source) error {
	// The bound covers a hanging attempt too, not only the waits between.
	deadline := time.Now().Add(s.cfg.OnceTimeout)
	parent := ctx
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	b := s.newBackoff(s.cfg.OnceTimeout)
	start := time.Now()
	// gaveUp says what was tried: the time it really took (the next wait
	// would have passed the bound, so it is less than OnceTimeout) and how
	// many attempts.
	gaveUp := func(attempts int, err error) error {
		tries := fmt.Sprintf("%d attempts", attempts)
		if attempts == 1 {
			tries = "1 attempt"
		}
		return &SourceError{src.Name, fmt.Errorf("gave up after %s in %s (bound %s): %w",
			tries, roundForPeople(time.Since(start)), s.cfg.OnceTimeout, err)}
	}
	for attempts := 1; ; attempts++ {
		err := s.syncOnce(ctx, src)
		if err == nil {
			return nil
		}
		if fetch.IsPermanent(err) || IsRejected(err) || parent.Err() != nil {
			return &SourceError{src.Name, err}
		}
		if ctx.Err() != nil {
			return gaveUp(attempts, err)
		}
		wait := b.NextBackOff()
		if wait == backoff.Stop || time.Now().Add(wait).After(deadline) {
			return gaveUp(attempts, err)
		}
		src.log.Warn("sync failed", "error", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return &SourceError{src.Name, ctx.Err()}
		case <-time.After(wait):
		}
	}
}

// roundForPeople rounds d to the millisecond, or to the microsecond below
// one: "0s" would say nothing was tried.
func roundForPeople(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(time.Millisecond)
}
