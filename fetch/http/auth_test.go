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
	f := newFixture(t)
	tokenFile := writeFile(t, t.TempDir(), "token", "tok-ONE-s3cr3t\n")
	s := f.source(t, o.url("/app.conf"), fhttp.Options{BearerTokenFile: tokenFile, CAFile: o.caFile(t)})
	first := mustFetch(t, s, "")
	mustFetch(t, s, first.rev) // 304
	// The server rotates first: refused, permanent, and the token unsaid.
	want.Store("tok-TWO-s3cr3t")
	r := fetchFrom(t, s, first.rev)
	assertError(t, r.err, "credentials refused (HTTP 401", true)
	errs := []string{r.err.Error()}
	// Then the Secret is rotated on disk: picked up without a restart.
	writeFile(t, filepath.Dir(tokenFile), "token", "tok-TWO-s3cr3t\n")
	o.set([]byte("conf 2\n"))
	r = mustFetch(t, s, first.rev)
	sourcetest.AssertTree(t, r.w.Tree(), map[string]string{"app.conf": "conf 2\n"})
	// And a missing file is a clear error naming the file.
	os.Remove(tokenFile)
	r = fetchFrom(t, s, first.rev)
	assertError(t, r.err, "bearer token file: open "+tokenFile, false)
	errs = append(errs, r.err.Error())

	logs := f.logs.String()
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
	f := newFixture(t)
	s := f.source(t, o.url("/x.conf"), fhttp.Options{Username: "deploy", PasswordFile: pw, HeaderFile: headers})
	mustFetch(t, s, "")
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
	mustFetch(t, s, "")
	if got := o.lastHeader().Get("X-Api-Key"); got != "key-2" {
		t.Fatalf("X-Api-Key %q after the file changed, want key-2", got)
	}
	if strings.Contains(f.logs.String(), "key-") || strings.Contains(f.logs.String(), "p@ss") {
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
	f := newFixture(t)
	r := mustFetch(t, f.source(t, srv.URL+"/r/5?archive=false", fhttp.Options{}), "")
	sourcetest.AssertTree(t, r.w.Tree(), map[string]string{"5": "landed\n"})

	n.Store(0)
	r = fetchFrom(t, f.source(t, srv.URL+"/r/6?archive=false", fhttp.Options{}), "")
	assertError(t, r.err, "more than 5 redirects", false)
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
	r := fetchFrom(t, newFixture(t).source(t, secure.URL+"/app.conf", fhttp.Options{CAFile: o.caFile(t)}), "")
	assertError(t, r.err, "redirect from "+secure.URL+"/app.conf to "+plain.URL+"/app.conf?X-Amz-Signature=REDACTED leaves HTTPS: refused", true)
	if strings.Contains(r.err.Error(), "s3cr3t") {
		t.Fatalf("error shows the signed query: %v", r.err)
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
	s := newFixture(t).source(t, first.URL+"/hop?archive=false", fhttp.Options{
		BearerTokenFile: writeFile(t, dir, "token", "tok"),
		HeaderFile:      writeFile(t, dir, "headers", "X-Api-Key: key\n"),
	})
	r := mustFetch(t, s, "")
	sourcetest.AssertTree(t, r.w.Tree(), map[string]string{"hop": "from the CDN\n"})
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
	if r := mustFetch(t, s, r.rev); !r.w.Empty() {
		t.Fatal("unchanged content written again")
	}
	if cdn.lastHeader().Get("If-None-Match") == "" || cdn.bodyBytes.Load() != sent {
		t.Fatal("the CDN behind the redirect got no validators and sent the body again")
	}
}

func TestUntrustedCertificateIsRefused(t *testing.T) {
	o := newOrigin(t, true)
	o.set([]byte("x"))
	r := fetchFrom(t, newFixture(t).source(t, o.url("/x.conf"), fhttp.Options{}), "")
	assertError(t, r.err, "TLS: server certificate not trusted", true)
	assertError(t, r.err, "(give its CA certificate in a CA file)", true)
}

func TestHTTPSToAPlainHTTPServerIsAClearError(t *testing.T) {
	plain := newOrigin(t, false)
	r := fetchFrom(t, newFixture(t).source(t, strings.Replace(plain.url("/x.conf"), "http://", "https://", 1), fhttp.Options{}), "")
	assertError(t, r.err, "server gave HTTP response to HTTPS client", false)
}

func TestInsecureSkipVerifyWarnsOnEverySync(t *testing.T) {
	o := newOrigin(t, true)
	o.set([]byte("x"))
	f := newFixture(t)
	s := f.source(t, o.url("/x.conf"), fhttp.Options{InsecureSkipVerify: true})
	first := mustFetch(t, s, "")
	mustFetch(t, s, first.rev)
	if n := strings.Count(f.logs.String(), "TLS certificate verification is disabled"); n != 2 {
		t.Fatalf("%d warnings for 2 syncs:\n%s", n, f.logs.String())
	}
}

func TestCAFileRotationIsPickedUp(t *testing.T) {
	o := newOrigin(t, true)
	o.set([]byte("x"))
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, otherCA(t), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newFixture(t).source(t, o.url("/x.conf"), fhttp.Options{CAFile: ca})
	if r := fetchFrom(t, s, ""); r.err == nil {
		t.Fatal("trusted a server whose CA is not in the bundle")
	}
	data, _ := os.ReadFile(o.caFile(t))
	if err := os.WriteFile(ca, data, 0o644); err != nil {
		t.Fatal(err)
	}
	mustFetch(t, s, "")
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
