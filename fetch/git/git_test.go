package git_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/fetchtest"
	"github.com/ferrysync/ferry/fetch/git"
	"github.com/ferrysync/ferry/internal/sourcetest"
	"github.com/ferrysync/ferry/internal/testkit"
	ferrysync "github.com/ferrysync/ferry/sync"
)

// newSource builds a git source for raw keeping its state in stateDir; it
// fails the test on error. The source logs to the returned buffer.
func newSource(t testing.TB, raw string, o git.Options, stateDir string) (*git.Source, *testkit.LogBuffer) {
	t.Helper()
	return newSourceEnv(t, raw, o, fetch.Env{StateDir: stateDir})
}

func newSourceEnv(t testing.TB, raw string, o git.Options, env fetch.Env) (*git.Source, *testkit.LogBuffer) {
	t.Helper()
	u, err := fetch.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testkit.LogBuffer{}
	env.Logger = logs.Logger()
	s, err := git.New(u, o, env)
	if err != nil {
		t.Fatalf("New(%s): %v", raw, err)
	}
	return s, logs
}

// newStore is a publish root for one source, "c", and that source's state
// directory: for tests of what a sequence of syncs publishes.
func newStore(t testing.TB, limits fetch.Limits) (*ferrysync.Store, string) {
	t.Helper()
	root := t.TempDir()
	store, err := ferrysync.OpenStore(root, limits)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store, ferrysync.StateDir(root, "c")
}

func assertPublished(t testing.TB, store *ferrysync.Store, want map[string]string) {
	t.Helper()
	sourcetest.AssertTree(t, sourcetest.ReadTree(t, store.LinkPath("c")), want)
}

// fetchMem runs one Fetch against prev into an in-memory Writer: for tests
// of one fetch, which need no volume.
func fetchMem(t testing.TB, src fetch.Source, prev string) (string, *fetchtest.Writer, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w := fetchtest.NewWriter(fetch.Limits{})
	rev, err := src.Fetch(ctx, prev, w)
	return rev, w, err
}

// mustFetch is fetchMem against nothing published, failing the test on
// an error.
func mustFetch(t testing.TB, src fetch.Source) (string, *fetchtest.Writer) {
	t.Helper()
	rev, w, err := fetchMem(t, src, "")
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	return rev, w
}

func assertOneLine(t *testing.T, err error) {
	t.Helper()
	if strings.ContainsAny(err.Error(), "\r\n") {
		t.Fatalf("error is not one line: %q", err)
	}
}

// origin is a repository behind a test server, for the shared contract.
type origin struct {
	repo *repo
	url  string
	opts git.Options
	stop func()
}

func (o *origin) Source(t *testing.T, stateDir string) fetch.Source {
	s, _ := newSource(t, o.url, o.opts, stateDir)
	return s
}
func (o *origin) Set(t *testing.T, files map[string]string) { o.repo.set(files) }
func (o *origin) Break(t *testing.T)                        { o.stop() }
func (o *origin) SetEscape(t *testing.T) string {
	o.repo.clear()
	o.repo.write("app.yaml", "x", 0o644)
	o.repo.symlink("conf/passwd", "../../etc/passwd")
	o.repo.commit("escape")
	return `"conf/passwd"`
}

func TestContract(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		serve func(t *testing.T, base string) *origin
	}{
		{"SmartHTTP", func(t *testing.T, base string) *origin {
			srv := startHTTP(t, base)
			return &origin{url: srv.url("config.git"), stop: srv.Close}
		}},
		{"SSH", func(t *testing.T, base string) *origin {
			srv := startSSH(t, base)
			return &origin{url: srv.url("config.git"), opts: srv.options(), stop: srv.Close}
		}},
		{"GitProtocol", func(t *testing.T, base string) *origin {
			dir := filepath.Join(base, "config.git")
			return &origin{url: startGitDaemon(t, base, "config.git"), stop: func() { os.Rename(dir, dir+".gone") }}
		}},
		{"File", func(t *testing.T, base string) *origin {
			dir := filepath.Join(base, "config.git")
			return &origin{url: "git::file://" + dir, stop: func() { os.Rename(dir, dir+".gone") }}
		}},
		{"HTTPWithBasicAuth", func(t *testing.T, base string) *origin {
			srv := startHTTPAuth(t, base, "alice", "s3cr3t-token")
			pw := filepath.Join(t.TempDir(), "password")
			os.WriteFile(pw, []byte("s3cr3t-token\n"), 0o600)
			return &origin{url: srv.url("config.git"), opts: git.Options{Username: "alice", PasswordFile: pw}, stop: srv.Close}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			r := newRepo(t, base, "config.git")
			o := c.serve(t, base)
			o.repo = r
			sourcetest.Run(t, o)
		})
	}
}

