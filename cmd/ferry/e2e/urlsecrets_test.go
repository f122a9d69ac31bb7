package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testkit"
)

// urlSecretMarker starts every secret that TestURLSecretsNeverShow puts
// into a URL: finding it anywhere ferry writes is a leak.
const urlSecretMarker = "FERRYURLSECRET"

// urlSecretParams are query parameter names that carry credentials in the
// wild (GitLab, OAuth, JWT, sessions, API gateways, pre-signed URLs), a
// ferry option in another case, and names nobody has thought of yet: two
// random ones per run, so that no list of known names makes it pass.
func urlSecretParams(t *testing.T) []string {
	names := []string{
		"private_token", "client_secret", "key", "jwt", "code", "session", "X-Auth-Token",
		"sig", "signature", "token", "access_token", "password", "api_key", "X-Amz-Signature",
		"Ref", "x9_unheard-of",
	}
	for range 2 {
		b := make([]byte, 4)
		rand.Read(b)
		names = append(names, "p"+hex.EncodeToString(b))
	}
	t.Logf("parameter names: %v", names)
	return names
}

// secretQuery returns a query giving each name a secret value of its own.
func secretQuery(names []string) string {
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s=%s-%02d", url.QueryEscape(n), urlSecretMarker, i)
	}
	return strings.Join(parts, "&")
}

// noURLSecret fails when out holds a URL secret, and when it does not say
// REDACTED where it should show a URL: a test that saw no URL proves
// nothing.
func noURLSecret(t *testing.T, what, out string, wantRedacted bool) {
	t.Helper()
	if strings.Contains(out, urlSecretMarker) {
		t.Errorf("%s shows a URL secret:\n%s", what, around(out, urlSecretMarker))
	}
	if wantRedacted && !strings.Contains(out, "REDACTED") {
		t.Errorf("%s shows no redacted URL, so it proves nothing:\n%s", what, testkit.Clip(out, 2000))
	}
}

// TestURLSecretsInvalidConfigurationNeverShow gives every source kind, and
// --notify-url, URLs that are refused before any network access (exit 2),
// each with a secret in the query under every parameter name: the errors
// show the URL, with every value that is not one of ferry's options
// REDACTED. Before the allowlist, the denylist let private_token,
// client_secret, key, jwt, code, session and X-Auth-Token through.
func TestURLSecretsInvalidConfigurationNeverShow(t *testing.T) {
	t.Parallel()
	q := secretQuery(urlSecretParams(t))
	for _, tc := range []struct{ name, cmd, flag, value, want string }{
		{"git option unknown", "once", "--source", "cfg=git::https://127.0.0.1:1/r.git?ref=main&" + q, "git option"},
		// A second "?" typed by mistake makes the secret part of an option's
		// value: the backend's own message must not echo it.
		{"git ref with a query typed into it", "once", "--source", "cfg=git::https://127.0.0.1:1/r.git?ref=main?private_token=" + urlSecretMarker, "git option ref"},
		{"git depth with a query typed into it", "once", "--source", "cfg=git::https://127.0.0.1:1/r.git?depth=1?private_token=" + urlSecretMarker, "git option depth"},
		{"http archive with a query typed into it", "once", "--source", "cfg=https://127.0.0.1:1/b.tgz?archive=tgz?private_token=" + urlSecretMarker, "archive="},
		{"git over SSH without a key", "once", "--source", "cfg=git::ssh://git@127.0.0.1:1/r.git?" + q, "git-ssh-key-file"},
		{"http archive invalid", "once", "--source", "cfg=https://127.0.0.1:1/b.tgz?archive=rar&" + q, `archive="rar"`},
		{"http checksum invalid", "once", "--source", "cfg=https://127.0.0.1:1/b.tgz?checksum=sha256:zz&" + q, "checksum"},
		{"s3 option unknown", "once", "--source", "cfg=s3::http://127.0.0.1:1/bucket/conf/?" + q, "unknown S3 URL option"},
		{"s3 pre-signed URL", "once", "--source", "cfg=https://bucket.s3.eu-west-1.amazonaws.com/app.yaml?" + q, "unknown S3 URL option"},
		{"s3 endpoint with a query", "once", "--s3-endpoint", "http://127.0.0.1:1/?" + q, "--s3-endpoint"},
		{"subdir leaving the source", "once", "--source", "cfg=https://127.0.0.1:1/b.tgz//../../etc?" + q, "leaves the source"},
		{"unknown kind", "once", "--source", "cfg=gopher://127.0.0.1:1/x?" + q, "unknown kind"},
		{"no scheme", "once", "--source", "cfg=conf/dir?" + q, "not a URL"},
		{"invalid name", "once", "--source", "..=https://127.0.0.1:1/a.yaml?" + q, "invalid name"},
		{"notify without a scheme", "run", "--notify-url", "127.0.0.1:1/-/reload?" + q, "put http:// in front"},
		{"notify with another scheme", "run", "--notify-url", "ftp://127.0.0.1:1/-/reload?" + q, "need an http:// or https:// URL"},
		{"notify with credentials", "run", "--notify-url", "http://" + urlSecretMarker + "@127.0.0.1:1/-/reload?" + q, "credentials in the URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{tc.cmd, "--root", t.TempDir() + "/root", "--http-addr", "", tc.flag, tc.value}
			switch tc.flag {
			case "--s3-endpoint":
				args = append(args, "--source", "cfg=s3://bucket/conf/", "--s3-anonymous")
			case "--notify-url":
				args = append(args, "--source", "cfg="+t.TempDir())
			}
			code, stdout, stderr := runToEnd(t, args...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, want 2 and an error with %q:\n%s", code, tc.want, testkit.Clip(stderr, 2000))
			}
			noURLSecret(t, "the error", stdout+stderr, true)
		})
	}
}

