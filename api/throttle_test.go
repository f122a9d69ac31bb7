package api

import (
	"context"
	"log/slog"
	"slices"
	gosync "sync"
	"testing"
	"time"
)

// TestThrottleSumsUpEachInterval runs the throttle with a short interval:
// an event stream that lasts many intervals gives about a line per
// interval whose counts add up, and after a quiet interval the next event
// is logged at once.
func TestThrottleSumsUpEachInterval(t *testing.T) {
	const every, events = 20 * time.Millisecond, 300
	logs := &counter{}
	th := newThrottle(slog.New(logs), slog.LevelWarn, "refused", every)
	start := time.Now()
	for i := range events {
		th.event("n", i)
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	time.Sleep(3 * every) // the last summary, then a quiet interval
	counts := logs.lines()
	if max := int(took/every) + 2; len(counts) < 2 || len(counts) > max {
		t.Fatalf("%d events in %s at one line per %s: %d lines, want 2 to %d", events, took, every, len(counts), max)
	}
	if counts[0] != 1 || sum(counts) != events {
		t.Fatalf("counts %v: want the first 1 and a sum of %d", counts, events)
	}
	th.event("n", "after a quiet interval")
	if got := logs.lines(); len(got) != len(counts)+1 || got[len(got)-1] != 1 {
		t.Fatalf("an event after a quiet interval was not logged at once: counts %v", got)
	}
}

// counter is a slog.Handler that keeps the count attribute of each line.
type counter struct {
	mu     gosync.Mutex
	counts []int
}

func (c *counter) Enabled(context.Context, slog.Level) bool { return true }
func (c *counter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *counter) WithGroup(string) slog.Handler            { return c }
func (c *counter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "count" {
			c.counts = append(c.counts, int(a.Value.Int64()))
		}
		return true
	})
	return nil
}

func (c *counter) lines() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.counts)
}

func sum(xs []int) (n int) {
	for _, x := range xs {
		n += x
	}
	return n
}
