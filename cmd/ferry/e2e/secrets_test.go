package e2e

// Secrets, from files or in URLs, never show in what ferry prints, serves
// or stores, whatever its origins answer.

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ferrysync/ferry/internal/testkit"
)

// secretMarker starts every secret of TestSecretsNeverShow: finding it
// anywhere ferry writes is a leak.
const secretMarker = "FERRYSECRET"

// secrets are the credentials one test configures, each recognisable.
var secrets = map[string]string{
	"--http-bearer-token-file": secretMarker + "-bearer-b7",
	"--http-header-file":       secretMarker + "-header-h7",
	"--http-password-file":     secretMarker + "-basic-p7",
	"--s3-access-key-file":     secretMarker + "s3access",
	"--s3-secret-key-file":     secretMarker + "-s3secret-s7",
	"--s3-session-token-file":  secretMarker + "-s3session-t7",
	"--sync-token-file":        secretMarker + "-sync-y7",
	"--git-password-file":      secretMarker + "-git-g7",
}

// reflector answers like a broken or hostile server that copies the
// request, its credentials included, into an error: as text, and as an S3
// XML error whose message a client might show.
func reflector(code int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var names []string
		for k := range r.Header {
			names = append(names, k)
		}
		sort.Strings(names)
		var b strings.Builder
		for _, k := range names {
			fmt.Fprintf(&b, "%s: %s; ", k, strings.Join(r.Header[k], ","))
		}
		fmt.Fprintf(&b, "URL: %s", r.URL.String())
		if r.URL.Query().Has("list-type") || strings.Count(strings.Trim(r.URL.Path, "/"), "/") >= 1 && r.Header.Get("X-Amz-Date") != "" {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(code)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>WeirdError</Code><Message>you sent %s</Message><RequestId>r1</RequestId></Error>`,
				strings.NewReplacer("<", "&lt;", "&", "&amp;").Replace(b.String()))
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="x"`)
		http.Error(w, "you sent "+b.String(), code)
	})
}

// breakable serves through the handler a test stored under name in
// broken, while there is one, and through next otherwise.
func breakable(broken *gosync.Map, name string, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := broken.Load(name); ok {
			h.(http.Handler).ServeHTTP(w, r)
			return
		}
		next(w, r)
	})
}

// failEachWay makes the named origins (see breakable) answer each code in
// turn, echoing the request (see reflector), and waits until every named
// source has failed on it, asking for a sync now rather than waiting for
// its backoff; then it calls after.
func failEachWay(t *testing.T, p *ferryProc, broken *gosync.Map, names []string, codes []int, after func()) {
	t.Helper()
	for _, code := range codes {
		for _, name := range names {
			broken.Store(name, reflector(code))
		}
		before := p.status()
		testkit.Eventually(t, 20*time.Second, fmt.Sprintf("%v to fail on HTTP %d", names, code), func() bool {
			now := p.status()
			for _, name := range names {
				if now[name].ConsecutiveFailures <= before[name].ConsecutiveFailures {
					httpPost("http://" + p.addr + "/sync?source=" + name)
					return false
				}
			}
			return true
		})
		after()
	}
}

// authChecker lets a request through to next only with the expected
// credentials, and remembers that they arrived: a secret never sent would
// make the test pass for nothing.
type authChecker struct {
	mu   gosync.Mutex
	seen map[string]bool
}

func (a *authChecker) saw(flag string) {
	a.mu.Lock()
	a.seen[flag] = true
	a.mu.Unlock()
}