func TestRefSelectsBranchTagOrCommit(t *testing.T) {
	t.Parallel()
	r, srv := serveRepo(t)
	r.git("config", "uploadpack.allowReachableSHA1InWant", "true")
	first := r.set(map[string]string{"v": "first"})
	r.git("tag", "light")
	r.git("tag", "-a", "-m", "annotated", "v1.0.0")
	second := r.set(map[string]string{"v": "second"})
	r.git("checkout", "-q", "-b", "feature")
	feature := r.set(map[string]string{"v": "feature"})
	r.git("checkout", "-q", "main")
	// A tag whose name looks like a branch elsewhere: branches win, as
	// with git clone --branch.
	r.git("tag", "feature-tag", feature)
	r.git("checkout", "-q", "-b", "gone")
	annotatedOnly := r.set(map[string]string{"v": "annotated only"})
	r.git("tag", "-a", "-m", "only a tag", "only-annotated")
	hidden := r.set(map[string]string{"v": "hidden"})
	r.git("update-ref", "refs/hidden/keep", hidden) // reachable, in no branch or tag
	r.git("checkout", "-q", "main")
	r.git("branch", "-q", "-D", "gone")

	for _, c := range []struct {
		name, query, want, commit string
	}{
		{"remote HEAD by default", "", "second", second},
		{"branch", "?ref=main", "second", second},
		{"other branch", "?ref=feature", "feature", feature},
		{"full ref name", "?ref=refs/heads/feature", "feature", feature},
		{"lightweight tag", "?ref=light", "first", first},
		{"annotated tag peeled to its commit", "?ref=v1.0.0", "first", first},
		{"tag by full name", "?ref=refs/tags/feature-tag", "feature", feature},
		{"commit SHA at a branch tip", "?ref=" + feature, "feature", feature},
		{"commit SHA behind the tips, at tags", "?ref=" + first, "first", first},
		{"commit SHA of an annotated tag only", "?ref=" + annotatedOnly, "annotated only", annotatedOnly},
		{"commit SHA in no branch or tag", "?ref=" + hidden, "hidden", hidden},
		{"HEAD", "?ref=HEAD", "second", second},
	} {
		t.Run(c.name, func(t *testing.T) {
			src, _ := newSource(t, srv.url("r.git")+c.query, git.Options{}, t.TempDir())
			rev, w := mustFetch(t, src)
			if rev != c.commit {
				t.Fatalf("revision %s, want commit %s", rev, c.commit)
			}
			sourcetest.AssertTree(t, w.Tree(), map[string]string{"v": c.want})
		})
	}
}

func TestPinnedCommitIsNotPolled(t *testing.T) {
	t.Parallel()
	r, srv := serveRepo(t)
	sha := r.set(map[string]string{"a": "1"})
	store, state := newStore(t, fetch.Limits{})
	src, _ := newSource(t, srv.url("r.git")+"?ref="+sha, git.Options{}, state)
	sourcetest.MustSync(t, store, "c", src)
	before := srv.infoRefs.Load() + srv.uploadPOST.Load()
	for range 3 {
		if rev := sourcetest.MustSync(t, store, "c", src).Rev; rev != sha {
			t.Fatalf("revision %s, want %s", rev, sha)
		}
	}
	if after := srv.infoRefs.Load() + srv.uploadPOST.Load(); after != before {
		t.Fatalf("%d requests to poll a pinned commit, want none", after-before)
	}
}

func TestPinnedCommitFallsBackToDeepFetchWhenServerRefusesSHA(t *testing.T) {
	t.Parallel()
	r, srv := serveRepo(t) // without uploadpack.allowReachableSHA1InWant
	old := r.set(map[string]string{"v": "old"})
	r.set(map[string]string{"v": "new"})
	src, logs := newSource(t, srv.url("r.git")+"?ref="+old, git.Options{}, t.TempDir())
	rev, w := mustFetch(t, src)
	if rev != old {
		t.Fatalf("revision %s, want %s", rev, old)
	}
	sourcetest.AssertTree(t, w.Tree(), map[string]string{"v": "old"})
	if !strings.Contains(logs.String(), "fetching the full history") {
		t.Fatalf("no log line about the fallback; logs:\n%s", logs)
	}

	// A SHA that is in no branch at all is a clear, permanent error.
	missing := strings.Repeat("ab", 20)
	src2, _ := newSource(t, srv.url("r.git")+"?ref="+missing, git.Options{}, t.TempDir())
	if _, _, err := fetchMem(t, src2, ""); err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("err = %v, want a permanent error naming the commit", err)
	}
}

