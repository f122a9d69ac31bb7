package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrysync/ferry/api"
	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/file"
	"github.com/ferrysync/ferry/internal/testkit"
	"github.com/ferrysync/ferry/sync"
)

// daemon is a real Syncer on a local-dir source, served on a real listener.
type daemon struct {
	origin string
	root   string // the store's
	srv    *httptest.Server
	syncer *sync.Syncer
}

func startDaemon(t *testing.T, tokenFile string) *daemon {
	t.Helper()
	origin := filepath.Join(t.TempDir(), "origin")
	store, err := sync.OpenStore(t.TempDir(), fetch.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := fetch.Parse(origin)
	src, err := file.New(u, fetch.Env{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s, err := sync.New(sync.Config{Store: store, Sources: []sync.Source{{Name: "config", URL: u.String(), Kind: u.Kind, Backend: src}},
		Period: 20 * time.Millisecond, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	srv := httptest.NewServer(api.Handler(s, api.Options{Gatherer: reg, TokenFile: tokenFile}))
	t.Cleanup(srv.Close)
	return &daemon{origin: origin, root: store.Root(), srv: srv, syncer: s}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestReadyzGatesOnFirstRevision(t *testing.T) {
	d := startDaemon(t, "")
	code, body := get(t, d.srv.URL+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "config: no revision yet") {
		t.Fatalf("/readyz before any revision = %d %q", code, body)
	}
	os.MkdirAll(d.origin, 0o755)
	os.WriteFile(filepath.Join(d.origin, "app.yaml"), []byte("x"), 0o644)
	testkit.Eventually(t, 10*time.Second, "/readyz 200", func() bool { code, _ := get(t, d.srv.URL+"/readyz"); return code == 200 })
	if code, _ := get(t, d.srv.URL+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
}

func TestStatusAndMetricsDescribeSources(t *testing.T) {
	d := startDaemon(t, "")
	os.MkdirAll(d.origin, 0o755)
	os.WriteFile(filepath.Join(d.origin, "app.yaml"), []byte("x"), 0o644)
	testkit.Eventually(t, 10*time.Second, "ready", func() bool { ok, _ := d.syncer.Ready(); return ok })

	_, body := get(t, d.srv.URL+"/status")
	var st struct{ Sources []sync.SourceStatus }
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status is not JSON: %v\n%s", err, body)
	}
	if len(st.Sources) != 1 || st.Sources[0].Name != "config" || len(st.Sources[0].Revision) != 64 || st.Sources[0].Published == nil {
		t.Fatalf("/status = %s", body)
	}
	_, metrics := get(t, d.srv.URL+"/metrics")
	for _, series := range []string{
		`ferry_syncs_total{result="published",source="config"} 1`,
		`ferry_sync_duration_seconds_bucket{source="config"`,
		`ferry_last_success_timestamp_seconds{source="config"}`,
		`ferry_revision_info{revision="` + st.Sources[0].Revision + `",source="config"} 1`,
		`ferry_fetched_bytes_total{source="config"}`,
		`ferry_consecutive_failures{source="config"} 0`,
	} {
		if !strings.Contains(metrics, series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
}

func TestSyncTriggerFromLoopback(t *testing.T) {
	d := startDaemon(t, "")
	resp, err := http.Post(d.srv.URL+"/sync?source=config", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /sync from loopback = %d", resp.StatusCode)
	}
	resp, _ = http.Post(d.srv.URL+"/sync?source=nope", "", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("POST /sync?source=nope = %d, want 404", resp.StatusCode)
	}
	for query, want := range map[string]int{"?adopt=now": http.StatusAccepted, "?adopt=now&source=config": http.StatusAccepted,
		"?adopt=later": http.StatusBadRequest, "?adopt=now&source=nope": http.StatusNotFound} {
		resp, err := http.Post(d.srv.URL+"/sync"+query, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("POST /sync%s = %d, want %d", query, resp.StatusCode, want)
		}
	}
	if code, _ := get(t, d.srv.URL+"/sync"); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /sync = %d, want 405", code)
	}
}

// A request from another pod: the handler sees a non-loopback address.
func TestSyncTriggerFromElsewhereNeedsToken(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("s3cret-token\n"), 0o600)
	for _, tc := range []struct {
		name      string
		tokenFile string
		auth      string
		want      int
	}{
		{"no token configured", "", "Bearer s3cret-token", http.StatusForbidden},
		{"no token sent", tokenFile, "", http.StatusForbidden},
		{"wrong token", tokenFile, "Bearer nope", http.StatusForbidden},
		{"right token", tokenFile, "Bearer s3cret-token", http.StatusAccepted},
		{"scheme in lower case", tokenFile, "bearer s3cret-token", http.StatusAccepted},
		{"scheme in upper case", tokenFile, "BEARER s3cret-token", http.StatusAccepted},
		{"another scheme", tokenFile, "Basic s3cret-token", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startDaemon(t, tc.tokenFile)
			h := api.Handler(d.syncer, api.Options{TokenFile: tc.tokenFile})
			req := httptest.NewRequest("POST", "/sync", nil)
			req.RemoteAddr = "10.1.2.3:41000"
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status = %d (%s), want %d", rec.Code, rec.Body, tc.want)
			}
			if strings.Contains(rec.Body.String(), "s3cret") {
				t.Fatal("reply reveals the token")
			}
		})
	}
}

// TestNothingElseIsServed: no pprof, and nothing under the status page at
// GET / (exactly).
func TestNothingElseIsServed(t *testing.T) {
	d := startDaemon(t, "")
	for _, p := range []string{"/debug/pprof/", "/index.html", "/metricsx", "/v1/"} {
		if code, _ := get(t, d.srv.URL+p); code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, code)
		}
	}
}

// TestSyncTriggerRefusesWebPages: a web page open in a browser on the same
// machine reaches POST /sync from loopback too. Whatever the page, the
// browser says where it comes from (Origin, Sec-Fetch-Site), and only the
// endpoint's own origin may trigger without the token.
func TestSyncTriggerRefusesWebPages(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("s3cret-token\n"), 0o600)
	addr := serve(t, fakeSyncer{}, api.Options{TokenFile: tokenFile})
	_, port, _ := net.SplitHostPort(addr)
	for _, tc := range []struct {
		name    string
		host    string // the Host header; empty: addr
		headers map[string]string
		want    int
	}{
		{"no browser", "", nil, http.StatusAccepted},
		{"the endpoint's own page", "", map[string]string{"Origin": "http://" + addr, "Sec-Fetch-Site": "same-origin"}, http.StatusAccepted},
		{"own page by localhost", "localhost:" + port, map[string]string{"Origin": "http://localhost:" + port}, http.StatusAccepted},
		{"another site", "", map[string]string{"Origin": "https://attacker.example"}, http.StatusForbidden},
		{"another site, new browser", "", map[string]string{"Origin": "https://attacker.example", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"another local port", "", map[string]string{"Origin": "http://127.0.0.1:3000", "Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"opaque origin", "", map[string]string{"Origin": "null"}, http.StatusForbidden},
		{"cross-site without Origin", "", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"DNS rebinding", "attacker.example:" + port, map[string]string{"Origin": "http://attacker.example:" + port, "Sec-Fetch-Site": "same-origin"}, http.StatusForbidden},
		{"another site with the token", "", map[string]string{"Origin": "https://tool.example", "Authorization": "Bearer s3cret-token"}, http.StatusAccepted},
		{"another site with a wrong token", "", map[string]string{"Origin": "https://tool.example", "Authorization": "Bearer nope"}, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", "http://"+addr+api.SyncPath, nil)
			if tc.host != "" {
				req.Host = tc.host
			}
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("POST /sync from loopback = %d (%s), want %d", resp.StatusCode, strings.TrimSpace(string(body)), tc.want)
			}
			if strings.Count(string(body), "\n") > 1 || strings.Contains(string(body), "s3cret") {
				t.Fatalf("reply is not one line free of the token: %q", body)
			}
		})
	}
}
