package main

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/ferrysync/ferry/internal/gittest"
	"github.com/ferrysync/ferry/internal/testkit"
)

// origin is the git host: git http-backend behind net/http/cgi on
// 127.0.0.1, counting the requests it has answered and the bytes of their
// bodies (headers are not counted), as a git host's bill would. A request
// counts once answered in full, its git processes reaped: a window of
// time holds whole requests only.
type origin struct {
	url      string // http://127.0.0.1:PORT
	srv      *http.Server
	served   chan error
	inFlight atomic.Int64
	requests atomic.Int64
	bytes    atomic.Int64
}

// traffic is what the origin served up to some moment.
type traffic struct{ requests, bytes int64 }

func (t traffic) sub(u traffic) traffic { return traffic{t.requests - u.requests, t.bytes - u.bytes} }

// startOrigin serves every repository under base.
func startOrigin(base string) (*origin, error) {
	backend, err := gittest.Backend(base)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	o := &origin{url: "http://" + ln.Addr().String(), served: make(chan error, 1)}
	o.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			o.inFlight.Add(1)
			var n atomic.Int64
			backend.ServeHTTP(&testkit.CountingWriter{ResponseWriter: w, N: &n}, r)
			o.bytes.Add(n.Load())
			o.requests.Add(1)
			o.inFlight.Add(-1)
		}),
		// A client killed mid-download is routine here.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go func() { o.served <- o.srv.Serve(ln) }()
	return o, nil
}

// traffic is what the origin has served so far.
func (o *origin) traffic() traffic { return traffic{o.requests.Load(), o.bytes.Load()} }

// settled is what the origin has served once no request is in flight:
// a client may be done with a request a moment before the handler is
// (it still reaps its git processes). It waits a second at most.
func (o *origin) settled(ctx context.Context) traffic {
	for deadline := time.Now().Add(time.Second); o.inFlight.Load() > 0 && time.Now().Before(deadline); {
		if sleep(ctx, time.Millisecond) != nil {
			break
		}
	}
	return o.traffic()
}

// close stops serving; requests in flight are cut.
func (o *origin) close() error {
	o.srv.Close()
	if err := <-o.served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