// TestPinnedCommitIsTheCommitPublished: a source pinned to a commit SHA
// publishes that commit or fails, whatever the server's refs say by the
// time it fetches. It once fetched the branch pointing at the SHA by name,
// with go-git, which lists the refs again and took whatever the branch
// named in that second listing: a push in between, or a server answering
// the two listings differently, published another commit. A submodule is
// pinned the same way, by its parent's gitlink, and is not verified on
// its own (the verified parent pins it).
func TestPinnedCommitIsTheCommitPublished(t *testing.T) {
	t.Parallel()
	// movesAfterListing serves base, moving r's main to moved right after
	// the first listing of r.
	movesAfterListing := func(t *testing.T, base string, r *repo, moved string) *httpServer {
		var listings atomic.Int32
		return serveHTTP(t, base, func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				next.ServeHTTP(w, req)
				if req.URL.Path == "/"+r.name+"/info/refs" && listings.Add(1) == 1 {
					r.git("update-ref", "refs/heads/main", moved)
				}
			})
		})
	}
	t.Run("ref moved after the listing", func(t *testing.T) {
		t.Parallel()
		base := t.TempDir()
		r, pinned, moved := pinnedRepo(t, base, "r.git")
		srv := movesAfterListing(t, base, r, moved)
		src, _ := newSource(t, srv.url("r.git")+"?ref="+pinned, git.Options{}, t.TempDir())
		rev, w := mustFetch(t, src)
		if rev != pinned {
			t.Errorf("?ref=%s published revision %s (the branch's new tip %s)", pinned, rev, moved)
		}
		sourcetest.AssertTree(t, w.Tree(), map[string]string{"v": "pinned"})
	})
	t.Run("submodule whose ref moved after the listing", func(t *testing.T) {
		t.Parallel()
		base := t.TempDir()
		lib, pinned, moved := pinnedRepo(t, base, "lib.git")
		app := newRepo(t, base, "r.git")
		app.set(map[string]string{"app.yaml": "app"})
		app.addSubmodule("lib", "../lib.git", pinned)
		srv := movesAfterListing(t, base, lib, moved)
		src, _ := newSource(t, srv.url("r.git"), git.Options{}, t.TempDir())
		_, w := mustFetch(t, src)
		if got := w.Tree()["lib/v"]; got != "pinned" {
			t.Errorf("submodule pinned at %s published lib/v = %q, want %q", pinned, got, "pinned")
		}
	})
	t.Run("server sends another commit", func(t *testing.T) {
		t.Parallel()
		base := t.TempDir()
		r, pinned, other := pinnedRepo(t, base, "r.git")
		r.git("update-ref", "refs/heads/other", other)
		// The server answers a want of the pinned commit with the other.
		srv := serveHTTP(t, base, func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if req.Method == http.MethodPost {
					body, _ := io.ReadAll(req.Body)
					body = bytes.ReplaceAll(body, []byte("want "+pinned), []byte("want "+other))
					req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
				}
				next.ServeHTTP(w, req)
			})
		})
		src, _ := newSource(t, srv.url("r.git")+"?ref="+pinned, git.Options{}, t.TempDir())
		rev, _, err := fetchMem(t, src, "")
		if err == nil || !strings.Contains(err.Error(), "pinned commit "+pinned+" is not what the server sent") {
			t.Errorf("published %s, err = %v; want a refusal naming the pinned commit", rev, err)
		}
	})
}

// pinnedRepo makes base/name with two commits, v "pinned" and v
// "attacker", its main at the first.
func pinnedRepo(t *testing.T, base, name string) (r *repo, pinned, moved string) {
	r = newRepo(t, base, name)
	pinned = r.set(map[string]string{"v": "pinned"})
	moved = r.set(map[string]string{"v": "attacker"})
	r.git("update-ref", "refs/heads/main", pinned)
	return r, pinned, moved
}

