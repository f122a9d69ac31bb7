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
// a server that accepts TCP and never speaks would hang a sync past
// --timeout. Its only hook into the dial is the proxy option, which it
// resolves through golang.org/x/net/proxy's registry: a dialer registered
// under deadlineScheme (global.go), with the deadline in the URL, sets
// that deadline on the connection itself. Every read and write of the
// session is then bounded, the handshake included.
const deadlineScheme = "ferry-deadline"

// deadlineProxy returns the proxy option that bounds an SSH connection by
// ctx's deadline; none when ctx has none.
func deadlineProxy(ctx context.Context) transport.ProxyOptions {
	d, ok := ctx.Deadline()
	if !ok {
		return transport.ProxyOptions{}
	}
	return transport.ProxyOptions{URL: deadlineScheme + "://local/?ns=" + strconv.FormatInt(d.UnixNano(), 10)}
}

// newDeadlineDialer builds the dialer a proxy URL of deadlineProxy names.
func newDeadlineDialer(u *url.URL, _ proxy.Dialer) (proxy.Dialer, error) {
	ns, err := strconv.ParseInt(u.Query().Get("ns"), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("deadline dialer: %w", err)
	}
	return &deadlineDialer{deadline: time.Unix(0, ns)}, nil
}

// deadlineDialer dials as go-git would without a proxy option (honouring
// ALL_PROXY), then bounds the connection.
type deadlineDialer struct{ deadline time.Time }

func (d *deadlineDialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

func (d *deadlineDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithDeadline(ctx, d.deadline)
	defer cancel()
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
	if err := conn.SetDeadline(d.deadline); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}
