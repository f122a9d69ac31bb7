package api_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/signal"

	"github.com/ferrysync/ferry/api"
	"github.com/ferrysync/ferry/sync"
)

func at(d time.Duration) *time.Time {
	t := time.Now().Add(-d)
	return &t
}

// hostile is what an origin may put into an error: markup that must show
// as text.
const hostile = `<script>alert("x")</script><img src=x onerror=alert(1)>`

// pageSources are one source in each state the page shows.
var pageSources = []sync.SourceStatus{
	{Name: "web", URL: "https://conf.example/app.tar.gz", Path: "/config/web", Revision: "r-web-2", PreviousRevision: "r-web-1",
		Published: at(3 * time.Minute), LastAttempt: at(time.Second), LastSuccess: at(time.Second)},
	{Name: "repo", URL: "git::https://git.example/repo.git?ref=main", Revision: "r-repo-1", Published: at(time.Hour),
		LastAttempt: at(time.Second), LastSuccess: at(time.Minute), ConsecutiveFailures: 4, LastError: "git fetch: HTTP 500: " + hostile},
	{Name: "flags", URL: "https://flags.example/f.json", Revision: "r-flags-1", Published: at(time.Hour),
		LastAttempt: at(2 * time.Second), LastSuccess: at(2 * time.Second),
		RejectedRevision: "r-flags-2", RejectedReason: "syntax: f.json:1:2: invalid character", Rejected: at(time.Minute)},
	{Name: "old", URL: "file:///srv/old", Revision: "r-old-1", Published: at(72 * time.Hour), LastAttempt: at(time.Second),
		LastSuccess: at(72 * time.Hour), ConsecutiveFailures: 900, LastError: "open /srv/old: no such file", Stale: true},
	{Name: "new", URL: "s3::https://s3.example/b/p/", LastAttempt: at(time.Second), ConsecutiveFailures: 2, LastError: "no such bucket", Stale: true},
}

func servePage(t *testing.T, s api.Syncer, o api.Options) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(api.Handler(s, o))
	t.Cleanup(srv.Close)
	return srv
}

// TestStatusPageShowsEachSourceAtAGlance: every source in its state, with
// its revisions, its error in full and escaped, its notify results, and
// the newest 50 events, newest first.
func TestStatusPageShowsEachSourceAtAGlance(t *testing.T) {
	var events []sync.Event
	for i := 1; i <= 60; i++ {
		events = append(events, sync.Event{ID: uint64(i), Time: time.Now(), Source: "web", Kind: "published", Revision: fmt.Sprintf("rev-%02d", i)})
	}
	events = append(events, sync.Event{ID: 61, Time: time.Now(), Source: "repo", Kind: "failing", Revision: "r-repo-1", Error: "HTTP 500: " + hostile})
	results := []signal.Result{
		{Target: "http://127.0.0.1:9090/-/reload", Source: "web", Revision: "r-web-2", Outcome: "ok", Time: time.Now()},
		{Target: "http://127.0.0.1:9091/reload?token=REDACTED", Source: "web", Revision: "r-web-2", Outcome: "retry", Time: time.Now(), Err: "HTTP 503: busy " + hostile},
		{Target: "http://127.0.0.1:9090/-/reload", Source: "repo"},
	}
	notify := func(source string) []signal.Result {
		var out []signal.Result
		for _, r := range results {
			if r.Source == source {
				out = append(out, r)
			}
		}
		return out
	}
	srv := servePage(t, statusSyncer{status: pageSources, events: events}, api.Options{Notify: notify})
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	body := string(b)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET / = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	for name, state := range map[string]string{"web": "green", "repo": "failing", "flags": "rejected", "old": "stale", "new": "waiting"} {
		if !strings.Contains(body, fmt.Sprintf(`<section class="source s-%s" id="source-%s">`, state, name)) {
			t.Errorf("source %s is not shown as %s", name, state)
		}
	}
	for _, want := range []string{
		`<code class="revision">r-web-2</code>, published <time datetime=`, ">3m ago</time>",
		"<code>r-web-1</code>", // previous
		"<code>r-flags-2</code>", "syntax: f.json:1:2: invalid character",
		"<title>ferry: 1 stale, 1 failing, 1 rejected, 1 waiting, 1 green</title>",
		"none published yet",
		"4 failed in a row",
		"HTTP 503: busy &lt;script&gt;", "nothing told yet", `<span class="result r-retry">retry</span>`,
		"no notify targets configured", // flags, old and new have none
		"rev-60", "rev-12",             // the newest 50 of 61
		`<main data-last-event="61">`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(body, "rev-11<") {
		t.Error("the page lists more than the newest 50 events")
	}
	if strings.Index(body, "rev-60") > strings.Index(body, "rev-59") {
		t.Error("events are not newest first")
	}
	// The error in full, as text: markup from an origin never runs.
	if strings.Contains(body, hostile) || !strings.Contains(body, "git fetch: HTTP 500: &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;") {
		t.Errorf("an error is not shown escaped and in full:\n%s", body)
	}

	csp := resp.Header.Get("Content-Security-Policy")
	m := regexp.MustCompile(`script-src 'nonce-([A-Za-z0-9_-]{22})'`).FindStringSubmatch(csp)
	if m == nil || !strings.HasPrefix(csp, "default-src 'none';") || !strings.Contains(csp, "connect-src 'self'") {
		t.Fatalf("Content-Security-Policy %q", csp)
	}
	if n := strings.Count(body, `nonce="`+m[1]+`"`); n != 2 || strings.Count(body, "<script") != 1 || strings.Count(body, "<style") != 1 {
		t.Errorf("want one script and one style, both with the policy's nonce: %d nonces", n)
	}
	for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	// A fresh nonce each time.
	again, _ := http.Get(srv.URL + "/")
	again.Body.Close()
	if again.Header.Get("Content-Security-Policy") == csp {
		t.Error("the nonce did not change between two pages")
	}
}

// TestStatusPageIsOnlyAtTheRootAndGuardedLikeStatus: GET / and nothing
// under it; from another address with --api-token-file, only with the
// token.
func TestStatusPageIsOnlyAtTheRootAndGuardedLikeStatus(t *testing.T) {
	srv := servePage(t, statusSyncer{status: pageSources}, api.Options{})
	for path, want := range map[string]int{"/": 200, "/index.html": 404, "/x/": 404} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
	if resp, _ := http.Post(srv.URL+"/", "text/plain", nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST / = %d, want 405", resp.StatusCode)
	}

	token := filepath.Join(t.TempDir(), "token")
	os.WriteFile(token, []byte("s3cret\n"), 0o600)
	h := api.Handler(statusSyncer{status: pageSources}, api.Options{APITokenFile: token})
	for _, tc := range []struct {
		remote, auth string
		want         int
	}{
		{"192.0.2.7:4000", "", http.StatusUnauthorized},
		{"192.0.2.7:4000", "Bearer s3cret", http.StatusOK},
		{"127.0.0.1:4000", "", http.StatusOK},
	} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.RemoteAddr = tc.remote
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("GET / from %s with %q = %d, want %d", tc.remote, tc.auth, rec.Code, tc.want)
		}
	}
}
