package http_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/fetch"
	fhttp "github.com/ferrysync/ferry/fetch/http"
	"github.com/ferrysync/ferry/internal/sourcetest"
)

func TestBearerTokenIsSentAndNeverLogged(t *testing.T) {
	var want atomic.Value
	want.Store("tok-ONE-s3cr3t")
	o := newOrigin(t, true)
	o.set([]byte("conf\n"))
	inner := o.srv.Config.Handler
	o.srv.Config.Handler = nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.Header.Get("Authorization") != "Bearer "+want.Load().(string) {
			o.requests.Add(1)
			nethttp.Error(w, "no", nethttp.StatusUnauthorized)
			return
		}
		inner.ServeHTTP(w, r)
	})
	h := newHarness(t, fetch.Limits{})
	tokenFile := writeFile(t, t.TempDir(), "token", "tok-ONE-s3cr3t\n")
	s := h.source(t, o.url("/app.conf"), fhttp.Options{BearerTokenFile: tokenFile, CAFile: o.caFile(t)})
	var errs []string
	h.mustSync(t, s)
	h.mustSync(t, s) // 304
	// The server rotates first: refused, permanent, and the token unsaid.
	want.Store("tok-TWO-s3cr3t")
	r := h.sync(t, s)
	if r.err == nil || !strings.Contains(r.err.Error(), "credentials refused (HTTP 401") || !fetch.IsPermanent(r.err) {
		t.Fatalf("err = %v, want permanent refused credentials", r.err)
	}
	errs = append(errs, r.err.Error())
	// Then the Secret is rotated on disk: picked up without a restart.
	writeFile(t, filepath.Dir(tokenFile), "token", "tok-TWO-s3cr3t\n")
	o.set([]byte("conf 2\n"))
	h.mustSync(t, s)
	sourcetest.AssertTree(t, h.tree(t), map[string]string{"app.conf": "conf 2\n"})
	// And a missing file is a clear error naming the file.
	os.Remove(tokenFile)
	r = h.sync(t, s)
	if r.err == nil || !strings.Contains(r.err.Error(), "bearer token file: open "+tokenFile) {
		t.Fatalf("err = %v, want the missing token file named", r.err)
	}
	errs = append(errs, r.err.Error())

	logs := h.logs.String()
	if !strings.Contains(logs, "downloaded new revision") {
		t.Fatalf("logger captured nothing useful: %q", logs)
	}
	for _, text := range append(errs, logs) {
		if strings.Contains(text, "s3cr3t") {
			t.Fatalf("token leaked: %q", text)
		}
	}
}

func TestBasicAuthAndHeaderFileAreSentAndReRead(t *testing.T) {
	o := newOrigin(t, false)
	o.set([]byte("x"))
	dir := t.TempDir()
	pw := writeFile(t, dir, "pw", "p@ss word\n")
	headers := writeFile(t, dir, "headers", "# API access\n\nX-Api-Key: key-1\nX-Team:  blue \n")
	h := newHarness(t, fetch.Limits{})
	s := h.source(t, o.url("/x.conf"), fhttp.Options{Username: "deploy", PasswordFile: pw, HeaderFile: headers})
	h.mustSync(t, s)
	hdr := o.lastHeader()
	req := &nethttp.Request{Header: hdr}
	user, pass, ok := req.BasicAuth()
	if !ok || user != "deploy" || pass != "p@ss word" {
		t.Fatalf("basic auth %q/%q (%v), want deploy/\"p@ss word\"", user, pass, ok)
	}
	if hdr.Get("X-Api-Key") != "key-1" || hdr.Get("X-Team") != "blue" || hdr.Get("User-Agent") != "ferry" {
		t.Fatalf("headers %v", hdr)
	}
	writeFile(t, dir, "headers", "X-Api-Key: key-2\n")
	h.mustSync(t, s)
	if got := o.lastHeader().Get("X-Api-Key"); got != "key-2" {
		t.Fatalf("X-Api-Key %q after the file changed, want key-2", got)
	}
	if strings.Contains(h.logs.String(), "key-") || strings.Contains(h.logs.String(), "p@ss") {
		t.Fatal("a secret reached the log")
	}
}

// redirector answers /r/N with a redirect to /r/N-1 and /r/0 with a body.
func redirector(t *testing.T, requests *atomic.Int64) *httptest.Server {
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		requests.Add(1)
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/r/"))
		if n == 0 {
			w.Write([]byte("landed\n"))
			return
		}
		nethttp.Redirect(w, r, "/r/"+strconv.Itoa(n-1), nethttp.StatusFound)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRedirectsAreFollowedUpToFive(t *testing.T) {
	var n atomic.Int64
	srv := redirector(t, &n)
	h := newHarness(t, fetch.Limits{})
	h.mustSync(t, h.source(t, srv.URL+"/r/5?archive=false", fhttp.Options{}))
	sourcetest.AssertTree(t, h.tree(t), map[string]string{"5": "landed\n"})

	n.Store(0)
	r := h.sync(t, h.source(t, srv.URL+"/r/6?archive=false", fhttp.Options{}))
	assertOneLine(t, r.err)
	if !strings.Contains(r.err.Error(), "more than 5 redirects") {
		t.Fatalf("err = %v, want too many redirects", r.err)
	}
	if got := n.Load(); got != 6 {
		t.Fatalf("%d requests, want 6 (the first and 5 redirects)", got)
	}
}

func TestRedirectFromHTTPSToHTTPIsRefused(t *testing.T) {
	var plainHits atomic.Int64
	plain := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		plainHits.Add(1)
		w.Write([]byte("downgraded"))
	}))
	defer plain.Close()
	target := plain.URL + "/app.conf?X-Amz-Signature=sig-s3cr3t"
	secure := httptest.NewTLSServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		nethttp.Redirect(w, r, target, nethttp.StatusFound)
	}))
	defer secure.Close()
	o := &origin{srv: secure}
	h := newHarness(t, fetch.Limits{})
	r := h.sync(t, h.source(t, secure.URL+"/app.conf", fhttp.Options{CAFile: o.caFile(t)}))
	assertOneLine(t, r.err)
	msg := r.err.Error()
	if !strings.Contains(msg, "redirect from "+secure.URL+"/app.conf to "+plain.URL+"/app.conf?X-Amz-Signature=REDACTED leaves HTTPS: refused") {
		t.Fatalf("err = %v, want the refusal naming both URLs", r.err)
	}
	if strings.Contains(msg, "s3cr3t") {
		t.Fatalf("error shows the signed query: %v", msg)
	}
	if !fetch.IsPermanent(r.err) {
		t.Fatal("a downgrade refusal should be permanent")
	}
	if plainHits.Load() != 0 {
		t.Fatal("the http URL was requested")
	}
}