func TestForcePushAndRewindArePublished(t *testing.T) {
	t.Parallel()
	r, srv := serveRepo(t)
	a := r.set(map[string]string{"v": "a"})
	store, state := newStore(t, fetch.Limits{})
	src, _ := newSource(t, srv.url("r.git")+"?ref=main", git.Options{}, state)
	if rev := sourcetest.MustSync(t, store, "c", src).Rev; rev != a {
		t.Fatalf("revision %s, want %s", rev, a)
	}
	b := r.set(map[string]string{"v": "b"})
	if rev := sourcetest.MustSync(t, store, "c", src).Rev; rev != b {
		t.Fatalf("revision %s, want %s", rev, b)
	}

	// Rewind main to a (git push --force of an older commit): the object
	// store has it, so nothing is downloaded.
	r.git("reset", "-q", "--hard", a)
	posts := srv.uploadPOST.Load()
	if rev := sourcetest.MustSync(t, store, "c", src).Rev; rev != a {
		t.Fatalf("after rewind: revision %s, want %s", rev, a)
	}
	assertPublished(t, store, map[string]string{"v": "a"})
	if n := srv.uploadPOST.Load() - posts; n != 0 {
		t.Errorf("rewind to a stored commit downloaded (%d upload-pack POSTs)", n)
	}

	// Force-push an unrelated history.
	r.git("checkout", "-q", "--orphan", "tmp")
	c := r.set(map[string]string{"v": "c", "new": "file"})
	r.git("branch", "-q", "-f", "main", c)
	if rev := sourcetest.MustSync(t, store, "c", src).Rev; rev != c {
		t.Fatalf("after force-push: revision %s, want %s", rev, c)
	}
	assertPublished(t, store, map[string]string{"v": "c", "new": "file"})
}

// TestUnchangedPollIsOneRequestAndFetchesNothing: a poll that finds the
// ref where it was costs one request (ls-refs, the server speaking
// protocol v2) and downloads nothing; a new commit costs one listing and
// one fetch.
func TestUnchangedPollIsOneRequestAndFetchesNothing(t *testing.T) {
	t.Parallel()
	r, srv := serveRepo(t)
	r.set(map[string]string{"a": "1"})
	store, state := newStore(t, fetch.Limits{})
	src, _ := newSource(t, srv.url("r.git"), git.Options{}, state)
	rev := sourcetest.MustSync(t, store, "c", src).Rev
	posts, requests := srv.uploadPOST.Load(), srv.requests.Load()
	for range 5 {
		// Sync fails the test if anything is written.
		if again := sourcetest.MustSync(t, store, "c", src).Rev; again != rev {
			t.Fatalf("unchanged poll: revision %s, want %s", again, rev)
		}
	}
	if n := srv.uploadPOST.Load() - posts; n != 0 {
		t.Fatalf("%d fetches for 5 unchanged polls, want 0", n)
	}
	if n := srv.requests.Load() - requests; n != 5 {
		t.Fatalf("%d requests for 5 polls, want 5 (one listing each)", n)
	}

	// A new commit is published on the next poll, with one download.
	requests = srv.requests.Load()
	r.set(map[string]string{"a": "2"})
	if again := sourcetest.MustSync(t, store, "c", src).Rev; again == rev {
		t.Fatal("new commit not published")
	}
	assertPublished(t, store, map[string]string{"a": "2"})
	if n := srv.uploadPOST.Load() - posts; n != 1 {
		t.Fatalf("%d fetches for one new commit, want 1", n)
	}
	if n := srv.requests.Load() - requests; n != 2 {
		t.Fatalf("%d requests for one new commit, want 2 (one listing, one fetch)", n)
	}
}

// TestUnchangedFilesAreNotReadAgain: each file's key is its blob, so the
// Writer reuses (hard-links) what the previous revision holds, and the
// executable bit comes through.
func TestUnchangedFilesAreNotReadAgain(t *testing.T) {
	t.Parallel()
	r, srv := serveRepo(t)
	r.set(map[string]string{"same": strings.Repeat("s", 1000), "tool.sh": "#!/bin/sh\n", "changes": "1"})
	os.Chmod(filepath.Join(r.dir, "tool.sh"), 0o755)
	r.commit("exec bit")
	src, _ := newSource(t, srv.url("r.git"), git.Options{}, t.TempDir())
	rev, first := mustFetch(t, src)
	for name, want := range map[string]os.FileMode{"tool.sh": 0o755, "same": 0o644} {
		if mode := first.Files()[name].Mode; mode != want {
			t.Fatalf("%s mode %v, want %v", name, mode, want)
		}
	}

	r.write("changes", "2", 0o644)
	r.commit("change one file")
	second := fetchtest.NewWriter(fetch.Limits{}).Reuse(first)
	if _, err := src.Fetch(context.Background(), rev, second); err != nil {
		t.Fatal(err)
	}
	if n := second.Opened(); n != 1 {
		t.Fatalf("%d files read, want 1: the unchanged ones are reused", n)
	}
	sourcetest.AssertTree(t, second.Tree(), map[string]string{"same": strings.Repeat("s", 1000), "tool.sh": "#!/bin/sh\n", "changes": "2"})
}

