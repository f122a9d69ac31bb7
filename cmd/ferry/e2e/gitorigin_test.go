package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/internal/gittest"
)

// gitOrigin is a repository served over git's smart HTTP protocol by the
// real git http-backend; each generation is one commit on main, which git
// makes atomic. With user set, it asks for basic auth.
type gitOrigin struct {
	srv *httptest.Server
	dir string
	env []string
	// handler is git http-backend behind the auth check; a fault injector
	// in front calls it for what it lets through.
	handler http.Handler
	frontable
}

func newGitOrigin(t testing.TB) *gitOrigin {
	return newGitOriginAuth(t, "", "")
}

func newGitOriginAuth(t testing.TB, user, pass string) *gitOrigin {
	t.Helper()
	base := t.TempDir()
	o := &gitOrigin{dir: filepath.Join(base, "config.git"), env: gittest.Env(filepath.Join(base, ".home"))}
	o.handler = gittest.BasicAuth(user, pass, gittest.HTTPBackend(t, base))
	os.MkdirAll(o.dir, 0o755)
	o.git(t, "init", "-q", "-b", "main")
	o.srv = quietServer(o.frontOr(o.handler))
	t.Cleanup(o.srv.Close)
	return o
}

func (o *gitOrigin) git(t testing.TB, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir, cmd.Env = o.dir, o.env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (o *gitOrigin) url() string { return "git::" + o.srv.URL + "/config.git?ref=main" }

func (o *gitOrigin) source(name string) []string { return []string{"--source", name + "=" + o.url()} }

func (o *gitOrigin) set(t testing.TB, gen int, extra map[string]string) {
	t.Helper()
	entries, _ := os.ReadDir(o.dir)
	for _, e := range entries {
		if e.Name() != ".git" {
			os.RemoveAll(filepath.Join(o.dir, e.Name()))
		}
	}
	files := generation(gen)
	for p, c := range extra {
		files[p] = c
	}
	if err := writeTree(o.dir, files); err != nil {
		t.Fatal(err)
	}
	o.git(t, "add", "-A")
	o.git(t, "commit", "-q", "--allow-empty", "-m", fmt.Sprintf("gen %d", gen))
}
