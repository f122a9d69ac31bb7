package api

import (
	"context"
	"log"
	"log/slog"
	"strings"
	gosync "sync"
	"time"
)

// logEvery is how often an event that may repeat thousands of times a
// second (a refused request, a connection closed to make room, an accept
// error) is logged at most: often enough to follow an attack while it
// lasts, rarely enough that 100,000 refused requests write a few lines.
const logEvery = 10 * time.Second

// throttle logs one kind of event at most once per interval, each line with
// the count of events since the previous one: the first event at once, the
// ones after it summed up when the interval is over, with the attributes
// of the latest.
type throttle struct {
	log   *slog.Logger
	level slog.Level
	msg   string
	every time.Duration

	mu      gosync.Mutex
	count   int         // events not logged yet
	attrs   []any       // the latest of them
	running *time.Timer // set while lines are held back
}

func newThrottle(log *slog.Logger, level slog.Level, msg string, every time.Duration) *throttle {
	return &throttle{log: log, level: level, msg: msg, every: every}
}

// event logs the event, or counts it for the next line if one was logged
// less than an interval ago.
func (t *throttle) event(attrs ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.running == nil {
		t.emit(1, attrs)
		t.running = time.AfterFunc(t.every, t.tick)
		return
	}
	t.count++
	t.attrs = attrs
}

// tick ends an interval: it logs what it held back and starts another, or,
// after a quiet interval, lets the next event be logged at once.
func (t *throttle) tick() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.count == 0 {
		t.running = nil
		return
	}
	t.flushLocked()
	t.running.Reset(t.every)
}

// flush logs what is held back now, for a server that stops.
// flush logs what is held back and stops the interval: the last call.
func (t *throttle) flush() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flushLocked()
	if t.running != nil {
		t.running.Stop()
		t.running = nil
	}
}

func (t *throttle) flushLocked() {
	if t.count > 0 {
		t.emit(t.count, t.attrs)
		t.count, t.attrs = 0, nil
	}
}

func (t *throttle) emit(count int, attrs []any) {
	t.log.Log(context.Background(), t.level, t.msg, append([]any{"count", count}, attrs...)...)
}

// stdLogger is a log.Logger for http.Server.ErrorLog whose every line is
// an event of t.
func (t *throttle) stdLogger() *log.Logger {
	return log.New(throttleWriter{t}, "", 0)
}

type throttleWriter struct{ t *throttle }

func (w throttleWriter) Write(p []byte) (int, error) {
	w.t.event("error", strings.TrimSpace(string(p)))
	return len(p), nil
}