func TestCredentialsStayWithTheOriginalHost(t *testing.T) {
	cdn := newOrigin(t, false)
	cdn.set([]byte("from the CDN\n"))
	// Same loopback address, another name and port: another host.
	cdnURL := strings.Replace(cdn.url("/blob"), "127.0.0.1", "localhost", 1)
	var sameHostAuth atomic.Value
	first := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		switch r.URL.Path {
		case "/hop":
			nethttp.Redirect(w, r, "/app.conf", nethttp.StatusFound)
		case "/app.conf":
			sameHostAuth.Store(r.Header.Get("Authorization"))
			nethttp.Redirect(w, r, cdnURL, nethttp.StatusFound)
		}
	}))
	defer first.Close()
	dir := t.TempDir()
	h := newHarness(t, fetch.Limits{})
	s := h.source(t, first.URL+"/hop?archive=false", fhttp.Options{
		BearerTokenFile: writeFile(t, dir, "token", "tok"),
		HeaderFile:      writeFile(t, dir, "headers", "X-Api-Key: key\n"),
	})
	h.mustSync(t, s)
	sourcetest.AssertTree(t, h.tree(t), map[string]string{"hop": "from the CDN\n"})
	if got := sameHostAuth.Load(); got != "Bearer tok" {
		t.Fatalf("same-host redirect carried Authorization %q, want the token", got)
	}
	hdr := cdn.lastHeader()
	for _, k := range []string{"Authorization", "X-Api-Key", "Referer"} {
		if hdr.Get(k) != "" {
			t.Errorf("%s sent to another host: %q", k, hdr.Get(k))
		}
	}
	if hdr.Get("User-Agent") != "ferry" {
		t.Errorf("User-Agent %q", hdr.Get("User-Agent"))
	}
	// The validators do follow the redirect: the CDN answers 304.
	sent := cdn.bodyBytes.Load()
	if r := h.mustSync(t, s); r.wrote {
		t.Fatal("unchanged content written again")
	}
	if cdn.lastHeader().Get("If-None-Match") == "" || cdn.bodyBytes.Load() != sent {
		t.Fatal("the CDN behind the redirect got no validators and sent the body again")
	}
}

func TestUntrustedCertificateIsRefused(t *testing.T) {
	o := newOrigin(t, true)
	o.set([]byte("x"))
	h := newHarness(t, fetch.Limits{})
	r := h.sync(t, h.source(t, o.url("/x.conf"), fhttp.Options{}))
	assertOneLine(t, r.err)
	if !strings.Contains(r.err.Error(), "TLS: server certificate not trusted") || !strings.Contains(r.err.Error(), "CA file") {
		t.Fatalf("err = %v, want an untrusted-certificate error", r.err)
	}
	if !fetch.IsPermanent(r.err) {
		t.Fatal("certificate failures are permanent")
	}
}

func TestHTTPSToAPlainHTTPServerIsAClearError(t *testing.T) {
	plain := newOrigin(t, false)
	h := newHarness(t, fetch.Limits{})
	r := h.sync(t, h.source(t, strings.Replace(plain.url("/x.conf"), "http://", "https://", 1), fhttp.Options{}))
	assertOneLine(t, r.err)
	if !strings.Contains(r.err.Error(), "server gave HTTP response to HTTPS client") {
		t.Fatalf("err = %v, want a TLS handshake error", r.err)
	}
}

func TestInsecureSkipVerifyWarnsOnEverySync(t *testing.T) {
	o := newOrigin(t, true)
	o.set([]byte("x"))
	h := newHarness(t, fetch.Limits{})
	s := h.source(t, o.url("/x.conf"), fhttp.Options{InsecureSkipVerify: true})
	h.mustSync(t, s)
	h.mustSync(t, s)
	if n := strings.Count(h.logs.String(), "TLS certificate verification is disabled"); n != 2 {
		t.Fatalf("%d warnings for 2 syncs:\n%s", n, h.logs.String())
	}
}

func TestCAFileRotationIsPickedUp(t *testing.T) {
	o := newOrigin(t, true)
	o.set([]byte("x"))
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, otherCA(t), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fetch.Limits{})
	s := h.source(t, o.url("/x.conf"), fhttp.Options{CAFile: ca})
	if r := h.sync(t, s); r.err == nil {
		t.Fatal("trusted a server whose CA is not in the bundle")
	}
	data, _ := os.ReadFile(o.caFile(t))
	if err := os.WriteFile(ca, data, 0o644); err != nil {
		t.Fatal(err)
	}
	h.mustSync(t, s)
}

// otherCA is a PEM certificate unrelated to httptest's.
func otherCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
