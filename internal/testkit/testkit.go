// Package testkit holds the helpers every package's tests share: waiting
// for a condition, capturing logs, and building the binaries that
// process-level tests run. Test code only; it imports nothing of ferry's,
// so any package's tests may use it.
package testkit

import (
	"bytes"
	"log/slog"
	gosync "sync"
	"testing"
	"time"
)

// Eventually polls cond every 10 ms until it holds, and fails the test
// naming what it waited for when limit passes first.
func Eventually(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// LogBuffer collects log output, safe for concurrent writers.
type LogBuffer struct {
	mu  gosync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Logger returns a debug-level text logger writing to b.
func (b *LogBuffer) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// JSONLogger returns a debug-level JSON logger writing to b.
func (b *LogBuffer) JSONLogger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