// TestSecretsNeverShow configures every secret ferry takes, from files, each
// with a recognisable marker, makes every origin fail in every way it can,
// reflecting the credentials it received into its errors, and then looks
// for the markers in everything ferry shows or writes: stdout, stderr at
// debug level, /status, /metrics, /healthz, /readyz, the pull API, the
// status page, the errors of 'once', and every file under ROOT/.ferry
// outside the published revisions.
func TestSecretsNeverShow(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	files := map[string]string{}
	for flag, value := range secrets {
		p := filepath.Join(dir, strings.TrimPrefix(flag, "--"))
		content := value + "\n"
		if flag == "--http-header-file" {
			content = "X-Api-Key: " + value + "\n"
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		files[flag] = p
	}
	sshKey, sshMarkers, knownHosts := sshKeyFiles(t, dir)

	auth := &authChecker{seen: map[string]bool{}}
	var broken gosync.Map // origin name -> http.Handler (none: healthy)

	// HTTP with a bearer token and a header file.
	web := newTarOrigin(t)
	web.set(t, 1, nil)
	web.setFront(breakable(&broken, "web", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer "+secrets["--http-bearer-token-file"] {
			auth.saw("--http-bearer-token-file")
		}
		if r.Header.Get("X-Api-Key") == secrets["--http-header-file"] {
			auth.saw("--http-header-file")
		}
		web.serve(w, r)
	}))
	// S3 with static keys and a session token.
	bucket := newS3Origin(t)
	bucket.set(t, 1, nil)
	bucket.setFront(breakable(&broken, "bucket", func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Authorization"), "Credential="+secrets["--s3-access-key-file"]+"/") {
			auth.saw("--s3-access-key-file")
		}
		if r.Header.Get("X-Amz-Security-Token") == secrets["--s3-session-token-file"] {
			auth.saw("--s3-session-token-file")
		}
		bucket.direct.ServeHTTP(w, r)
	}))
	// git over HTTP with a password; git over SSH with a key, to a port
	// where nothing listens.
	repo := newGitOriginAuth(t, "ferry", secrets["--git-password-file"])
	repo.set(t, 1, nil)
	repo.setFront(breakable(&broken, "repo", func(w http.ResponseWriter, r *http.Request) {
		if _, p, ok := r.BasicAuth(); ok && p == secrets["--git-password-file"] {
			auth.saw("--git-password-file")
		}
		repo.handler.ServeHTTP(w, r)
	}))
	deadSSH := testkit.FreeAddr(t)

	root := t.TempDir()
	args := []string{"--log-level", "debug", "--period", "200ms", "--timeout", "5s",
		"--source", "web=" + web.url(),
		"--http-bearer-token-file", files["--http-bearer-token-file"], "--http-header-file", files["--http-header-file"],
		"--source", "bucket=s3::" + bucket.srv.URL + "/ferry/conf/",
		"--s3-access-key-file", files["--s3-access-key-file"], "--s3-secret-key-file", files["--s3-secret-key-file"],
		"--s3-session-token-file", files["--s3-session-token-file"],
		"--source", "repo=" + repo.url(), "--git-username", "ferry", "--git-password-file", files["--git-password-file"],
		"--source", "sshrepo=git::ssh://git@" + deadSSH + "/config.git", "--git-ssh-key-file", sshKey, "--git-known-hosts-file", knownHosts,
		"--sync-token-file", files["--sync-token-file"],
	}
	p := startFerry(t, procOptions{root: root, args: args})
	testkit.Eventually(t, 30*time.Second, "web, bucket and repo published", func() bool {
		st := p.status()
		return st["web"].Revision != "" && st["bucket"].Revision != "" && st["repo"].Revision != "" && st["sshrepo"].ConsecutiveFailures > 0
	})
	var seen []string
	collect := func() {
		seen = append(seen, p.get("/status"), p.get("/metrics"), p.get("/healthz"), p.get("/readyz"), p.get("/v1/sources"),
			p.get("/"), eventsSoFar(t, "http://"+p.addr+"/v1/events"))
	}
	collect()

	// Every origin breaks, in each way, echoing what it was sent.
	failEachWay(t, p, &broken, []string{"web", "bucket", "repo"},
		[]int{http.StatusInternalServerError, http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden}, collect)
	if code, _ := p.term(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	seen = append(seen, p.stdout.String(), p.stderr.String())

	// 'once' against the broken origins: its final error too.
	// (Without the last two arguments, --sync-token-file: 'once' serves no
	// endpoints.)
	onceArgs := append(append([]string(nil), args[:len(args)-2]...), "--once-timeout", "1s")
	once := startFerry(t, procOptions{root: t.TempDir(), once: true, args: onceArgs})
	if code := once.wait(30 * time.Second); code != 1 {
		t.Errorf("once against failing origins: exit %d, want 1", code)
	}
	seen = append(seen, once.stdout.String(), once.stderr.String())

	for i, s := range seen {
		if strings.Contains(s, secretMarker) {
			t.Errorf("a secret shows in output %d:\n%s", i, around(s, secretMarker))
		}
		for _, m := range sshMarkers {
			if strings.Contains(s, m) {
				t.Errorf("the SSH private key shows in output %d:\n%s", i, around(s, m))
			}
		}
	}
	walkOutsideRevisions(t, root, func(path string, data []byte) {
		if strings.Contains(string(data), secretMarker) {
			t.Errorf("a secret is stored in %s:\n%s", path, around(string(data), secretMarker))
		}
	})

	auth.mu.Lock()
	defer auth.mu.Unlock()
	for _, flag := range []string{"--http-bearer-token-file", "--http-header-file", "--s3-access-key-file", "--s3-session-token-file", "--git-password-file"} {
		if !auth.seen[flag] {
			t.Errorf("the origin never received the secret of %s: the test proves nothing about it", flag)
		}
	}
	if len(strings.Join(seen, "")) < 10_000 {
		t.Errorf("suspiciously little output to search (%d bytes)", len(strings.Join(seen, "")))
	}
}

