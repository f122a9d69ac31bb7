package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/api"
	"github.com/ferrysync/ferry/internal/testkit"
	"github.com/ferrysync/ferry/sync"
)

func writeOrigin(t *testing.T, dir, content string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Renamed into place: a poll every 20 ms must not read it half-written.
	tmp := filepath.Join(dir, ".app.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "app.yaml")); err != nil {
		t.Fatal(err)
	}
}

type pulled struct {
	Kind, Name, Path, Revision string
}

func getSource(t *testing.T, url, ifNoneMatch string) (*http.Response, pulled) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if ifNoneMatch != "" {
		req.Header.Set("If-None-Match", ifNoneMatch)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p pulled
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
			t.Fatal(err)
		}
	}
	return resp, p
}

// TestPullAPIAnswersAndLongPolls: GET /v1/sources/NAME says where the
// revision is and names it as its ETag; If-None-Match with that ETag is
// 304; with ?wait= it answers as soon as a new revision is published, or
// 304 once the wait is over.
func TestPullAPIAnswersAndLongPolls(t *testing.T) {
	d := startDaemon(t, "")
	writeOrigin(t, d.origin, "v: 1\n")
	url := d.srv.URL + "/v1/sources/config"
	var first pulled
	var tag string
	testkit.Eventually(t, 10*time.Second, "a first revision", func() bool {
		resp, p := getSource(t, url, "")
		first, tag = p, resp.Header.Get("ETag")
		return resp.StatusCode == http.StatusOK && p.Revision != ""
	})
	if first.Kind != "file" || first.Name != "config" || !strings.HasSuffix(first.Path, "/config") || tag != `"`+first.Revision+`"` {
		t.Fatalf("GET %s = %+v, ETag %s", url, first, tag)
	}
	if resp, _ := getSource(t, url, tag); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match the current revision: %d, want 304", resp.StatusCode)
	}

	// Nothing changes: 304 once the wait is over.
	start := time.Now()
	if resp, _ := getSource(t, url+"?wait=300ms", tag); resp.StatusCode != http.StatusNotModified || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("long poll with no change: %d after %s, want 304 after the wait", resp.StatusCode, time.Since(start))
	}

	// A change arrives during the wait: answered with it, before the wait.
	got := make(chan pulled, 1)
	go func() {
		_, p := getSource(t, url+"?wait=30s", tag)
		got <- p
	}()
	time.Sleep(50 * time.Millisecond) // the poll is waiting
	writeOrigin(t, d.origin, "v: 2\n")
	select {
	case p := <-got:
		if p.Revision == "" || p.Revision == first.Revision {
			t.Fatalf("long poll answered %+v, want the new revision", p)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the long poll did not answer the new revision")
	}

	code, body := get(t, d.srv.URL+"/v1/sources")
	if code != http.StatusOK || !strings.Contains(body, `"name": "config"`) {
		t.Fatalf("GET /v1/sources = %d %s", code, body)
	}
	if code, _ := get(t, d.srv.URL+"/v1/sources/nope"); code != http.StatusNotFound {
		t.Fatalf("an unknown source: %d, want 404", code)
	}
	if code, _ := get(t, url+"?wait=soon"); code != http.StatusBadRequest {
		t.Fatalf("wait=soon: %d, want 400", code)
	}
}

// TestAPITokenGuardsReadsFromOtherAddresses: with APITokenFile, /status
// and the pull API want the token from another address, never from
// loopback; without one they are open, like the probes.
func TestAPITokenGuardsReadsFromOtherAddresses(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("s3cret-api\n"), 0o600)
	d := startDaemon(t, "")
	for _, tc := range []struct {
		name, tokenFile, remote, auth string
		want                          int
	}{
		{"open without a token file", "", "10.1.2.3:41000", "", http.StatusOK},
		{"no token sent", tokenFile, "10.1.2.3:41000", "", http.StatusUnauthorized},
		{"wrong token", tokenFile, "10.1.2.3:41000", "Bearer nope", http.StatusUnauthorized},
		{"right token", tokenFile, "10.1.2.3:41000", "Bearer s3cret-api", http.StatusOK},
		{"loopback needs none", tokenFile, "127.0.0.1:41000", "", http.StatusOK},
	} {
		for _, path := range []string{"/status", "/v1/sources"} {
			t.Run(tc.name+path, func(t *testing.T) {
				h := api.Handler(d.syncer, api.Options{APITokenFile: tc.tokenFile})
				req := httptest.NewRequest("GET", path, nil)
				req.RemoteAddr = tc.remote
				if tc.auth != "" {
					req.Header.Set("Authorization", tc.auth)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != tc.want || strings.Contains(rec.Body.String(), "s3cret") {
					t.Fatalf("status = %d (%s), want %d", rec.Code, rec.Body, tc.want)
				}
			})
		}
	}
}