func TestSymlinksStayInsideTheRevision(t *testing.T) {
	t.Parallel()
	r, srv := serveRepo(t)
	r.write("conf/app.yaml", "x", 0o644)
	r.symlink("current.yaml", "conf/app.yaml")
	r.symlink("conf/self", "../conf")
	r.commit("links inside")
	src, _ := newSource(t, srv.url("r.git"), git.Options{}, t.TempDir())
	_, w := mustFetch(t, src)
	sourcetest.AssertTree(t, w.Tree(), map[string]string{"conf/app.yaml": "x"})
	sourcetest.AssertTree(t, w.Links(), map[string]string{"current.yaml": "conf/app.yaml", "conf/self": "../conf"})

	for _, c := range []struct{ link, target string }{
		{"conf/escape", "../../outside"},
		{"abs", "/etc/passwd"},
	} {
		r.clear()
		r.write("conf/app.yaml", "x", 0o644)
		r.symlink(c.link, c.target)
		r.commit("escape " + c.link)
		if _, _, err := fetchMem(t, src, ""); err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), `"`+c.link+`"`) {
			t.Fatalf("symlink %s -> %s: err = %v, want a permanent refusal naming it", c.link, c.target, err)
		}
	}

	// Inside the repository but outside //subdir is outside the revision.
	r.clear()
	r.write("shared/common.yaml", "c", 0o644)
	r.symlink("prod/common.yaml", "../shared/common.yaml")
	r.commit("link out of the subdir")
	sub, _ := newSource(t, "git::"+srv.URL+"/r.git//prod", git.Options{}, t.TempDir())
	if _, _, err := fetchMem(t, sub, ""); err == nil || !strings.Contains(err.Error(), `"common.yaml"`) {
		t.Fatalf("err = %v, want a refusal naming common.yaml", err)
	}
}

func TestSubmoduleIsPublishedAsAnEmptyDirectory(t *testing.T) {
	t.Parallel()
	r, srv := serveRepo(t)
	sha := r.set(map[string]string{"a": "1"})
	r.git("update-index", "--add", "--cacheinfo", "160000,"+sha+",vendor/lib")
	r.git("commit", "-q", "-m", "submodule")
	src, logs := newSource(t, srv.url("r.git"), git.Options{}, t.TempDir())
	_, w := mustFetch(t, src)
	sourcetest.AssertTree(t, w.Tree(), map[string]string{"a": "1"})
	if dirs := strings.Join(w.Dirs(), ","); dirs != "vendor,vendor/lib" {
		t.Fatalf("directories %s, want vendor,vendor/lib", dirs)
	}
	if !strings.Contains(logs.String(), "submodule") || !strings.Contains(logs.String(), "vendor/lib") {
		t.Fatalf("no warning naming the submodule; logs:\n%s", logs)
	}
}

func TestEditedFileArrivesAsADeltaAgainstTheStore(t *testing.T) {
	t.Parallel()
	r, srv := serveRepo(t)
	var lines []string
	for i := range 20000 {
		lines = append(lines, randomText(t, 4)+" line "+string(rune('a'+i%26)))
	}
	text := strings.Join(lines, "\n")
	r.set(map[string]string{"big.txt": text, "other": "x"})
	store, state := newStore(t, fetch.Limits{})
	src, _ := newSource(t, srv.url("r.git"), git.Options{}, state)
	sourcetest.MustSync(t, store, "c", src)
	first := srv.packBytes.Load()

	// One line changes in a file of ~200 KB: git sends a delta against the
	// blob we hold (a thin pack), which must be resolved from the store.
	edited := strings.Replace(text, lines[100], "changed", 1)
	r.set(map[string]string{"big.txt": edited, "other": "x"})
	sourcetest.MustSync(t, store, "c", src)
	assertPublished(t, store, map[string]string{"big.txt": edited, "other": "x"})
	if n := srv.packBytes.Load() - first; n > 8<<10 {
		t.Fatalf("one-line edit downloaded %d bytes (first fetch %d): not a delta", n, first)
	}
}

// randomText is n bytes that do not compress.
func randomText(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}