// TestBasicAuthPasswordNeverShows is the HTTP basic-auth secret, which
// cannot go with a bearer token in one process.
func TestBasicAuthPasswordNeverShows(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pw := filepath.Join(dir, "password")
	os.WriteFile(pw, []byte(secrets["--http-password-file"]+"\n"), 0o600)
	var broken gosync.Map
	got := make(chan bool, 100)
	web := newTarOrigin(t)
	web.set(t, 1, nil)
	web.setFront(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := broken.Load("x"); ok {
			h.(http.Handler).ServeHTTP(w, r)
			return
		}
		_, p, _ := r.BasicAuth()
		select {
		case got <- p == secrets["--http-password-file"]:
		default:
		}
		web.serve(w, r)
	}))
	root := t.TempDir()
	p := startFerry(t, procOptions{root: root, args: []string{"--log-level", "debug", "--period", "100ms",
		"--source", "web=" + web.url(), "--http-username", "deploy", "--http-password-file", pw}})
	testkit.Eventually(t, 20*time.Second, "published", func() bool { return p.status()["web"].Revision != "" })
	if !<-got {
		t.Fatal("the origin did not receive the password")
	}
	var seen []string
	for _, code := range []int{500, 401} {
		broken.Store("x", reflector(code))
		testkit.Eventually(t, 20*time.Second, "a failure", func() bool { return p.status()["web"].ConsecutiveFailures > 0 })
		seen = append(seen, p.get("/status"), p.get("/metrics"), p.get("/v1/sources"), p.get("/"), eventsSoFar(t, "http://"+p.addr+"/v1/events"))
		broken.Delete("x")
		testkit.Eventually(t, 20*time.Second, "recovery", func() bool { return p.status()["web"].ConsecutiveFailures == 0 })
	}
	p.term()
	seen = append(seen, p.stdout.String(), p.stderr.String())
	for _, s := range seen {
		if strings.Contains(s, secretMarker) {
			t.Errorf("the password shows:\n%s", around(s, secretMarker))
		}
	}
	walkOutsideRevisions(t, root, func(path string, data []byte) {
		if strings.Contains(string(data), secretMarker) {
			t.Errorf("the password is stored in %s", path)
		}
	})
}

// sshKeyFiles writes an SSH private key and a known_hosts file; it returns
// pieces of the key's encoding that must never show.
func sshKeyFiles(t *testing.T, dir string) (key string, markers []string, knownHostsFile string) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	key = filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString(block.Bytes)
	for i := 0; i+24 <= len(b64); i += 24 {
		markers = append(markers, b64[i:i+24])
	}
	hostPub, _, _ := ed25519.GenerateKey(rand.Reader)
	pub, _ := ssh.NewPublicKey(hostPub)
	knownHostsFile = filepath.Join(dir, "known_hosts")
	os.WriteFile(knownHostsFile, []byte(knownhosts.Line([]string{"127.0.0.1"}, pub)+"\n"), 0o600)
	return key, markers, knownHostsFile
}

// around returns the text around the first occurrence of marker.
func around(s, marker string) string {
	i := strings.Index(s, marker)
	if i < 0 {
		return ""
	}
	lo, hi := max(0, i-300), min(len(s), i+200)
	return s[lo:hi]
}

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
		// url.Parse quotes what it cannot read: a password typed without
		// its user reads as a port.
		{"password with a slash in it", "once", "--source", "cfg=git::https://user:pa/" + urlSecretMarker + "@127.0.0.1/r.git", "source URL"},
		{"password with a hash in it", "once", "--source", "cfg=https://tok:" + urlSecretMarker + "#x@127.0.0.1/r.git", "source URL"},
		{"password with a colon-led digit in it", "once", "--source", "cfg=https://user:" + urlSecretMarker + "/x@127.0.0.1/r.git", "invalid port"},
		{"file URL with a query", "once", "--source", "cfg=file:///etc/conf?token=" + urlSecretMarker, "takes no options"},
		{"checksum file URL that does not parse", "once", "--source", "cfg=https://127.0.0.1:1/b.tgz?checksum=file:https%3A%2F%2F127.0.0.1%2FS%01UMS%3Fsig%3D" + urlSecretMarker, "checksum=file:"},
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
// show in the logs (debug level), /status, /metrics, the pull API, the
// status page (notify results included), the errors of 'once', or the
// files ferry keeps beside the revisions. (S3 URLs take no secret:
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
	collect := func() {
		seen = append(seen, p.get("/status"), p.get("/metrics"), p.get("/v1/sources"), p.get("/"), eventsSoFar(t, "http://"+p.addr+"/v1/events"))
	}

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
