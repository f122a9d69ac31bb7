package signal

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
)

// Run finds the HTTP workers through this interface: check it at compile time.
var _ runner = (*httpNotifier)(nil)

// httpNotifier sends each change to the application's reload endpoints,
// one queue target per URL.
type httpNotifier struct {
	*queue
	method string
	client *http.Client
}

// httpTarget is what a request needs of its URL.
type httpTarget struct {
	url  string // as given; may hold credentials, never logged
	name string // redacted, for logs and metric labels
	// secrets are the values of the URL's query, as written and decoded:
	// none is shown, even where an error or a reply repeats it.
	secrets []string
}

// newHTTP returns the notifier of o's URLs, which o.Validate accepted.
func newHTTP(o Options, m *metrics) *httpNotifier {
	h := &httpNotifier{
		queue:  newQueue(o, m),
		method: strings.ToUpper(o.Method),
		// An own transport, so that run can close its idle connections
		// (and their goroutines) without touching anyone else's.
		client: &http.Client{Timeout: o.Timeout, Transport: http.DefaultTransport.(*http.Transport).Clone()},
	}
	for _, raw := range o.URLs {
		u, _ := url.Parse(raw)
		t := &httpTarget{url: raw, name: displayName(u), secrets: queryValues(u.RawQuery)}
		h.add(t.name, slog.String("url", t.name), func(ctx context.Context, cs Changes) error { return h.send(ctx, t, cs) })
	}
	return h
}

// run delivers until ctx is done, then lets the idle connections go.
func (h *httpNotifier) run(ctx context.Context) {
	defer h.client.CloseIdleConnections()
	h.queue.run(ctx)
}
