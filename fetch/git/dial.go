package git

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"golang.org/x/net/proxy"
)

// go-git dials SSH and runs the handshake without the caller's context, so
// a server that accepts TCP and never speaks would hang a sync past its
// timeout, and it reads the connection without any bound. Its only hook
// into the dial is the proxy option, which it resolves through
// golang.org/x/net/proxy's registry: the dialer registered under
// dialScheme (global.go) reads the operation's deadline and meter from
// the URL, sets the deadline on the connection itself, so that every read
// and write of the session is bounded, the handshake included, and counts
// what the connection reads on the operation's meter (limit.go).
const dialScheme = "ferry-dial"

// proxy returns the proxy option that bounds an SSH operation by ctx's
// deadline and meter; none for other transports.
func (s *Source) proxy(ctx context.Context) transport.ProxyOptions {
	if s.scheme != "ssh" {
		return transport.ProxyOptions{}
	}
	q := url.Values{}
	if d, ok := ctx.Deadline(); ok {
		q.Set("ns", strconv.FormatInt(d.UnixNano(), 10))
	}
	if m := meterFrom(ctx); m != nil {
		q.Set("meter", strconv.FormatUint(m.id, 10))
	}
	if len(q) == 0 {
		return transport.ProxyOptions{}
	}
	return transport.ProxyOptions{URL: dialScheme + "://local/?" + q.Encode()}
}

// newDialer builds the dialer a proxy URL of proxy() describes.
func newDialer(u *url.URL, _ proxy.Dialer) (proxy.Dialer, error) {
	d := &dialer{}
	q := u.Query()
	if v := q.Get("ns"); v != "" {
		ns, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("ferry dialer: deadline: %w", err)
		}
		d.deadline = time.Unix(0, ns)
	}
	if v := q.Get("meter"); v != "" {
		id, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("ferry dialer: meter: %w", err)
		}
		m, ok := liveMeters.Load(id)
		if !ok {
			return nil, fmt.Errorf("ferry dialer: meter %d: the operation is over", id)
		}
		d.meter = m.(*meter)
	}
	return d, nil
}

// dialer dials as go-git would without a proxy option (honouring
// ALL_PROXY), then bounds the connection.
type dialer struct {
	deadline time.Time // zero: none
	meter    *meter    // nil: not counted
}

func (d *dialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if !d.deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.deadline)
		defer cancel()
	}
	var conn net.Conn
	var err error
	if cd, ok := proxy.FromEnvironment().(proxy.ContextDialer); ok {
		conn, err = cd.DialContext(ctx, network, addr)
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	if err != nil {
		return nil, err
	}
	if !d.deadline.IsZero() {
		if err := conn.SetDeadline(d.deadline); err != nil {
			conn.Close()
			return nil, err
		}
	}
	if d.meter != nil {
		conn = &meteredConn{Conn: conn, m: d.meter}
	}
	return conn, nil
}
