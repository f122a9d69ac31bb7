// Package gittest serves git repositories to tests and benchmarks as a
// git host does, with the real git binary: the environment every git
// process of a test runs in, git's smart HTTP protocol, and generated
// repositories. Test and benchmark code only.
package gittest

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Env is the environment of every git process a test starts: no system
// or user configuration (HOME is home, a directory of the test's), a fixed
// identity, never a prompt, messages in English.
func Env(home string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=ferry test", "GIT_AUTHOR_EMAIL=test@ferry.invalid",
		"GIT_COMMITTER_NAME=ferry test", "GIT_COMMITTER_EMAIL=test@ferry.invalid",
		"LC_ALL=C",
	}
}

// HTTPBackend serves every repository under base over git's smart HTTP
// protocol (see Backend). It fails the test on a machine without git.
func HTTPBackend(t testing.TB, base string) http.Handler {
	t.Helper()
	h, err := Backend(base)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Backend serves every repository under base over git's smart HTTP
// protocol: the real git http-backend behind net/http/cgi, with HOME at
// base/.home. Protocol v2 is spoken to a client that asks for it with the
// Git-Protocol header (which net/http/cgi passes as HTTP_GIT_PROTOCOL).
func Backend(base string) (http.Handler, error) {
	gitPath, err := exec.LookPath("git")
	if err != nil {
		return nil, fmt.Errorf("the git test server needs the git binary: %w", err)
	}
	return &cgi.Handler{
		Path:       gitPath,
		Args:       []string{"http-backend"},
		Dir:        base,
		Env:        []string{"GIT_PROJECT_ROOT=" + base, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + filepath.Join(base, ".home")},
		InheritEnv: []string{"PATH"},
		Stderr:     io.Discard, // "not a git repository" is what some tests ask for
		// "copy error: broken pipe": a client stopped reading, as tests of
		// limits and of killed processes make it.
		Logger: log.New(io.Discard, "", 0),
	}, nil
}

// BasicAuth lets a request through to next only with user and pass, and
// answers others 401 with a challenge, as a git host does. With user
// empty it lets every request through.
func BasicAuth(user, pass string, next http.Handler) http.Handler {
	if user == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