// TestURLSecretsNeverShow runs ferry with a secret under every parameter
// name in the query of an HTTP source, a token as the user name of git
// sources (smart HTTP), and secrets in the query of three notify URLs,
// then takes each through every path: success; an origin that is
// unreachable, answers 404, 401 or 500 with the request echoed in its
// page; a notify answered 500 (echoing), refused, timed out. No secret may
// show in the logs (debug level), /status, /metrics, the errors of 'once',
// or the files ferry keeps beside the revisions. (S3 URLs take no secret:
// every one is refused up front, see
// TestURLSecretsInvalidConfigurationNeverShow.)
func TestURLSecretsNeverShow(t *testing.T) {
	t.Parallel()
	query := secretQuery(urlSecretParams(t))
	gitToken := urlSecretMarker + "-git-user"

	var broken gosync.Map // origin name -> http.Handler answering instead
	var mu gosync.Mutex
	var sawQuery, sawGitToken bool
	web := newTarOrigin(t)
	web.set(t, 1, nil)
	web.setFront(breakable(&broken, "web", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sawQuery = sawQuery || r.URL.RawQuery == query
		mu.Unlock()
		web.serve(w, r)
	}))
	repo := newGitOrigin(t)
	repo.set(t, 1, nil)
	repo.setFront(breakable(&broken, "repo", func(w http.ResponseWriter, r *http.Request) {
		if u, _, ok := r.BasicAuth(); ok && u == gitToken {
			mu.Lock()
			sawGitToken = true
			mu.Unlock()
		}
		repo.handler.ServeHTTP(w, r)
	}))
	// The app's reload endpoints: one answers 500 with the request in its
	// page, one never answers, one is not listening.
	echo500 := quietServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "reload failed for "+r.URL.String(), http.StatusInternalServerError)
	}))
	t.Cleanup(echo500.Close)
	hang := quietServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // then the server sees the client hang up
		<-r.Context().Done()
	}))
	t.Cleanup(hang.Close)
	notifyTargets := []string{echo500.URL + "/-/reload", hang.URL + "/-/reload", "http://" + testkit.FreeAddr(t) + "/-/reload"}
	gitURL := func(addr string) string {
		return "git::http://" + gitToken + "@" + addr + "/config.git?ref=main"
	}

	args := []string{"--log-level", "debug", "--period", "200ms", "--timeout", "5s",
		"--source", "web=" + web.url() + "?" + query,
		"--source", "deadweb=http://" + testkit.FreeAddr(t) + "/app.yaml?" + query,
		"--source", "repo=" + gitURL(strings.TrimPrefix(repo.srv.URL, "http://")),
		"--source", "deadrepo=" + gitURL(testkit.FreeAddr(t)),
		"--notify-timeout", "300ms", "--notify-max-elapsed", "1s",
	}
	for _, n := range notifyTargets {
		args = append(args, "--notify-url", n+"?"+query)
	}
	root := t.TempDir()
	p := startFerry(t, procOptions{root: root, args: args})
	var seen []string
	collect := func() { seen = append(seen, p.get("/status"), p.get("/metrics")) }

	testkit.Eventually(t, 30*time.Second, "web and repo published, deadweb and deadrepo failing", func() bool {
		st := p.status()
		return st["web"].Revision != "" && st["repo"].Revision != "" &&
			st["deadweb"].ConsecutiveFailures > 0 && st["deadrepo"].ConsecutiveFailures > 0
	})
	collect()
	if st := p.status(); !strings.Contains(st["web"].URL, "private_token=REDACTED") || !strings.HasPrefix(st["repo"].URL, "git::http://REDACTED@") {
		t.Errorf("/status does not show the redacted URLs: %q, %q", st["web"].URL, st["repo"].URL)
	}

	// A new revision, told to every notify URL, each failing its way.
	web.set(t, 2, nil)
	testkit.Eventually(t, 30*time.Second, "every notify to fail for good", func() bool {
		for _, n := range notifyTargets {
			if p.metric("ferry_notify_total", "target", n, "result", "failed") < 1 {
				return false
			}
		}
		return true
	})
	collect()

	failEachWay(t, p, &broken, []string{"web", "repo"},
		[]int{http.StatusNotFound, http.StatusUnauthorized, http.StatusInternalServerError}, collect)
	if code, _ := p.term(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	seen = append(seen, p.stdout.String(), p.stderr.String())

	// 'once' against the broken origins ends with their errors.
	var onceArgs []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--notify-url" || args[i] == "--notify-timeout" || args[i] == "--notify-max-elapsed" {
			i++ // 'once' tells no app
			continue
		}
		onceArgs = append(onceArgs, args[i])
	}
	once := startFerry(t, procOptions{root: t.TempDir(), once: true, args: append(onceArgs, "--once-timeout", "1s")})
	if code := once.wait(30 * time.Second); code != 1 {
		t.Errorf("once against failing origins: exit %d, want 1", code)
	}
	seen = append(seen, once.stdout.String(), once.stderr.String())

	for i, s := range seen {
		noURLSecret(t, fmt.Sprintf("output %d", i), s, false)
	}
	logs := p.stderr.String()
	for _, want := range []string{"not found", "HTTP 401", "HTTP 500", "connection refused", "notify gave up", "Client.Timeout"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the logs never mention %q: a path was not taken", want)
		}
	}
	walkOutsideRevisions(t, root, func(path string, data []byte) {
		if strings.Contains(string(data), urlSecretMarker) {
			t.Errorf("a URL secret is stored in %s:\n%s", path, around(string(data), urlSecretMarker))
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if !sawQuery || !sawGitToken {
		t.Errorf("the origins did not receive the secrets (query %v, git user %v): the test proves nothing", sawQuery, sawGitToken)
	}
}
