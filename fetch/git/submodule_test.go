package git_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"syscall"
	"testing"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/git"
	"github.com/ferrysync/ferry/internal/sourcetest"
)

// addSubmodule records in r's index a gitlink at p pinning sha, with
// its .gitmodules entry, and commits: what git submodule add leaves,
// without cloning anything.
func (r *repo) addSubmodule(p, url, sha string) string {
	r.t.Helper()
	f, err := os.OpenFile(filepath.Join(r.dir, ".gitmodules"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
	f.WriteString("[submodule \"" + p + "\"]\n\tpath = " + p + "\n\turl = " + url + "\n")
	f.Close()
	r.git("add", ".gitmodules")
	r.git("update-index", "--add", "--cacheinfo", "160000,"+sha+","+p)
	r.git("commit", "-q", "-m", "submodule "+p)
	return r.git("rev-parse", "HEAD")
}

// bump moves the gitlink at p to sha and commits.
func (r *repo) bump(p, sha string) string {
	r.t.Helper()
	r.git("update-index", "--cacheinfo", "160000,"+sha+","+p)
	r.git("commit", "-q", "-m", "bump "+p)
	return r.git("rev-parse", "HEAD")
}

// edit writes one file and commits it, leaving the gitlinks alone.
func (r *repo) edit(p, content string) string {
	r.t.Helper()
	r.write(p, content, 0o644)
	r.git("add", p)
	r.git("commit", "-q", "-m", "edit "+p)
	return r.git("rev-parse", "HEAD")
}

// submoduleRepos serves app.git, whose vendor/lib is lib.git (a relative
// URL) and lib.git's deps/leaf is leaf.git (relative too).
func submoduleRepos(t *testing.T) (app, lib, leaf *repo, srv *httpServer) {
	app, srv = serveRepo(t)
	base := filepath.Dir(app.dir)
	leaf = newRepo(t, base, "leaf.git")
	leafSHA := leaf.set(map[string]string{"leaf.txt": "leaf v1"})
	lib = newRepo(t, base, "lib.git")
	lib.set(map[string]string{"lib.yaml": "lib v1", "conf/x.yaml": "x"})
	lib.addSubmodule("deps/leaf", "../leaf.git", leafSHA)
	app.set(map[string]string{"app.yaml": "app v1"})
	app.addSubmodule("vendor/lib", "../lib.git", lib.git("rev-parse", "HEAD"))
	return app, lib, leaf, srv
}

func TestSubmodulesAreFetchedRecursivelyFromRelativeURLs(t *testing.T) {
	t.Parallel()
	app, _, _, srv := submoduleRepos(t)
	store, state := newStore(t, fetch.Limits{})
	src, _ := newSource(t, srv.url("r.git"), git.Options{}, state)
	rev := sourcetest.MustSync(t, store, "c", src).Rev
	if want := app.git("rev-parse", "HEAD") + "-recursive"; rev != want {
		t.Fatalf("revision %s, want %s", rev, want)
	}
	gitmodules := app.git("show", "HEAD:.gitmodules") + "\n"
	assertPublished(t, store, map[string]string{
		".gitmodules": gitmodules, "app.yaml": "app v1",
		"vendor/lib/lib.yaml": "lib v1", "vendor/lib/conf/x.yaml": "x",
		"vendor/lib/.gitmodules":        "[submodule \"deps/leaf\"]\n\tpath = deps/leaf\n\turl = ../leaf.git\n",
		"vendor/lib/deps/leaf/leaf.txt": "leaf v1",
	})
	if n := len(mustGlob(t, filepath.Join(state, "submodules", "*", "repo.git"))); n != 2 {
		t.Fatalf("%d submodule object stores, want 2 (lib and leaf)", n)
	}
}

func TestShallowSubmodulesStopAtTheFirstLevel(t *testing.T) {
	t.Parallel()
	_, _, _, srv := submoduleRepos(t)
	src, logs := newSource(t, srv.url("r.git")+"?submodules=shallow", git.Options{}, t.TempDir())
	rev, w := mustFetch(t, src)
	if !strings.HasSuffix(rev, "-shallow") {
		t.Fatalf("revision %s, want the -shallow suffix", rev)
	}
	tree := w.Tree()
	if tree["vendor/lib/lib.yaml"] != "lib v1" || tree["vendor/lib/deps/leaf/leaf.txt"] != "" {
		t.Fatalf("tree %v: want lib fetched, leaf not", tree)
	}
	if !strings.Contains(strings.Join(w.Dirs(), ","), "vendor/lib/deps/leaf") {
		t.Fatalf("dirs %v: want the nested submodule as an empty directory", w.Dirs())
	}
	if strings.Count(logs.String(), "empty directory") != 0 {
		t.Fatalf("a nested submodule left out by ?submodules=shallow is no warning:\n%s", logs)
	}
}

func TestSubmodulesOffKeepsAnEmptyDirectoryAndOneWarning(t *testing.T) {
	t.Parallel()
	app, _, _, srv := submoduleRepos(t)
	src, logs := newSource(t, srv.url("r.git")+"?submodules=off", git.Options{}, t.TempDir())
	rev, w := mustFetch(t, src)
	if rev != app.git("rev-parse", "HEAD") {
		t.Fatalf("revision %s, want the commit", rev)
	}
	if _, ok := w.Tree()["vendor/lib/lib.yaml"]; ok {
		t.Fatal("submodule fetched with ?submodules=off")
	}
	if n := strings.Count(logs.String(), "empty directory"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, logs)
	}
}

// TestSubmoduleCommitRepublishesAndParentChangeKeepsItsFiles: a gitlink
// moved is a new revision with the submodule's new files; a commit of the
// parent alone republishes without rewriting a file of the submodule (the
// Writer links it: same inode).
func TestSubmoduleCommitRepublishesAndParentChangeKeepsItsFiles(t *testing.T) {
	t.Parallel()
	app, lib, _, srv := submoduleRepos(t)
	store, state := newStore(t, fetch.Limits{})
	src, _ := newSource(t, srv.url("r.git"), git.Options{}, state)
	rev1 := sourcetest.MustSync(t, store, "c", src).Rev
	libFile := filepath.Join(store.LinkPath("c"), "vendor/lib/lib.yaml")
	ino1 := inode(t, libFile)

	c2 := app.edit("app.yaml", "app v2")
	rev2 := sourcetest.MustSync(t, store, "c", src).Rev
	if rev2 == rev1 || rev2 != c2+"-recursive" {
		t.Fatalf("parent change: revision %s (was %s), want %s-recursive", rev2, rev1, c2)
	}
	if ino := inode(t, libFile); ino != ino1 {
		t.Fatalf("a parent-only change rewrote the submodule's file (inode %d, was %d)", ino, ino1)
	}

	lib.edit("lib.yaml", "lib v2")
	c3 := app.bump("vendor/lib", lib.git("rev-parse", "HEAD"))
	if rev3 := sourcetest.MustSync(t, store, "c", src).Rev; rev3 != c3+"-recursive" {
		t.Fatalf("submodule change: revision %s, want %s-recursive", rev3, c3)
	}
	tree := sourcetest.ReadTree(t, store.LinkPath("c"))
	if tree["vendor/lib/lib.yaml"] != "lib v2" || tree["app.yaml"] != "app v2" || tree["vendor/lib/deps/leaf/leaf.txt"] != "leaf v1" {
		t.Fatalf("after the submodule moved: %v", tree)
	}

	// A restart with nothing new downloads nothing and keeps the revision.
	again, _ := newSource(t, srv.url("r.git"), git.Options{}, state)
	posts := srv.uploadPOST.Load()
	if r := sourcetest.MustSync(t, store, "c", again); r.Rev != c3+"-recursive" {
		t.Fatalf("restart: revision %s", r.Rev)
	}
	if n := srv.uploadPOST.Load() - posts; n != 0 {
		t.Fatalf("restart with nothing new: %d fetches", n)
	}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSubmoduleCredentialsStayOnTheirHost: the parent's password goes to
// a submodule on the same host (a relative URL), never to one on another.
func TestSubmoduleCredentialsStayOnTheirHost(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	app := newRepo(t, base, "r.git")
	same := newRepo(t, base, "same.git")
	srv := startHTTPAuth(t, base, "ci", "s3cret")

	otherBase := t.TempDir()
	other := newRepo(t, otherBase, "other.git")
	var mu gosync.Mutex
	var seen []string
	otherSrv := serveHTTP(t, otherBase, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.Header.Get("Authorization"))
			mu.Unlock()
			next.ServeHTTP(w, r)
		})
	})

	app.set(map[string]string{"a": "1"})
	app.addSubmodule("same", "../same.git", same.set(map[string]string{"s": "same"}))
	app.addSubmodule("other", otherSrv.URL+"/other.git", other.set(map[string]string{"o": "other"}))
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	src, _ := newSource(t, srv.url("r.git"), git.Options{Username: "ci", PasswordFile: pw}, t.TempDir())
	_, w := mustFetch(t, src)
	if tree := w.Tree(); tree["same/s"] != "same" || tree["other/o"] != "other" {
		t.Fatalf("tree %v", tree)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("the other host was never asked")
	}
	for _, a := range seen {
		if a != "" {
			t.Fatalf("the other host got credentials: %q", a)
		}
	}
}

