package git_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/git"
)

// fakeGitHub is GitHub's installation token endpoint: it checks the JWT
// against the app's public key and claims, and hands out tokens that
// expire after life; the git server behind it takes only the newest.
type fakeGitHub struct {
	t              *testing.T
	key            *rsa.PrivateKey
	appID, install int
	life           time.Duration

	mu     gosync.Mutex
	mints  int
	token  string
	jwts   []string
	denied int // git requests refused
}

func (f *fakeGitHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != fmt.Sprintf("/app/installations/%d/access_tokens", f.install) {
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"message":"Not Found"}`))
		return
	}
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	claims := &jwt.RegisteredClaims{}
	_, err := jwt.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return &f.key.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(fmt.Sprint(f.appID)), jwt.WithIssuedAt())
	switch {
	case !ok || err != nil:
		f.t.Errorf("JWT refused: %v", err)
	case claims.ExpiresAt.Sub(claims.IssuedAt.Time) > 10*time.Minute:
		f.t.Errorf("JWT valid for %s, more than GitHub's 10 minutes", claims.ExpiresAt.Sub(claims.IssuedAt.Time))
	case time.Since(claims.IssuedAt.Time) < 50*time.Second:
		f.t.Errorf("JWT issued %s ago, want about 60 s in the past against clock drift", time.Since(claims.IssuedAt.Time))
	}
	if err != nil {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	f.mu.Lock()
	f.mints++
	f.token = fmt.Sprintf("ghs_token%d", f.mints)
	f.jwts = append(f.jwts, raw)
	tok := f.token
	f.mu.Unlock()
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(map[string]any{"token": tok, "expires_at": time.Now().Add(f.life).UTC().Format(time.RFC3339)})
}

// git lets through only the current token, as x-access-token.
func (f *fakeGitHub) git(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		f.mu.Lock()
		ok := u == "x-access-token" && p != "" && p == f.token
		if !ok {
			f.denied++
		}
		f.mu.Unlock()
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (f *fakeGitHub) count() (mints int, token string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mints, f.token
}

func writeRSAKey(t *testing.T) (*rsa.PrivateKey, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "app.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(p, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return key, p
}

// TestGitHubAppTokensAreMintedCachedAndRefreshed: ferry signs a JWT the
// fake API accepts, uses the token it gets for git over HTTP, keeps it
// while it has more than 5 minutes to live, and mints a new one after.
func TestGitHubAppTokensAreMintedCachedAndRefreshed(t *testing.T) {
	t.Parallel()
	key, keyFile := writeRSAKey(t)
	// Renewed 5 minutes before expiry: this token is good for 3 s more.
	gh := &fakeGitHub{t: t, key: key, appID: 7, install: 42, life: 5*time.Minute + 3*time.Second}
	api := httptest.NewServer(gh)
	t.Cleanup(api.Close)
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	srv := serveHTTP(t, base, gh.git)
	o := git.Options{GitHubAppID: 7, GitHubAppInstallationID: 42, GitHubAppPrivateKeyFile: keyFile, GitHubAPIURL: api.URL}

	r.set(map[string]string{"a": "1"})
	src, logs := newSource(t, srv.url("r.git"), o, t.TempDir())
	rev1, _ := mustFetch(t, src)
	if n, _ := gh.count(); n != 1 {
		t.Fatalf("%d tokens minted for the first fetch, want 1", n)
	}
	r.set(map[string]string{"a": "2"})
	rev2, w := mustFetch(t, src)
	if n, _ := gh.count(); n != 1 || rev2 == rev1 || w.Tree()["a"] != "2" {
		t.Fatalf("second fetch: %d tokens minted (want the cached one), revision %s, tree %v", n, rev2, w.Tree())
	}

	time.Sleep(3500 * time.Millisecond)
	r.set(map[string]string{"a": "3"})
	_, w = mustFetch(t, src)
	n, tok := gh.count()
	if n != 2 || w.Tree()["a"] != "3" {
		t.Fatalf("after the token neared its expiry: %d minted, want 2; tree %v", n, w.Tree())
	}
	gh.mu.Lock()
	secrets := append([]string{tok, "ghs_token1"}, gh.jwts...)
	gh.mu.Unlock()
	for _, s := range secrets {
		if strings.Contains(logs.String(), s) {
			t.Fatalf("logs show a token or JWT:\n%s", logs)
		}
	}
}

func TestGitHubAppErrorsArePermanentAndShowNoSecret(t *testing.T) {
	t.Parallel()
	key, keyFile := writeRSAKey(t)
	gh := &fakeGitHub{t: t, key: key, appID: 7, install: 42, life: time.Hour}
	api := httptest.NewServer(gh)
	t.Cleanup(api.Close)
	base := t.TempDir()
	newRepo(t, base, "r.git").set(map[string]string{"a": "1"})
	srv := serveHTTP(t, base, gh.git)

	wrong := git.Options{GitHubAppID: 7, GitHubAppInstallationID: 43, GitHubAppPrivateKeyFile: keyFile, GitHubAPIURL: api.URL}
	src, _ := newSource(t, srv.url("r.git"), wrong, t.TempDir())
	_, _, err := fetchMem(t, src, "")
	if err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), "installation 43") || !strings.Contains(err.Error(), "404") || strings.Contains(err.Error(), "eyJ") {
		t.Fatalf("err = %v, want a permanent 404 naming the installation, without the JWT", err)
	}
	assertOneLine(t, err)

	for _, tc := range []struct {
		o    git.Options
		want string
	}{
		{git.Options{GitHubAppID: 7}, "GitHubAppInstallationID"},
		{git.Options{GitHubAppID: 7, GitHubAppInstallationID: 1, GitHubAppPrivateKeyFile: filepath.Join(t.TempDir(), "none")}, "GitHubAppPrivateKeyFile"},
		{git.Options{GitHubAppID: 7, GitHubAppInstallationID: 1, GitHubAppPrivateKeyFile: keyFile, PasswordFile: keyFile}, "not both"},
		{git.Options{GitHubAPIURL: "ftp://x"}, "GitHubAPIURL"},
	} {
		if err := tc.o.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want one naming %s", tc.o, err, tc.want)
		}
	}
}
