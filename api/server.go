package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// shutdownGrace bounds how long the endpoints may take to close.
const shutdownGrace = time.Second

// Serve answers the endpoints on ln until ctx is done, then closes the
// server within a short grace. It returns an error only when ln fails.
func Serve(ctx context.Context, ln net.Listener, s Syncer, o Options) error {
	o = o.withDefaults()
	srv := &http.Server{
		Handler:           Handler(s, o),
		ReadHeaderTimeout: 5 * time.Second,
	}
	o.Logger.Info("serving endpoints", "addr", ln.Addr().String())
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
		srv.Close() // a handler still busy after the grace: cut it off
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve endpoints on %s: %w", ln.Addr(), err)
	}
	return nil
}