func TestSubmoduleErrorsNameThePathAndTheRedactedURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, url, want string }{
		{"a local path from a remote repository", "/srv/secret.git", "is local"},
		{"a file URL", "file:///srv/secret.git", "is local"},
		{"a password in the URL", "https://u:hunter2@127.0.0.1:1/x.git", "REDACTED"},
		{"a host that refuses", "http://127.0.0.1:1/x.git?token=hunter2", "x.git"},
		{"an unknown scheme", "ext::sh -c touch% /tmp/pwned", "not one ferry can fetch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			app, srv := serveRepo(t)
			app.set(map[string]string{"a": "1"})
			app.addSubmodule("vendor/x", tc.url, app.git("rev-parse", "HEAD"))
			src, _ := newSource(t, srv.url("r.git"), git.Options{}, t.TempDir())
			_, _, err := fetchMem(t, src, "")
			if err == nil || !strings.Contains(err.Error(), "vendor/x") || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("err = %v, want one naming vendor/x and %q, without the secret", err, tc.want)
			}
			assertOneLine(t, err)
		})
	}
}

func TestSubmoduleOfItselfIsRefused(t *testing.T) {
	t.Parallel()
	app, srv := serveRepo(t)
	c1 := app.set(map[string]string{"a": "1"})
	app.addSubmodule("self", "./", c1)
	src, _ := newSource(t, srv.url("r.git"), git.Options{}, t.TempDir())
	if _, _, err := fetchMem(t, src, ""); err == nil || !strings.Contains(err.Error(), "submodule of itself") {
		t.Fatalf("err = %v, want a refusal of the cycle", err)
	}
}

func TestPathsReachIntoSubmodulesAndSubdirSeesItsOwn(t *testing.T) {
	t.Parallel()
	_, _, _, srv := submoduleRepos(t)
	src, _ := newSource(t, srv.url("r.git")+"?paths=vendor/lib/conf,vendor/lib/deps", git.Options{}, t.TempDir())
	_, w := mustFetch(t, src)
	sourcetest.AssertTree(t, w.Tree(), map[string]string{"vendor/lib/conf/x.yaml": "x", "vendor/lib/deps/leaf/leaf.txt": "leaf v1"})

	// A //subdir finds its submodules in the root's .gitmodules.
	sub, _ := newSource(t, "git::"+srv.URL+"/r.git//vendor", git.Options{}, t.TempDir())
	rev, w := mustFetch(t, sub)
	if w.Tree()["lib/lib.yaml"] != "lib v1" || !strings.HasSuffix(rev, "-recursive") {
		t.Fatalf("//vendor: revision %s, tree %v", rev, w.Tree())
	}
}
