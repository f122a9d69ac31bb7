package git

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"golang.org/x/net/proxy"
)

// go-git dials SSH and runs the handshake without the caller's context, so
// a server that accepts TCP and never speaks would hang a sync past its
// timeout, and it reads the connection without any bound. Its only hook
// into the dial is the proxy option, which it resolves through
// golang.org/x/net/proxy's registry: the dialer registered under
// dialScheme (global.go) finds the operation's meter (limit.go) by the id
// in the URL, sets the operation's deadline on the connection itself, so
// that every read and write of the session is bounded, the handshake
// included, and counts what the connection reads on the meter. ferry's
// git:// transport (gitproto.go) reads the same option.
const dialScheme = "ferry-dial"

// proxy returns the proxy option that bounds an SSH or git:// operation
// by the meter in ctx; none for other transports.
func (s *Source) proxy(ctx context.Context) transport.ProxyOptions {
	m := meterFrom(ctx)
	if (s.scheme != "ssh" && s.scheme != "git") || m == nil {
		return transport.ProxyOptions{}
	}
	return transport.ProxyOptions{URL: dialScheme + "://" + strconv.FormatUint(m.id, 10)}
}

// newDialer builds the dialer of the meter a proxy URL of proxy() names.
func newDialer(u *url.URL, _ proxy.Dialer) (proxy.Dialer, error) {
	m, err := meterOf(u)
	if err != nil {
		return nil, err
	}
	return dialer{m: m}, nil
}

// meterOf finds the meter of the operation in progress that a proxy URL
// of proxy() names.
func meterOf(u *url.URL) (*meter, error) {
	id, err := strconv.ParseUint(u.Host, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("ferry dialer: %w", err)
	}
	m, ok := liveMeters.Load(id)
	if !ok {
		return nil, fmt.Errorf("ferry dialer: meter %d: the operation is over", id)
	}
	return m.(*meter), nil
}

// dialer dials as go-git would without a proxy option (for SSH, honouring
// ALL_PROXY; for git://, direct), then bounds the connection by m.
type dialer struct {
	m      *meter
	direct bool
}

func (d dialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

func (d dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	bounded := !d.m.deadline.IsZero()
	if bounded {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.m.deadline)
		defer cancel()
	}
	if d.m.ctx != nil {
		// The operation ended (cancelled, or stopped by the meter): so
		// does the dial, which go-git starts without its context.
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(d.m.ctx, cancel)
		defer stop()
	}
	var dial proxy.ContextDialer = &net.Dialer{}
	if cd, ok := proxy.FromEnvironment().(proxy.ContextDialer); ok && !d.direct {
		dial = cd
	}
	conn, err := dial.DialContext(ctx, network, addr)
	if err == nil && bounded {
		if err = conn.SetDeadline(d.m.deadline); err != nil {
			conn.Close()
		}
	}
	if err != nil {
		return nil, err
	}
	return &meteredConn{Conn: conn, m: d.m}, nil
}
