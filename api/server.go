package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	gosync "sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The server's limits. The endpoints serve a kubelet, a Prometheus and the
// app next door: small requests without a body and small answers, from a
// handful of clients. Anything slower or bigger is a broken or hostile
// client holding a connection, a goroutine and about 20 KiB of memory.
const (
	// readHeaderTimeout: a probe, a scrape or a trigger sends its header in
	// one packet. A client that takes longer is a slow-loris.
	readHeaderTimeout = 3 * time.Second
	// readTimeout bounds a whole request, body included. No endpoint takes
	// a body; net/http still reads what a client declares before reusing
	// the connection, so a body sent a byte at a time would hold it
	// forever. It does not bound handlers: net/http lifts the read
	// deadline once the request is read.
	readTimeout = 5 * time.Second
	// writeTimeout bounds a handler and its answer, counted from the end
	// of the request header; /metrics, the slowest, takes milliseconds.
	// A handler that holds its request on purpose (issue 16: long polls
	// with ?wait=, Server-Sent Events) must extend it for its own request
	// with http.NewResponseController(w).SetWriteDeadline, before it runs
	// out and again while streaming.
	writeTimeout = 10 * time.Second
	// idleTimeout closes a keep-alive connection nobody has used for this
	// long (kubelet probes do not keep connections alive at all).
	idleTimeout = 30 * time.Second
	// maxHeaderBytes leaves room for a bearer token (a Kubernetes service
	// account token or an OIDC JWT is 1-4 KiB) and a few short headers;
	// net/http's default of 1 MiB would let every connection pin a MiB.
	maxHeaderBytes = 16 << 10
	// maxConns caps the connections held open at once, well above what
	// the endpoints' clients need and small enough (about 5 MiB) to be
	// harmless. It is lowered to half the descriptor limit when that is
	// smaller, so that connections never take the descriptors the sync
	// loop needs for its files and origins. Connections held in a handler
	// are never closed to make room. Parked requests (below) do not count:
	// a thousand long polls must not keep a probe out, nor a flood of idle
	// connections close a long poll.
	maxConns = 256
	// maxParked caps the requests parked at once: long polls waiting for a
	// change and event streams, each holding its connection, two
	// goroutines and about 23 KiB (BenchmarkParkedLongPoll: 13 KiB of
	// heap, net/http's buffers mostly, and 10 KiB of stacks), so about
	// 24 MiB at most. Past it, such a request is refused with 503 and
	// Retry-After. It is lowered to a quarter of the descriptor limit when
	// that is smaller, so that with maxConns at least a quarter is left to
	// the sync loop.
	maxParked = 1024
	// parkedRetryAfter is what a refused long poll or stream is told to
	// wait before asking again: long enough that refused clients cost
	// little, short enough that a poll freed by a publish is taken soon.
	parkedRetryAfter = "5"
	// shutdownGrace bounds how long the endpoints may take to close.
	shutdownGrace = time.Second
)

// Serve answers the endpoints on ln until ctx is done, then closes the
// server within a short grace. It returns an error only when ln fails.
// net/http's own error log (a failing accept, a panic in a handler) goes to
// o.Logger; like refused requests, at most a line every 10 seconds with a
// count.
//
// Serve never lets idle or slow clients starve the probes: past a cap on
// connections derived from the descriptor limit (see maxConns), a new
// connection closes the one that waited longest without a request in a
// handler, idle keep-alive ones first. Long polls and event streams are
// parked (see park) under a cap of their own, outside that one.
func Serve(ctx context.Context, ln net.Listener, s Syncer, o Options) error {
	o = o.withDefaults()
	refused := refusedSyncs(o.Logger)
	shed := newThrottle(o.Logger, slog.LevelWarn, "too many connections: closed the one waiting longest", logEvery)
	unparked := newThrottle(o.Logger, slog.LevelWarn, "too many long polls and event streams: refused one", logEvery)
	failed := newThrottle(o.Logger, slog.LevelError, "endpoint server error", logEvery)
	defer func() {
		for _, t := range []*throttle{refused, shed, unparked, failed} {
			t.flush()
		}
	}()
	conns := newConnLimiter(shed, unparked)
	o.Gatherer = prometheus.Gatherers{o.Gatherer, conns.metrics()}
	srv := &http.Server{
		Handler:           handler(s, o, refused),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnState:         conns.track,
		ConnContext:       conns.context,
		// Requests end with the server: a long poll returns at shutdown.
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    failed.stdLogger(),
	}
	o.Logger.Info("serving endpoints", "addr", ln.Addr().String(), "max_conns", conns.max, "max_parked", conns.maxParked)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve endpoints on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close() // a handler, or a header, still unfinished: cut it off
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve endpoints on %s: %w", ln.Addr(), err)
	}
	return nil
}

// connCaps are maxConns and maxParked, or half and a quarter of the
// descriptor limit when those are lower. The Go runtime has already raised
// the soft limit to the hard one (Go 1.19 and later).
func connCaps() (conns, parked int) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return maxConns, maxParked
	}
	return int(max(1, min(maxConns, lim.Cur/2))), int(max(1, min(maxParked, lim.Cur/4)))
}

