package signal

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/ferrysync/ferry/internal/testkit"
)

// notifySecret is a token in a notify URL's query; notifySecretEscaped is
// another, which the URL carries percent-encoded.
const (
	notifySecret        = "Zq7-notify-token"
	notifySecretEscaped = "Zq7 notify/other"
	// redirectSecret signs the URL a notify is redirected to.
	redirectSecret = "Zq7-signature"
)

// TestNotifyNeverShowsItsQuery makes a notify URL with tokens in its query
// fail in every way a delivery can (refused, timed out, TLS, an error
// reply echoing the request, a redirect to a signed URL) and looks for the
// tokens in the logs, at debug level, and in the metrics. On today's code
// the client's *url.Error carried the whole URL into the log.
func TestNotifyNeverShowsItsQuery(t *testing.T) {
	query := "?token=" + notifySecret + "&x=" + strings.ReplaceAll(strings.ReplaceAll(notifySecretEscaped, " ", "+"), "/", "%2F")
	echo := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			// A careless app repeats the request in its error page.
			http.Error(w, fmt.Sprintf("cannot reload %s (token %s)", r.URL, r.URL.Query().Get("x")), code)
		}
	}
	for _, tc := range []struct {
		name string
		url  func(t *testing.T) string
		want string // in the failure's log line
	}{
		{"connection refused", func(t *testing.T) string { return "http://" + freeAddr(t) + "/-/reload" }, "connection refused"},
		{"timeout", func(t *testing.T) string {
			return serve(t, func(_ http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body) // then the server sees the client hang up
				<-r.Context().Done()
			}) + "/-/reload"
		}, "Client.Timeout"},
		{"TLS error", func(t *testing.T) string {
			srv := httptest.NewUnstartedServer(echo(200))
			srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes it refuses
			srv.StartTLS()
			t.Cleanup(srv.Close)
			return srv.URL + "/-/reload"
		}, "certificate"},
		{"500 echoing the request", func(t *testing.T) string { return serve(t, echo(500)) + "/-/reload" }, "500"},
		{"404 echoing the request", func(t *testing.T) string { return serve(t, echo(404)) + "/-/reload" }, "404"},
		{"redirect to a signed URL", func(t *testing.T) string {
			target := "http://" + freeAddr(t) + "/signed?X-Amz-Signature=" + redirectSecret
			return serve(t, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, target, http.StatusTemporaryRedirect)
			}) + "/-/reload"
		}, "/signed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := fastOptions(tc.url(t) + query)
			if tc.name == "timeout" {
				// Only here: a TLS handshake under -race on a busy machine
				// may take longer, and must fail for its own reason.
				o.Timeout = 200 * time.Millisecond
			}
			o.MaxElapsed = 300 * time.Millisecond
			n := newNotifiers(t, o)
			n.start(t)
			n.Notify(Change{Source: "app", Revision: "r1"})
			target := n.ways[0].(*httpNotifier).targets[0].name
			testkit.Eventually(t, 10*time.Second, "the notify to fail for good", func() bool {
				return n.total(t, target, resultFailed) == 1
			})
			logs := n.logs.String()
			if !strings.Contains(logs, tc.want) {
				t.Errorf("the failure is not described (want %q):\n%s", tc.want, logs)
			}
			var metrics bytes.Buffer
			mfs, err := n.reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				expfmt.MetricFamilyToText(&metrics, mf)
			}
			for what, out := range map[string]string{"logs": logs, "metrics": metrics.String()} {
				for _, secret := range []string{notifySecret, notifySecretEscaped, "notify%2Fother", "notify+other", redirectSecret} {
					if strings.Contains(out, secret) {
						t.Errorf("%s show %q:\n%s", what, secret, out)
					}
				}
			}
		})
	}
}

// serve starts a test server with h and returns its URL.
func serve(t *testing.T, h http.HandlerFunc) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
