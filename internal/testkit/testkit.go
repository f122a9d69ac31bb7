// Package testkit holds the helpers every package's tests share: waiting
// for a condition, capturing logs, and building the binaries that
// process-level tests run. Test code only; it imports nothing of ferry's
// but localproc, so any package's tests may use it.
package testkit

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	gosync "sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/localproc"
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

// Killed waits until the process whose PID a command under test wrote to
// pidFile (a shell's "echo $! > FILE") is gone: a timeout must kill what a
// hook left behind, not only the hook.
func Killed(t testing.TB, pidFile string) {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		t.Fatalf("%s holds no PID: %q", pidFile, b)
	}
	Eventually(t, 5*time.Second, "process "+strconv.Itoa(pid)+" to be killed", func() bool {
		return syscall.Kill(pid, 0) != nil
	})
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

// FreeAddr returns a 127.0.0.1 address that nothing listens on right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := localproc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// HTTPStatus GETs url and returns the status code, or 0 when nothing
// answered: the probe a kubelet makes.
func HTTPStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// CountingWriter adds to N the body bytes written through it: what a test
// server sent.
type CountingWriter struct {
	http.ResponseWriter
	N *atomic.Int64
}

func (c *CountingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.N.Add(int64(n))
	return n, err
}

// Clip returns s cut to n bytes, saying how much was cut, for a failure
// message that quotes a long output.
func Clip(s string, n int) string {
	if len(s) > n {
		return fmt.Sprintf("%s... (%d more bytes)", s[:n], len(s)-n)
	}
	return s
}

// Background runs run(ctx) in a goroutine until the test ends. stop
// cancels it early; either way run must return nil within 10 s of the
// cancel, and stop reports how long that took.
func Background(t testing.TB, run func(context.Context) error) (stop func() time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	stop = gosync.OnceValue(func() time.Duration {
		begin := time.Now()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run returned %v after cancel, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("run did not return within 10s of cancel")
		}
		return time.Since(begin)
	})
	t.Cleanup(func() { stop() })
	return stop
}

// Tree writes files, by slash-separated name, into a new temporary
// directory and returns it: an origin, or a staged tree.
func Tree(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