// connLimiter holds a server to max connections besides maxParked parked
// requests. It sees every connection through http.Server.ConnState, which
// net/http calls for a new connection before serving it, so no more than
// max+1 unparked ones are ever open.
type connLimiter struct {
	max, maxParked int
	shed, unparked *throttle

	mu     gosync.Mutex
	conns  map[net.Conn]connState
	parked int // conns whose parked is set
}

type connState struct {
	state  http.ConnState
	since  time.Time
	parked bool // in a handler that holds it on purpose (park)
}

func newConnLimiter(shed, unparked *throttle) *connLimiter {
	l := &connLimiter{shed: shed, unparked: unparked, conns: map[net.Conn]connState{}}
	l.max, l.maxParked = connCaps()
	return l
}

func (l *connLimiter) track(c net.Conn, state http.ConnState) {
	var victim net.Conn
	var vs connState
	l.mu.Lock()
	switch state {
	case http.StateNew:
		l.conns[c] = connState{state: state, since: time.Now()}
		if len(l.conns)-l.parked > l.max {
			victim, vs = l.victim()
			delete(l.conns, victim)
		}
	case http.StateActive, http.StateIdle:
		if s, ok := l.conns[c]; ok { // not one closed to make room
			// A handler releases what it parked before net/http moves
			// on; should one not, the count stays right.
			l.unparkLocked(c, s)
			l.conns[c] = connState{state: state, since: time.Now()}
		}
	case http.StateHijacked, http.StateClosed:
		if s, ok := l.conns[c]; ok {
			l.unparkLocked(c, s)
			delete(l.conns, c)
		}
	}
	l.mu.Unlock()
	if victim != nil {
		victim.Close()
		l.shed.event("max_conns", l.max, "state", vs.state.String(), "waited", time.Since(vs.since).Round(time.Millisecond))
	}
}

// victim is the connection to close to make room: the one idle for the
// longest, else the one that has been sending its first request header for
// the longest (a connection is new until its header is complete, so a
// slow-loris stays new); that is the newcomer itself when every other
// connection is busy in a handler. The caller holds l.mu.
func (l *connLimiter) victim() (net.Conn, connState) {
	var victim net.Conn
	var vs connState
	for c, s := range l.conns {
		if s.state != http.StateIdle && s.state != http.StateNew {
			continue
		}
		if victim == nil || s.closesBefore(vs) {
			victim, vs = c, s
		}
	}
	return victim, vs
}

// closesBefore orders the connections that may be closed: idle ones before
// new ones, older before younger.
func (s connState) closesBefore(o connState) bool {
	if s.state != o.state {
		return s.state == http.StateIdle
	}
	return s.since.Before(o.since)
}

// parking is what a request's handler needs to park it: its server's
// limiter and its connection.
type parking struct {
	l *connLimiter
	c net.Conn
}

type parkingKey struct{}

// context lets the handlers of c's requests park them
// (http.Server.ConnContext).
func (l *connLimiter) context(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, parkingKey{}, parking{l, c})
}

// park marks r as held on purpose, as a long poll or an event stream is,
// until release is called: its connection leaves the cap on connections
// for the one on parked requests, so that parked requests never keep a
// probe out and are never closed to make room. When that cap is reached,
// park answers 503 with Retry-After and returns false. Served by Handler
// rather than Serve, r is not limited.
func park(w http.ResponseWriter, r *http.Request) (release func(), ok bool) {
	p, served := r.Context().Value(parkingKey{}).(parking)
	if !served {
		return func() {}, true
	}
	if !p.l.park(p.c) {
		p.l.unparked.event("max_parked", p.l.maxParked, "remote", r.RemoteAddr, "path", r.URL.Path)
		w.Header().Set("Retry-After", parkedRetryAfter)
		http.Error(w, "too many long polls and event streams: try again later", http.StatusServiceUnavailable)
		return nil, false
	}
	return func() { p.l.unpark(p.c) }, true
}

// park counts c as parked, unless maxParked are already.
func (l *connLimiter) park(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.conns[c]
	if !ok || s.parked {
		return true // not tracked, or counted already
	}
	if l.parked >= l.maxParked {
		return false
	}
	s.parked = true
	l.conns[c] = s
	l.parked++
	return true
}

func (l *connLimiter) unpark(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s, ok := l.conns[c]; ok {
		l.unparkLocked(c, s)
	}
}

// unparkLocked counts c, whose state is s, as no longer parked. The
// caller holds l.mu.
func (l *connLimiter) unparkLocked(c net.Conn, s connState) {
	if s.parked {
		s.parked = false
		l.conns[c] = s
		l.parked--
	}
}

// metrics are the limiter's gauges.
func (l *connLimiter) metrics() prometheus.Gatherer {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ferry_api_parked_requests",
		Help: "Requests of the endpoints parked on purpose: long polls waiting for a change, and event streams.",
	}, func() float64 {
		l.mu.Lock()
		defer l.mu.Unlock()
		return float64(l.parked)
	}))
	return reg
}
