package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testkit"
)

// reloads is an app's reload endpoint that records what it is told.
type reloads struct {
	mu   gosync.Mutex
	got  []map[string]string
	srv  *httptest.Server
	name string
}

func newReloads(t *testing.T, name string) *reloads {
	r := &reloads{name: name}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body map[string]string
		json.NewDecoder(req.Body).Decode(&body)
		r.mu.Lock()
		r.got = append(r.got, body)
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *reloads) url() string { return r.srv.URL + "/-/reload" }

func (r *reloads) sources() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, b := range r.got {
		out = append(out, b["source"])
	}
	return out
}

// Two private repositories behind basic auth with different tokens, in one
// ferry configured by a --config file: each source authenticates with its
// own token, and a change of one reloads only the app that asked for it.
func TestConfigFileGivesEachSourceItsOwnTokenAndApp(t *testing.T) {
	t.Parallel()
	a := newGitOriginAuth(t, "alice", "token-of-a")
	b := newGitOriginAuth(t, "bob", "token-of-b")
	a.set(t, 1, nil)
	b.set(t, 1, nil)
	secrets := t.TempDir()
	for name, token := range map[string]string{"a-token": "token-of-a", "b-token": "token-of-b"} {
		if err := os.WriteFile(filepath.Join(secrets, name), []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	appA, appB := newReloads(t, "a"), newReloads(t, "b")
	file := filepath.Join(t.TempDir(), "ferry.yaml")
	config := fmt.Sprintf(`period: 100ms
notify-timeout: 2s
sources:
  - name: a
    url: %s
    git-username: alice
    git-password-file: %s
    notify-url: [%s]
  - name: b
    url: %s
    git-username: bob
    git-password-file: %s
    notify-url: %s
`, a.url(), filepath.Join(secrets, "a-token"), appA.url(), b.url(), filepath.Join(secrets, "b-token"), appB.url())
	if err := os.WriteFile(file, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	p := startFerry(t, procOptions{root: root, args: []string{"--config", file}})
	linkA, linkB := filepath.Join(root, "a"), filepath.Join(root, "b")
	waitForGen(t, 20*time.Second, linkA, 1)
	waitForGen(t, 20*time.Second, linkB, 1)

	a.set(t, 2, nil)
	waitForGen(t, 10*time.Second, linkA, 2)
	testkit.Eventually(t, 10*time.Second, "a's app told of a", func() bool { return len(appA.sources()) == 1 })
	b.set(t, 2, nil)
	waitForGen(t, 10*time.Second, linkB, 2)
	testkit.Eventually(t, 10*time.Second, "b's app told of b", func() bool { return len(appB.sources()) == 1 })
	time.Sleep(500 * time.Millisecond) // time for a misrouted notify to arrive
	if got := appA.sources(); len(got) != 1 || got[0] != "a" {
		t.Errorf("a's app was told of %v, want [a]", got)
	}
	if got := appB.sources(); len(got) != 1 || got[0] != "b" {
		t.Errorf("b's app was told of %v, want [b]", got)
	}
	for name, st := range p.status() {
		if st.LastError != "" {
			t.Errorf("source %s: %s", name, st.LastError)
		}
	}
}

// A file with mistakes fails the binary with exit 2 before any network
// access, each mistake named FILE:LINE:COL, all of them at once.
func TestConfigFileMistakesExit2WithTheirPlaces(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "ferry.yaml")
	os.WriteFile(file, []byte("root: /tmp/x\nperiod: 5\nsources:\n  - name: a\n    url: /srv/a\n    notify-urls: [http://127.0.0.1:1/]\n"), 0o644)
	code, _, stderr := runToEnd(t, "check", "--config", file)
	if code != 2 {
		t.Fatalf("exit %d, want 2\n%s", code, stderr)
	}
	for _, want := range []string{file + `:2:9: period: want a duration`, file + `:6:5: unknown key "notify-urls"`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}
