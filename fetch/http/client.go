package http

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	nethttp "net/http"
	"net/url"
	"os"
	"strings"

	"github.com/ferrysync/ferry/fetch"
)

// auth is what the secret files say, read for one Fetch.
type auth struct {
	bearer     string
	user, pass string
	headers    nethttp.Header
}

// any reports whether any credential or header is configured.
func (a auth) any() bool { return a.bearer != "" || a.user != "" || len(a.headers) > 0 }

// apply sets the request's headers. The header file comes first so that
// User-Agent may be overridden there; Authorization conflicts were refused
// when reading.
func (a auth) apply(req *nethttp.Request) {
	req.Header.Set("User-Agent", userAgent)
	for k, vs := range a.headers {
		req.Header[k] = append([]string(nil), vs...)
	}
	switch {
	case a.bearer != "":
		req.Header.Set("Authorization", "Bearer "+a.bearer)
	case a.user != "":
		req.SetBasicAuth(a.user, a.pass)
	}
}

// loadAuth reads the secret files. Errors name the flag and the path,
// never the content.
func (s *Source) loadAuth() (auth, error) {
	var a auth
	if p := s.opts.BearerTokenFile; p != "" {
		data, err := os.ReadFile(p)
		if err != nil {
			return a, fmt.Errorf("--http-bearer-token-file: %w", err)
		}
		a.bearer = strings.TrimSpace(string(data))
		if a.bearer == "" {
			return a, fmt.Errorf("--http-bearer-token-file %s is empty", p)
		}
		if !validHeaderValue(a.bearer) || strings.ContainsAny(a.bearer, " \t") {
			return a, fmt.Errorf("--http-bearer-token-file %s: the token holds characters not allowed in a header", p)
		}
	}
	if p := s.opts.PasswordFile; p != "" {
		data, err := os.ReadFile(p)
		if err != nil {
			return a, fmt.Errorf("--http-password-file: %w", err)
		}
		// A file written with echo ends in a newline that is not part of
		// the password; anything else (spaces included) is.
		a.user = s.opts.Username
		a.pass = strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
		if a.pass == "" {
			// As for the token: an empty file is a Secret not (yet) filled
			// in, not a password to send.
			return a, fmt.Errorf("--http-password-file %s is empty", p)
		}
	}
	if p := s.opts.HeaderFile; p != "" {
		h, err := readHeaderFile(p)
		if err != nil {
			return a, err
		}
		if h.Get("Authorization") != "" && (a.bearer != "" || a.user != "") {
			return a, fmt.Errorf("--http-header-file %s sets Authorization, which --http-bearer-token-file or --http-username also set", p)
		}
		a.headers = h
	}
	return a, nil
}

// reservedHeaders are set by the source or by net/http itself; a header file
// setting them would break change detection or framing.
var reservedHeaders = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Connection": true,
	"If-None-Match": true, "If-Modified-Since": true, "If-Match": true, "If-Unmodified-Since": true,
	"If-Range": true, "Range": true, "Accept-Encoding": true, "Te": true, "Upgrade": true,
}

// readHeaderFile parses lines of "Name: value"; blank lines and lines
// starting with # are skipped. Errors give the line number, never the line:
// a value may be a secret.
func readHeaderFile(p string) (nethttp.Header, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("--http-header-file: %w", err)
	}
	h := nethttp.Header{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || !validHeaderName(name) {
			return nil, fmt.Errorf("--http-header-file %s line %d: want `Name: value`", p, n)
		}
		if !validHeaderValue(value) {
			return nil, fmt.Errorf("--http-header-file %s line %d: the value of %s holds characters not allowed in a header", p, n, name)
		}
		if reservedHeaders[nethttp.CanonicalHeaderKey(name)] {
			return nil, fmt.Errorf("--http-header-file %s line %d: %s is set by ferry and may not be given", p, n, name)
		}
		h.Add(name, value)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--http-header-file %s: %w", p, err)
	}
	return h, nil
}

// httpClient returns the client, rebuilt when the CA file changed since the
// last call (cert-manager rotates CA bundles in place).
func (s *Source) httpClient() (*nethttp.Client, error) {
	var pem []byte
	if s.opts.CAFile != "" {
		var err error
		if pem, err = os.ReadFile(s.opts.CAFile); err != nil {
			return nil, fmt.Errorf("--http-ca-file: %w", err)
		}
	}
	sum := sha256.Sum256(pem)
	if s.client != nil && sum == s.caSum {
		return s.client, nil
	}
	var roots *x509.CertPool // nil: the system roots
	if len(pem) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--http-ca-file %s holds no PEM certificate", s.opts.CAFile)
		}
		roots = pool
	}
	tr := nethttp.DefaultTransport.(*nethttp.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{
		RootCAs:            roots,
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: s.opts.InsecureSkipVerify, // #nosec G402 -- opt-in, warned on every sync
	}
	// The digest is of the bytes the server sends; transparent gzip would
	// hide the wire length from the Content-Length check.
	tr.DisableCompression = true
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
	s.client = &nethttp.Client{Transport: tr, CheckRedirect: checkRedirect}
	s.caSum = sum
	return s.client, nil
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
		return &redirectError{fmt.Sprintf("more than %d redirects (last to %s)", maxRedirects, redactURL(req.URL))}
	}
	if req.URL.Scheme != "https" {
		for _, v := range via {
			if v.URL.Scheme == "https" {
				return fetch.Permanent(&redirectError{fmt.Sprintf("redirect from %s to %s leaves HTTPS: refused", redactURL(from), redactURL(req.URL))})
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

// redactURL shows a URL without userinfo and query values: a redirect target
// is often a pre-signed URL whose query is a credential.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		c.RawQuery = "REDACTED"
	}
	return c.String()
}

// requestError turns a failed round trip into one line that says what to do.
func requestError(ctx context.Context, err error) error {
	var re *redirectError
	if errors.As(err, &re) {
		if fetch.IsPermanent(err) {
			return fetch.Permanent(re)
		}
		return re
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its message repeats the URL, query included
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			return fmt.Errorf("timed out waiting for the server: %w", ctxErr)
		}
		return ctxErr
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return fetch.Permanent(fmt.Errorf("TLS: server certificate not trusted: %v (give its CA with --http-ca-file)", cve.Err))
	}
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) {
		return fmt.Errorf("TLS handshake failed: the server does not speak TLS on this port")
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("timed out: %w", err)
	}
	return fmt.Errorf("request failed: %w", err)
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue refuses control characters (CR and LF above all) in a
// value; tabs and bytes from 0x80 are allowed, as RFC 9110 allows them.
func validHeaderValue(s string) bool {
	for _, c := range []byte(s) {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
