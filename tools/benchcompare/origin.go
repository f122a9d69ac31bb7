package main

import (
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/ferrysync/ferry/internal/gittest"
	"github.com/ferrysync/ferry/internal/testkit"
)

// origin is the git host: git http-backend behind net/http/cgi on
// 127.0.0.1, counting the requests it answers and the bytes of their
// bodies (headers are not counted), as a git host's bill would.
type origin struct {
	url      string // http://127.0.0.1:PORT
	srv      *http.Server
	served   chan error
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
			o.requests.Add(1)
			backend.ServeHTTP(&testkit.CountingWriter{ResponseWriter: w, N: &o.bytes}, r)
		}),
		// A client killed mid-download is routine here.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go func() { o.served <- o.srv.Serve(ln) }()
	return o, nil
}

// traffic is what the origin has served so far.
func (o *origin) traffic() traffic { return traffic{o.requests.Load(), o.bytes.Load()} }

// close stops serving; requests in flight are cut.
func (o *origin) close() error {
	o.srv.Close()
	if err := <-o.served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