// TestPullAPIServesFilesOfTheRevisionOnly: GET .../files/PATH serves one
// file of the published revision with its revision as ETag; a symlink
// that leads out of the revision, a path out of it, and a file that is
// not there are refused.
func TestPullAPIServesFilesOfTheRevisionOnly(t *testing.T) {
	d := startDaemon(t, "")
	writeOrigin(t, d.origin, "v: 1\n")
	os.MkdirAll(filepath.Join(d.origin, "sub"), 0o755)
	os.WriteFile(filepath.Join(d.origin, "sub", "b.conf"), []byte("b\n"), 0o644)
	base := d.srv.URL + "/v1/sources/config/files/"
	// The origin was written in steps: wait for the revision that has them all.
	testkit.Eventually(t, 10*time.Second, "files/sub/b.conf", func() bool {
		code, body := get(t, base+"sub/b.conf")
		return code == http.StatusOK && body == "b\n"
	})
	_, p := getSource(t, d.srv.URL+"/v1/sources/config", "")
	rev := p.Revision
	resp, _ := getSource(t, base+"app.yaml", `"`+rev+`"`)
	if resp.StatusCode != http.StatusNotModified || resp.Header.Get("ETag") != `"`+rev+`"` {
		t.Fatalf("If-None-Match the revision: %d, ETag %s", resp.StatusCode, resp.Header.Get("ETag"))
	}
	if code, _ := get(t, base+"nope.yaml"); code != http.StatusNotFound {
		t.Fatalf("a file not in the revision: %d, want 404", code)
	}
	if code, _ := get(t, base+"sub"); code != http.StatusNotFound {
		t.Fatalf("a directory: %d, want 404", code)
	}
	// A symlink planted in the published tree, out of it: not followed.
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("s3cret"), 0o600)
	tree, err := filepath.EvalSymlinks(filepath.Join(d.root, "config"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(tree, "escape")); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, base+"escape"); code != http.StatusForbidden || strings.Contains(body, "s3cret") {
		t.Fatalf("a symlink out of the revision: %d %q, want 403", code, body)
	}
	if _, _, err := d.syncer.OpenFile("config", "../../etc/hostname"); !errors.Is(err, sync.ErrOutside) {
		t.Fatalf("OpenFile(../../etc/hostname) = %v, want ErrOutside", err)
	}
}

// readEvents reads Server-Sent Events from body until n have come, and
// returns their ids and kinds ("1 published").
func readEvents(t *testing.T, body io.Reader, n int) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(body)
	id := ""
	for len(out) < n && sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			out = append(out, id+" "+strings.TrimPrefix(line, "event: "))
		}
	}
	return out
}

// TestEventsStreamPublishesAndResume: GET /v1/events streams each publish
// as it happens; a client that comes back with Last-Event-ID gets what it
// missed at once.
func TestEventsStreamPublishesAndResume(t *testing.T) {
	d := startDaemon(t, "")
	writeOrigin(t, d.origin, "v: 1\n")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.srv.URL+"/v1/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	first := readEvents(t, resp.Body, 1)
	writeOrigin(t, d.origin, "v: 2\n")
	second := readEvents(t, resp.Body, 1)
	if len(first) != 1 || len(second) != 1 || first[0] != "1 published" || second[0] != "2 published" {
		t.Fatalf("events %v then %v, want 1 published then 2 published", first, second)
	}

	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, d.srv.URL+"/v1/events", nil)
	req.Header.Set("Last-Event-ID", "1")
	again, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Body.Close()
	if got := readEvents(t, again.Body, 1); len(got) != 1 || got[0] != "2 published" {
		t.Fatalf("resumed after 1: %v, want 2 published", got)
	}

	// A first connection starts after the event ?after= names, as the
	// status page's does; Last-Event-ID, on a reconnect, wins over it.
	for _, c := range []struct{ query, lastID string }{{"?after=1", ""}, {"?after=0", "1"}} {
		req, _ = http.NewRequestWithContext(ctx, http.MethodGet, d.srv.URL+"/v1/events"+c.query, nil)
		if c.lastID != "" {
			req.Header.Set("Last-Event-ID", c.lastID)
		}
		from, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got := readEvents(t, from.Body, 1)
		from.Body.Close()
		if len(got) != 1 || got[0] != "2 published" {
			t.Fatalf("%s with Last-Event-ID %q: %v, want 2 published", c.query, c.lastID, got)
		}
	}
	for _, bad := range []string{"?after=x", "?after=-1"} {
		resp, err := http.Get(d.srv.URL + "/v1/events" + bad)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET /v1/events%s: %d, want 400", bad, resp.StatusCode)
		}
	}
}

// statusSyncer is a Syncer with set statuses and events.
type statusSyncer struct {
	fakeSyncer
	status []sync.SourceStatus
	events []sync.Event
}

func (s statusSyncer) Status() []sync.SourceStatus { return s.status }

func (s statusSyncer) Events(ctx context.Context, after uint64) []sync.Event {
	var out []sync.Event
	for _, e := range s.events {
		if e.ID > after {
			out = append(out, e)
		}
	}
	return out
}

// TestPullAPINamesEachSourceKind: /v1/sources names each source's kind,
// under "kind", as the loop reports it (cmd/ferry reads it from the URL:
// TestSourcesCarryTheirKind).
func TestPullAPINamesEachSourceKind(t *testing.T) {
	want := map[string]string{
		"web":    "http",
		"bucket": "s3",
		"repo":   "git",
		"image":  "oci",
		"dir":    "file",
	}
	var s statusSyncer
	for name, kind := range want {
		s.status = append(s.status, sync.SourceStatus{Name: name, Kind: kind})
	}
	srv := httptest.NewServer(api.Handler(s, api.Options{}))
	defer srv.Close()
	_, body := get(t, srv.URL+"/v1/sources")
	var got struct{ Sources []pulled }
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Sources) != len(want) {
		t.Fatalf("%d sources listed, want %d", len(got.Sources), len(want))
	}
	for _, p := range got.Sources {
		if p.Kind != want[p.Name] {
			t.Errorf("%s: kind %q, want %q", p.Name, p.Kind, want[p.Name])
		}
	}
	if len(got.Sources) != len(want) {
		t.Errorf("%d sources, want %d", len(got.Sources), len(want))
	}
}
