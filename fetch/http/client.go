package http

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/url"
	"strings"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/kit"
	"github.com/ferrysync/ferry/internal/redact"
	"github.com/ferrysync/ferry/internal/report"
)

// maxRedirects is how many redirects one GET follows.
const maxRedirects = 5

// client builds a client that trusts the system roots and the
// certificates of pem, the CA file's content.
func (o Options) client(pem []byte) (*nethttp.Client, error) {
	tr, err := kit.CATransport(pem, o.CAFile, o.InsecureSkipVerify)
	if err != nil {
		return nil, err
	}
	// The digest is of the bytes the server sends; transparent gzip would
	// hide the wire length from the Content-Length check.
	tr.DisableCompression = true
	return &nethttp.Client{Transport: tr, CheckRedirect: checkRedirect}, nil
}

// httpClient returns the client, rebuilt when the CA file changed since the
// last call (cert-manager rotates CA bundles in place).
func (s *Source) httpClient() (*nethttp.Client, error) {
	pem, err := kit.ReadCAFile(s.opts.CAFile)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(pem)
	if s.client != nil && sum == s.caSum {
		return s.client, nil
	}
	c, err := s.opts.client(pem)
	if err != nil {
		return nil, err
	}
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
	s.client, s.caSum = c, sum
	return c, nil
}

// redirectError is a refused redirect.
type redirectError struct{ msg string }

func (e *redirectError) Error() string { return e.msg }

// checkRedirect follows at most maxRedirects redirects, never from https
// back to http, and sends credentials and custom headers to the original
// host only.
func checkRedirect(req *nethttp.Request, via []*nethttp.Request) error {
	from := via[len(via)-1].URL
	if len(via) > maxRedirects {
		return &redirectError{fmt.Sprintf("more than %d redirects (last to %s)", maxRedirects, redact.URL(req.URL, nil))}
	}
	if req.URL.Scheme != "https" {
		for _, v := range via {
			if v.URL.Scheme == "https" {
				return fetch.Permanent(&redirectError{fmt.Sprintf("redirect from %s to %s leaves HTTPS: refused", redact.URL(from, nil), redact.URL(req.URL, nil))})
			}
		}
	}
	// The Referer would carry the original URL (maybe signed) elsewhere.
	req.Header.Del("Referer")
	if !sameHost(via[0].URL, req.URL) {
		// net/http drops Authorization for another domain already, but
		// keeps it for sub-domains and keeps every custom header (an API
		// key in the header file): keep only what says who we are and the
		// validators, so a CDN behind the redirect can still answer 304.
		for k := range req.Header {
			if !crossHostHeaders[k] {
				delete(req.Header, k)
			}
		}
	}
	return nil
}

// crossHostHeaders are the only headers a redirect to another host gets.
var crossHostHeaders = map[string]bool{"User-Agent": true, "If-None-Match": true, "If-Modified-Since": true}

// sameHost compares host and port, with the scheme's default port filled in.
func sameHost(a, b *url.URL) bool {
	return strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}

func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

// requestError turns a failed round trip into one line that says what to do.
func requestError(ctx context.Context, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its message repeats the URL, query included
	}
	var re *redirectError
	if errors.As(err, &re) {
		return err
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			return fmt.Errorf("timed out waiting for the server: %w", ctxErr)
		}
		return ctxErr
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return fetch.Permanent(report.Errorf(err, "TLS: server certificate not trusted: %v (give its CA certificate in a CA file)", cve.Err))
	}
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) {
		return report.Errorf(err, "TLS handshake failed: the server does not speak TLS on this port")
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("timed out: %w", err)
	}
	return fmt.Errorf("request failed: %w", err)
}

// get sends req and returns the response when its status is 200, or 304
// to a conditional request; the caller closes its body. Any other status
// is an error that says what it means.
func get(ctx context.Context, client *nethttp.Client, req *nethttp.Request, hasCredentials, conditional bool) (*nethttp.Response, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, requestError(ctx, err)
	}
	if resp.StatusCode == nethttp.StatusOK || resp.StatusCode == nethttp.StatusNotModified && conditional {
		return resp, nil
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // so the connection can be reused
	resp.Body.Close()
	return nil, statusError(resp, hasCredentials)
}

// statusError explains a status other than 200 (or an expected 304).
// Refused credentials are permanent; everything else may pass.
func statusError(resp *nethttp.Response, hasCredentials bool) error {
	status := fmt.Sprintf("HTTP %d %s", resp.StatusCode, nethttp.StatusText(resp.StatusCode))
	switch code := resp.StatusCode; {
	case code == nethttp.StatusNotFound:
		return fmt.Errorf("not found (%s)", status)
	case code == nethttp.StatusUnauthorized || code == nethttp.StatusForbidden:
		if !hasCredentials {
			return fetch.Permanent(fmt.Errorf("access refused (%s) and no credentials are configured (a bearer token, basic auth or a header file)", status))
		}
		return fetch.Permanent(fmt.Errorf("credentials refused (%s)", status))
	case code >= 500:
		return fmt.Errorf("server error (%s)", status)
	case code == nethttp.StatusNotModified:
		return fmt.Errorf("unexpected %s to an unconditional request", status)
	default:
		return fmt.Errorf("unexpected status (%s)", status)
	}
}
