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
	// are never closed to make room: issue 16's long polls and streams
	// need their own bound below this one, so that probes still get in.
	maxConns = 256
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
// handler, idle keep-alive ones first.
func Serve(ctx context.Context, ln net.Listener, s Syncer, o Options) error {
	o = o.withDefaults()
	refused := refusedSyncs(o.Logger)
	shed := newThrottle(o.Logger, slog.LevelWarn, "too many connections: closed the one waiting longest", logEvery)
	failed := newThrottle(o.Logger, slog.LevelError, "endpoint server error", logEvery)
	defer func() {
		for _, t := range []*throttle{refused, shed, failed} {
			t.flush()
		}
	}()
	conns := &connLimiter{max: connCap(), conns: map[net.Conn]connState{}, shed: shed}
	srv := &http.Server{
		Handler:           handler(s, o, refused),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnState:         conns.track,
		// Requests end with the server: a long poll returns at shutdown.
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    failed.stdLogger(),
	}
	o.Logger.Info("serving endpoints", "addr", ln.Addr().String(), "max_conns", conns.max)
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

// connCap is maxConns, or half the descriptor limit when that is lower.
// The Go runtime has already raised the soft limit to the hard one.
func connCap() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return maxConns
	}
	return int(max(1, min(maxConns, lim.Cur/2)))
}

// connLimiter holds a server to max connections. It sees every connection
// through http.Server.ConnState, which net/http calls for a new connection
// before serving it, so no more than max+1 are ever open.
type connLimiter struct {
	max  int
	shed *throttle

	mu    gosync.Mutex
	conns map[net.Conn]connState
}

type connState struct {
	state http.ConnState
	since time.Time
}

func (l *connLimiter) track(c net.Conn, state http.ConnState) {
	var victim net.Conn
	var vs connState
	l.mu.Lock()
	switch state {
	case http.StateNew:
		l.conns[c] = connState{state, time.Now()}
		if len(l.conns) > l.max {
			victim, vs = l.victim()
			delete(l.conns, victim)
		}
	case http.StateActive, http.StateIdle:
		if _, ok := l.conns[c]; ok { // not one closed to make room
			l.conns[c] = connState{state, time.Now()}
		}
	case http.StateHijacked, http.StateClosed:
		delete(l.conns, c)
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
