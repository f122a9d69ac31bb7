package git_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/git"
	"github.com/ferrysync/ferry/internal/sourcetest"
	ferrysync "github.com/ferrysync/ferry/sync"
)

// target is a real publish root, driven the way the sync loop drives it.
type target struct {
	t     *testing.T
	root  string
	store *ferrysync.Store
}

func newTarget(t *testing.T) *target { return newLimitedTarget(t, fetch.Limits{}) }

// newLimitedTarget is a target whose Writer enforces limits.
func newLimitedTarget(t *testing.T, limits fetch.Limits) *target {
	root := t.TempDir()
	st, err := ferrysync.OpenStore(root, limits)
	if err != nil {
		t.Fatal(err)
	}
	return &target{t: t, root: root, store: st}
}

func (tg *target) stateDir() string { return ferrysync.StateDir(tg.root, "c") }

// sync runs one Fetch and, when the revision changed, publishes it.
func (tg *target) sync(src fetch.Source) (string, ferrysync.Stats, error) {
	tg.t.Helper()
	return tg.syncCtx(context.Background(), src)
}

func (tg *target) syncCtx(ctx context.Context, src fetch.Source) (string, ferrysync.Stats, error) {
	tg.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	prev, err := tg.store.Current("c")
	if err != nil {
		tg.t.Fatal(err)
	}
	st := tg.store.Begin("c", prev)
	defer st.Discard()
	rev, err := src.Fetch(ctx, prev, st)
	if err != nil {
		return "", st.Stats(), err
	}
	if rev == prev {
		if st.Dir() != "" {
			tg.t.Errorf("source wrote to staging although the revision did not change")
		}
		return rev, st.Stats(), nil
	}
	if err := st.Publish(rev); err != nil {
		tg.t.Fatalf("publish: %v", err)
	}
	return rev, st.Stats(), nil
}

// mustSync is sync that fails the test on error.
func (tg *target) mustSync(src fetch.Source) string {
	tg.t.Helper()
	rev, _, err := tg.sync(src)
	if err != nil {
		tg.t.Fatalf("sync: %v", err)
	}
	return rev
}

// tree reads the published tree: file contents, symlinks as "-> target".
func (tg *target) tree() map[string]string {
	tg.t.Helper()
	dir, err := filepath.EvalSymlinks(tg.store.LinkPath("c"))
	if err != nil {
		tg.t.Fatal(err)
	}
	got := map[string]string{}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			got[rel] = "-> " + l
			return err
		case d.IsDir():
			if entries, _ := os.ReadDir(p); len(entries) == 0 {
				got[rel+"/"] = ""
			}
			return nil
		default:
			b, err := os.ReadFile(p)
			got[rel] = string(b)
			return err
		}
	})
	if err != nil {
		tg.t.Fatal(err)
	}
	return got
}

func (tg *target) assertTree(want map[string]string) {
	tg.t.Helper()
	got := tg.tree()
	if len(got) != len(want) {
		tg.t.Fatalf("published tree = %q, want %q", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			tg.t.Fatalf("published %s = %q, want %q (tree %q)", k, got[k], v, got)
		}
	}
}

// newSource builds a git source for raw; it fails the test on error.
func newSource(t *testing.T, raw string, o git.Options, stateDir string) (*git.Source, *logBuffer) {
	t.Helper()
	return newSourceEnv(t, raw, o, fetch.Env{StateDir: stateDir})
}

// newSourceEnv is newSource with more of the environment; the logger is
// the returned buffer's.
func newSourceEnv(t *testing.T, raw string, o git.Options, env fetch.Env) (*git.Source, *logBuffer) {
	t.Helper()
	log, buf := newLogger()
	u, err := fetch.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	env.Logger = log
	s, err := git.New(u, o, env)
	if err != nil {
		t.Fatalf("New(%s): %v", raw, err)
	}
	return s, buf
}

// httpOrigin is a repository behind smart HTTP, for the shared contract.
type httpOrigin struct {
	srv  *httpServer
	repo *repo
	url  string
	opts git.Options
}

func (o *httpOrigin) Source(t *testing.T, stateDir string) fetch.Source {
	s, _ := newSource(t, o.url, o.opts, stateDir)
	return s
}
func (o *httpOrigin) Set(t *testing.T, files map[string]string) { o.repo.set(files) }
func (o *httpOrigin) Break(t *testing.T)                        { o.srv.Close() }
func (o *httpOrigin) SetEscape(t *testing.T) string {
	o.repo.clear()
	o.repo.write("app.yaml", "x", 0o644)
	o.repo.symlink("conf/passwd", "../../etc/passwd")
	o.repo.commit("escape")
	return `"conf/passwd"`
}

// sshOrigin is a repository behind the SSH server.
type sshOrigin struct {
	srv  *sshServer
	repo *repo
}

func (o *sshOrigin) Source(t *testing.T, stateDir string) fetch.Source {
	s, _ := newSource(t, o.srv.url(o.repo.name), o.srv.options(), stateDir)
	return s
}
func (o *sshOrigin) Set(t *testing.T, files map[string]string) { o.repo.set(files) }
func (o *sshOrigin) Break(t *testing.T)                        { o.srv.Close() }
func (o *sshOrigin) SetEscape(t *testing.T) string {
	o.repo.clear()
	o.repo.write("app.yaml", "x", 0o644)
	o.repo.symlink("passwd", "/etc/passwd")
	o.repo.commit("escape")
	return `"passwd"`
}

func (s *sshServer) options() git.Options {
	return git.Options{SSHKeyFile: s.clientKeyFile, KnownHostsFile: s.knownHostsFile}
}

func TestContractOverSmartHTTP(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "config.git")
	srv := startHTTP(t, base)
	sourcetest.Run(t, &httpOrigin{srv: srv, repo: r, url: srv.url("config.git")})
}

func TestContractOverSSH(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "config.git")
	sourcetest.Run(t, &sshOrigin{srv: startSSH(t, base), repo: r})
}

func TestContractOverHTTPWithBasicAuth(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "config.git")
	srv := startHTTPAuth(t, base, "alice", "s3cr3t-token")
	pw := filepath.Join(t.TempDir(), "password")
	os.WriteFile(pw, []byte("s3cr3t-token\n"), 0o600)
	sourcetest.Run(t, &httpOrigin{srv: srv, repo: r, url: srv.url("config.git"),
		opts: git.Options{Username: "alice", PasswordFile: pw}})
}

func TestRefSelectsBranchTagOrCommit(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
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
	srv := startHTTP(t, base)

	cases := []struct {
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
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tg := newTarget(t)
			src, _ := newSource(t, srv.url("r.git")+c.query, git.Options{}, tg.stateDir())
			rev := tg.mustSync(src)
			if rev != c.commit {
				t.Fatalf("revision %s, want commit %s", rev, c.commit)
			}
			tg.assertTree(map[string]string{"v": c.want})
		})
	}
}

func TestPinnedCommitIsNotPolled(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	sha := r.set(map[string]string{"a": "1"})
	srv := startHTTP(t, base)
	tg := newTarget(t)
	src, _ := newSource(t, srv.url("r.git")+"?ref="+sha, git.Options{}, tg.stateDir())
	tg.mustSync(src)
	before := srv.infoRefs.Load() + srv.uploadPOST.Load()
	for range 3 {
		if rev := tg.mustSync(src); rev != sha {
			t.Fatalf("revision %s, want %s", rev, sha)
		}
	}
	if after := srv.infoRefs.Load() + srv.uploadPOST.Load(); after != before {
		t.Fatalf("%d requests to poll a pinned commit, want none", after-before)
	}
}

func TestPinnedCommitFallsBackToDeepFetchWhenServerRefusesSHA(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	old := r.set(map[string]string{"v": "old"})
	r.set(map[string]string{"v": "new"})
	srv := startHTTP(t, base) // no uploadpack.allowReachableSHA1InWant
	tg := newTarget(t)
	src, logs := newSource(t, srv.url("r.git")+"?ref="+old, git.Options{}, tg.stateDir())
	if rev := tg.mustSync(src); rev != old {
		t.Fatalf("revision %s, want %s", rev, old)
	}
	tg.assertTree(map[string]string{"v": "old"})
	if !strings.Contains(logs.String(), "fetching the full history") {
		t.Fatalf("no log line about the fallback; logs:\n%s", logs)
	}

	// A SHA that is in no branch at all is a clear, permanent error.
	tg2 := newTarget(t)
	missing := strings.Repeat("ab", 20)
	src2, _ := newSource(t, srv.url("r.git")+"?ref="+missing, git.Options{}, tg2.stateDir())
	_, _, err := tg2.sync(src2)
	if err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("err = %v, want a permanent error naming the commit", err)
	}
}

func TestSubdirPublishesOnlyThatTree(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	sha := r.set(map[string]string{"README": "top", "conf/prod/app.yaml": "prod", "conf/prod/x/y": "deep", "conf/dev/app.yaml": "dev"})
	srv := startHTTP(t, base)
	tg := newTarget(t)
	src, _ := newSource(t, "git::"+srv.URL+"/r.git//conf/prod?ref=main", git.Options{}, tg.stateDir())
	rev := tg.mustSync(src)
	if want := r.git("rev-parse", sha+":conf/prod"); rev != want {
		t.Fatalf("revision %s, want the tree of conf/prod %s", rev, want)
	}
	tg.assertTree(map[string]string{"app.yaml": "prod", "x/y": "deep"})

	// Another subdir of the same commit is another revision: a restart
	// with a changed //subdir must not keep the old tree.
	other, _ := newSource(t, "git::"+srv.URL+"/r.git//conf/dev?ref=main", git.Options{}, tg.stateDir())
	if rev2 := tg.mustSync(other); rev2 != r.git("rev-parse", sha+":conf/dev") {
		t.Fatalf("revision %s for conf/dev of %s (conf/prod: %s)", rev2, sha, rev)
	}
	tg.assertTree(map[string]string{"app.yaml": "dev"})

	missing, _ := newSource(t, "git::"+srv.URL+"/r.git//nope", git.Options{}, tg.stateDir())
	if _, _, err := tg.sync(missing); err == nil || !strings.Contains(err.Error(), `"nope"`) || !fetch.IsPermanent(err) {
		t.Fatalf("err = %v, want a permanent error naming the missing subdir", err)
	}
}

func TestForcePushAndRewindArePublished(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	a := r.set(map[string]string{"v": "a"})
	srv := startHTTP(t, base)
	tg := newTarget(t)
	src, _ := newSource(t, srv.url("r.git")+"?ref=main", git.Options{}, tg.stateDir())
	if rev := tg.mustSync(src); rev != a {
		t.Fatalf("revision %s, want %s", rev, a)
	}
	b := r.set(map[string]string{"v": "b"})
	if rev := tg.mustSync(src); rev != b {
		t.Fatalf("revision %s, want %s", rev, b)
	}

	// Rewind main to a (git push --force of an older commit): the object
	// store has it, so nothing is downloaded.
	r.git("reset", "-q", "--hard", a)
	posts := srv.uploadPOST.Load()
	if rev := tg.mustSync(src); rev != a {
		t.Fatalf("after rewind: revision %s, want %s", rev, a)
	}
	tg.assertTree(map[string]string{"v": "a"})
	if n := srv.uploadPOST.Load() - posts; n != 0 {
		t.Errorf("rewind to a stored commit downloaded (%d upload-pack POSTs)", n)
	}

	// Force-push an unrelated history.
	r.git("checkout", "-q", "--orphan", "tmp")
	c := r.set(map[string]string{"v": "c", "new": "file"})
	r.git("branch", "-q", "-f", "main", c)
	if rev := tg.mustSync(src); rev != c {
		t.Fatalf("after force-push: revision %s, want %s", rev, c)
	}
	tg.assertTree(map[string]string{"v": "c", "new": "file"})
}

func TestUnchangedPollMakesNoUploadPackPOST(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	r.set(map[string]string{"a": "1"})
	srv := startHTTP(t, base)
	tg := newTarget(t)
	src, _ := newSource(t, srv.url("r.git"), git.Options{}, tg.stateDir())
	rev := tg.mustSync(src)
	posts, gets := srv.uploadPOST.Load(), srv.infoRefs.Load()
	for range 5 {
		again, stats, err := tg.sync(src)
		if err != nil || again != rev || stats.BytesWritten != 0 {
			t.Fatalf("unchanged poll: rev %s (want %s), %d bytes written, err %v", again, rev, stats.BytesWritten, err)
		}
	}
	if n := srv.uploadPOST.Load() - posts; n != 0 {
		t.Fatalf("%d git-upload-pack POSTs for 5 unchanged polls, want 0", n)
	}
	if n := srv.infoRefs.Load() - gets; n != 5 {
		t.Fatalf("%d info/refs requests for 5 polls, want 5 (one ls-remote each)", n)
	}

	// A new commit is published on the next poll, with one download.
	r.set(map[string]string{"a": "2"})
	if again := tg.mustSync(src); again == rev {
		t.Fatal("new commit not published")
	}
	tg.assertTree(map[string]string{"a": "2"})
	if n := srv.uploadPOST.Load() - posts; n != 1 {
		t.Fatalf("%d git-upload-pack POSTs for one new commit, want 1", n)
	}
}

func TestUnchangedFilesAreHardLinkedFromThePreviousRevision(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	files := map[string]string{"same": strings.Repeat("s", 1000), "tool.sh": "#!/bin/sh\n", "changes": "1"}
	r.set(files)
	os.Chmod(filepath.Join(r.dir, "tool.sh"), 0o755)
	r.commit("exec bit")
	srv := startHTTP(t, base)
	tg := newTarget(t)
	src, _ := newSource(t, srv.url("r.git"), git.Options{}, tg.stateDir())
	tg.mustSync(src)
	first, _ := filepath.EvalSymlinks(tg.store.LinkPath("c"))
	if fi, err := os.Stat(filepath.Join(first, "tool.sh")); err != nil || fi.Mode().Perm() != 0o555 {
		t.Fatalf("tool.sh mode %v (%v), want 0555", fi.Mode(), err)
	}
	if fi, _ := os.Stat(filepath.Join(first, "same")); fi.Mode().Perm() != 0o444 {
		t.Fatalf("same mode %v, want 0444", fi.Mode())
	}

	r.write("changes", "2", 0o644)
	r.commit("change one file")
	_, stats, err := tg.sync(src)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Reused != 2 || stats.BytesWritten != 1 {
		t.Fatalf("stats %+v, want 2 files reused and 1 byte written", stats)
	}
	second, _ := filepath.EvalSymlinks(tg.store.LinkPath("c"))
	if !sameInode(t, filepath.Join(first, "same"), filepath.Join(second, "same")) {
		t.Fatal("unchanged file was rewritten, not hard-linked")
	}
}

func sameInode(t *testing.T, a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	return fa.Sys().(*syscall.Stat_t).Ino == fb.Sys().(*syscall.Stat_t).Ino
}

func TestRestartReusesTheObjectStore(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	big := randomText(t, 512<<10)
	r.set(map[string]string{"big.bin": big, "small": "1"})
	srv := startHTTP(t, base)
	tg := newTarget(t)
	first, _ := newSource(t, srv.url("r.git"), git.Options{}, tg.stateDir())
	tg.mustSync(first)
	fullClone := srv.packBytes.Load()
	if fullClone < 512<<10 {
		t.Fatalf("first fetch downloaded %d bytes, expected the whole 512 KiB blob", fullClone)
	}

	// The container restarts: a new Source on the same state directory.
	// A restart with nothing new downloads nothing.
	restarted, _ := newSource(t, srv.url("r.git"), git.Options{}, tg.stateDir())
	tg.mustSync(restarted)
	if n := srv.packBytes.Load() - fullClone; n != 0 {
		t.Fatalf("restart with no new commit downloaded %d bytes", n)
	}
	// A new commit downloads only what is new, not the 512 KiB blob again.
	r.set(map[string]string{"big.bin": big, "small": "2"})
	tg.mustSync(restarted)
	tg.assertTree(map[string]string{"big.bin": big, "small": "2"})
	if n := srv.packBytes.Load() - fullClone; n > 16<<10 {
		t.Fatalf("fetch after restart downloaded %d bytes; the store was not reused (full clone: %d)", n, fullClone)
	}

	// Publish lost but commit fetched (killed between fetch and swap): the
	// store answers without a download.
	tg2 := newTarget(t)
	os.MkdirAll(filepath.Dir(tg2.stateDir()), 0o755)
	if err := os.Rename(tg.stateDir(), tg2.stateDir()); err != nil {
		t.Fatal(err)
	}
	before := srv.packBytes.Load()
	again, _ := newSource(t, srv.url("r.git"), git.Options{}, tg2.stateDir())
	tg2.mustSync(again)
	if n := srv.packBytes.Load() - before; n != 0 {
		t.Fatalf("commit already in the store was downloaded again (%d bytes)", n)
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

func TestCorruptStoreIsRebuiltWithOneWarning(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	r.set(map[string]string{"a": "1"})
	srv := startHTTP(t, base)
	tg := newTarget(t)
	src, logs := newSource(t, srv.url("r.git"), git.Options{}, tg.stateDir())
	tg.mustSync(src)

	packs, _ := filepath.Glob(filepath.Join(tg.stateDir(), "*", "objects", "pack", "*.pack"))
	if len(packs) == 0 {
		t.Fatal("no pack in the object store")
	}
	for _, p := range packs {
		os.WriteFile(p, []byte("garbage"), 0o644)
	}
	r.set(map[string]string{"a": "2"})
	if _, _, err := tg.sync(src); err != nil {
		t.Fatalf("sync with a corrupt store: %v", err)
	}
	tg.assertTree(map[string]string{"a": "2"})
	if n := strings.Count(logs.String(), "object store unusable"); n != 1 {
		t.Fatalf("%d warnings about the store, want 1; logs:\n%s", n, logs)
	}
}

func TestForeignStoreIsReplaced(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	one := newRepo(t, base, "one.git")
	one.set(map[string]string{"from": "one"})
	two := newRepo(t, base, "two.git")
	two.set(map[string]string{"from": "two"})
	srv := startHTTP(t, base)
	tg := newTarget(t)
	a, _ := newSource(t, srv.url("one.git"), git.Options{}, tg.stateDir())
	tg.mustSync(a)
	// The same source name now points at another repository.
	b, logs := newSource(t, srv.url("two.git"), git.Options{}, tg.stateDir())
	tg.mustSync(b)
	tg.assertTree(map[string]string{"from": "two"})
	if !strings.Contains(logs.String(), "another repository URL") {
		t.Fatalf("no warning about the foreign store; logs:\n%s", logs)
	}
	// A directory that is no repository at all.
	os.RemoveAll(tg.stateDir())
	os.MkdirAll(filepath.Join(tg.stateDir(), "repo.git", "junk"), 0o755)
	two.set(map[string]string{"from": "two, again"})
	tg.mustSync(b)
	tg.assertTree(map[string]string{"from": "two, again"})
}

func TestDeletedBranchIsAPermanentErrorAndKeepsTheRevision(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	r.set(map[string]string{"a": "1"})
	r.git("checkout", "-q", "-b", "release")
	r.set(map[string]string{"a": "release"})
	r.git("checkout", "-q", "main")
	srv := startHTTP(t, base)
	tg := newTarget(t)
	src, _ := newSource(t, srv.url("r.git")+"?ref=release", git.Options{}, tg.stateDir())
	tg.mustSync(src)
	r.git("branch", "-q", "-D", "release")
	_, _, err := tg.sync(src)
	if err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), `ref "release" not found`) {
		t.Fatalf("err = %v, want a permanent 'ref not found'", err)
	}
	assertOneLine(t, err)
	tg.assertTree(map[string]string{"a": "release"})
}

func assertOneLine(t *testing.T, err error) {
	t.Helper()
	if strings.ContainsAny(err.Error(), "\r\n") {
		t.Fatalf("error is not one line: %q", err)
	}
}

func TestAuthFailuresArePermanentAndNeverShowTheSecret(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	r.set(map[string]string{"a": "1"})
	srv := startHTTPAuth(t, base, "alice", "right-token")
	pw := filepath.Join(t.TempDir(), "token")
	os.WriteFile(pw, []byte("wrong-token"), 0o600)
	tg := newTarget(t)

	anon, _ := newSource(t, srv.url("r.git"), git.Options{}, tg.stateDir())
	_, _, err := tg.sync(anon)
	if err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), "authentication required") {
		t.Fatalf("anonymous: err = %v, want a permanent 'authentication required'", err)
	}

	src, logs := newSource(t, srv.url("r.git"), git.Options{Username: "alice", PasswordFile: pw}, tg.stateDir())
	_, _, err = tg.sync(src)
	if err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("wrong token: err = %v, want a permanent 'authentication failed'", err)
	}
	assertOneLine(t, err)
	if strings.Contains(err.Error(), "wrong-token") || strings.Contains(logs.String(), "wrong-token") {
		t.Fatalf("the secret leaked: %v\n%s", err, logs)
	}

	// The file is re-read on every sync: a rotated Secret fixes it in place.
	os.WriteFile(pw, []byte("right-token\n"), 0o600)
	if _, _, err := tg.sync(src); err != nil {
		t.Fatalf("after rotating the token: %v", err)
	}
	tg.assertTree(map[string]string{"a": "1"})
}

func TestSSHHostKeyMustBeKnown(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	r.set(map[string]string{"a": "1"})
	srv := startSSH(t, base)
	dir := t.TempDir()

	// known_hosts holds another key for this host: a changed key or a
	// man in the middle.
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ssh.NewSignerFromKey(otherPriv)
	mismatch := filepath.Join(dir, "mismatch")
	srv.writeKnownHosts(t, mismatch, other.PublicKey())
	// known_hosts without this host at all.
	unknown := filepath.Join(dir, "unknown")
	os.WriteFile(unknown, []byte("[127.0.0.1]:1 "+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(srv.hostKey.PublicKey())))+"\n"), 0o644)

	for _, c := range []struct{ file, want string }{
		{mismatch, "does not match the known_hosts file"},
		{unknown, "is not in the known_hosts file"},
	} {
		tg := newTarget(t)
		o := srv.options()
		o.KnownHostsFile = c.file
		src, _ := newSource(t, srv.url("r.git"), o, tg.stateDir())
		_, _, err := tg.sync(src)
		if err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("err = %v, want a permanent %q", err, c.want)
		}
		assertOneLine(t, err)
	}

	// The explicit opt-out works and warns on every sync.
	tg := newTarget(t)
	src, logs := newSource(t, srv.url("r.git"), git.Options{SSHKeyFile: srv.clientKeyFile, InsecureIgnoreHostKey: true}, tg.stateDir())
	tg.mustSync(src)
	tg.mustSync(src)
	if n := strings.Count(logs.String(), "host key not verified"); n != 2 {
		t.Fatalf("%d insecure-host-key warnings for 2 syncs, want 2", n)
	}
}

func TestSSHRefusedKeyIsPermanent(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	r.set(map[string]string{"a": "1"})
	srv := startSSH(t, base)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, _ := ssh.MarshalPrivateKey(priv, "")
	key := filepath.Join(t.TempDir(), "other_key")
	os.WriteFile(key, pemEncode(block), 0o600)
	o := srv.options()
	o.SSHKeyFile = key
	tg := newTarget(t)
	src, _ := newSource(t, srv.url("r.git"), o, tg.stateDir())
	_, _, err := tg.sync(src)
	if err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), "SSH authentication failed") {
		t.Fatalf("err = %v, want a permanent SSH authentication failure", err)
	}
	assertOneLine(t, err)
}

func TestSymlinksStayInsideTheRevision(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	r.write("conf/app.yaml", "x", 0o644)
	r.symlink("current.yaml", "conf/app.yaml")
	r.symlink("conf/self", "../conf")
	r.commit("links inside")
	srv := startHTTP(t, base)
	tg := newTarget(t)
	src, _ := newSource(t, srv.url("r.git"), git.Options{}, tg.stateDir())
	tg.mustSync(src)
	tg.assertTree(map[string]string{"conf/app.yaml": "x", "current.yaml": "-> conf/app.yaml", "conf/self": "-> ../conf"})

	for _, c := range []struct{ link, target string }{
		{"conf/escape", "../../outside"},
		{"abs", "/etc/passwd"},
	} {
		r.clear()
		r.write("conf/app.yaml", "x", 0o644)
		r.symlink(c.link, c.target)
		r.commit("escape " + c.link)
		_, _, err := tg.sync(src)
		if err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), `"`+c.link+`"`) {
			t.Fatalf("symlink %s -> %s: err = %v, want a permanent refusal naming it", c.link, c.target, err)
		}
	}

	// Inside the repository but outside //subdir is outside the revision.
	r.clear()
	r.write("shared/common.yaml", "c", 0o644)
	r.symlink("prod/common.yaml", "../shared/common.yaml")
	r.commit("link out of the subdir")
	tg2 := newTarget(t)
	sub, _ := newSource(t, "git::"+srv.URL+"/r.git//prod", git.Options{}, tg2.stateDir())
	if _, _, err := tg2.sync(sub); err == nil || !strings.Contains(err.Error(), `"common.yaml"`) {
		t.Fatalf("err = %v, want a refusal naming common.yaml", err)
	}
}

func TestSubmoduleIsPublishedAsAnEmptyDirectory(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	sha := r.set(map[string]string{"a": "1"})
	r.git("update-index", "--add", "--cacheinfo", "160000,"+sha+",vendor/lib")
	r.git("commit", "-q", "-m", "submodule")
	srv := startHTTP(t, base)
	tg := newTarget(t)
	src, logs := newSource(t, srv.url("r.git"), git.Options{}, tg.stateDir())
	tg.mustSync(src)
	tg.assertTree(map[string]string{"a": "1", "vendor/lib/": ""})
	if !strings.Contains(logs.String(), "submodule") || !strings.Contains(logs.String(), "vendor/lib") {
		t.Fatalf("no warning naming the submodule; logs:\n%s", logs)
	}
}

func TestRepositoryNotFoundIsPermanent(t *testing.T) {
	t.Parallel()
	h := startHTTP(t, t.TempDir())
	s := startSSH(t, t.TempDir())
	for _, c := range []struct {
		url  string
		opts git.Options
	}{{h.url("missing.git"), git.Options{}}, {s.url("missing.git"), s.options()}} {
		tg := newTarget(t)
		src, _ := newSource(t, c.url, c.opts, tg.stateDir())
		_, _, err := tg.sync(src)
		if err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), "repository not found") {
			t.Fatalf("%s: err = %v, want a permanent 'repository not found'", c.url, err)
		}
		assertOneLine(t, err)
	}
}

func TestUnreachableServerIsATransientOneLineError(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	tg := newTarget(t)
	src, _ := newSource(t, "git::http://"+addr+"/r.git", git.Options{}, tg.stateDir())
	_, _, err = tg.sync(src)
	if err == nil || fetch.IsPermanent(err) || !strings.Contains(err.Error(), "cannot reach the server") {
		t.Fatalf("err = %v, want a transient 'cannot reach the server'", err)
	}
	assertOneLine(t, err)
}

func TestTimeoutIsATransientError(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer stall.Close()
	defer close(release)
	tg := newTarget(t)
	src, _ := newSource(t, "git::"+stall.URL+"/r.git", git.Options{}, tg.stateDir())
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := tg.syncCtx(ctx, src)
	if err == nil || fetch.IsPermanent(err) || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v, want a transient timeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("timeout took %s", d)
	}
}

func TestFileURLNeedsTheGitBinaryAndWorks(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r")
	r.set(map[string]string{"a": "local"})
	tg := newTarget(t)
	src, _ := newSource(t, "git::file://"+r.dir, git.Options{}, tg.stateDir())
	tg.mustSync(src)
	tg.assertTree(map[string]string{"a": "local"})
}

func TestNewRejectsBadConfigurationBeforeAnyNetwork(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, _ := ssh.MarshalPrivateKey(priv, "")
	os.WriteFile(key, pemEncode(block), 0o600)
	encBlock, _ := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("pass"))
	encKey := filepath.Join(dir, "enc")
	os.WriteFile(encKey, pemEncode(encBlock), 0o600)
	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(kh, nil, 0o644)
	sshOK := git.Options{SSHKeyFile: key, KnownHostsFile: kh}

	cases := []struct {
		name, url string
		o         git.Options
		want      string
	}{
		{"password in URL", "git::https://u:hunter2@example.com/r.git", git.Options{}, "give PasswordFile"},
		{"unknown option", "git::https://example.com/r.git?rev=main", git.Options{}, `"rev" is unknown`},
		{"negative depth", "git::https://example.com/r.git?depth=-1", git.Options{}, "depth"},
		{"bad ref", "git::https://example.com/r.git?ref=a..b", git.Options{}, "not a valid branch"},
		{"submodules asked for", "git::https://example.com/r.git?submodules=true", git.Options{}, "submodules are not supported"},
		{"submodules with a query typed into it", "git::https://example.com/r.git?submodules=1?token=hunter2", git.Options{}, "submodules=REDACTED"},
		{"inline ssh key", "git::ssh://git@example.com/r.git?sshkey=AAAA", sshOK, "use SSHKeyFile"},
		{"ssh without a key", "git::ssh://git@example.com/r.git", git.Options{KnownHostsFile: kh}, "give SSHKeyFile"},
		{"ssh without known_hosts", "git@example.com:org/r.git", git.Options{SSHKeyFile: key}, "give KnownHostsFile (or, at your own risk, InsecureIgnoreHostKey)"},
		{"missing known_hosts file", "git::ssh://git@example.com/r.git", git.Options{SSHKeyFile: key, KnownHostsFile: filepath.Join(dir, "nope")}, "KnownHostsFile: stat"},
		{"encrypted key", "git::ssh://git@example.com/r.git", git.Options{SSHKeyFile: encKey, KnownHostsFile: kh}, "passphrase"},
		{"missing password file", "git::https://example.com/r.git", git.Options{PasswordFile: filepath.Join(dir, "nope")}, "PasswordFile: open"},
		{"unsupported scheme", "git::ftp://example.com/r.git", git.Options{}, "not supported"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u, err := fetch.Parse(c.url)
			if err != nil {
				t.Fatal(err)
			}
			_, err = git.New(u, c.o, fetch.Env{StateDir: dir})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, c.want)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "--") {
				t.Fatalf("error shows the password or names a flag: %v", err)
			}
		})
	}
	// scp-like shorthand and SSH with everything given are accepted.
	for _, raw := range []string{"git@example.com:org/r.git?ref=v1.2.3", "git::ssh://git@example.com:2222/r.git//conf?depth=3"} {
		u, err := fetch.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := git.New(u, sshOK, fetch.Env{StateDir: dir}); err != nil {
			t.Fatalf("New(%s): %v", raw, err)
		}
	}
}

func pemEncode(b *pem.Block) []byte { return pem.EncodeToMemory(b) }

func TestEditedFileArrivesAsADeltaAgainstTheStore(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	var lines []string
	for i := range 20000 {
		lines = append(lines, randomText(t, 4)+" line "+string(rune('a'+i%26)))
	}
	text := strings.Join(lines, "\n")
	r.set(map[string]string{"big.txt": text, "other": "x"})
	srv := startHTTP(t, base)
	tg := newTarget(t)
	src, _ := newSource(t, srv.url("r.git"), git.Options{}, tg.stateDir())
	tg.mustSync(src)
	first := srv.packBytes.Load()

	// One line changes in a file of ~200 KB: git sends a delta against the
	// blob we hold (a thin pack), which must be resolved from the store.
	edited := strings.Replace(text, lines[100], "changed", 1)
	r.set(map[string]string{"big.txt": edited, "other": "x"})
	tg.mustSync(src)
	tg.assertTree(map[string]string{"big.txt": edited, "other": "x"})
	if n := srv.packBytes.Load() - first; n > 8<<10 {
		t.Fatalf("one-line edit downloaded %d bytes (first fetch %d): not a delta", n, first)
	}
}

func TestUnreadableObjectRemovesTheStoreAndTheNextSyncFetchesAgain(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	big := randomText(t, 64<<10)
	r.set(map[string]string{"big.bin": big})
	srv := startHTTP(t, base)
	tg := newTarget(t)
	src, logs := newSource(t, srv.url("r.git"), git.Options{}, tg.stateDir())
	tg.mustSync(src)

	// Damage the blob's bytes in the pack, leaving commit and tree readable.
	packs, _ := filepath.Glob(filepath.Join(tg.stateDir(), "*", "objects", "pack", "*.pack"))
	if len(packs) != 1 {
		t.Fatalf("packs %v, want one", packs)
	}
	data, _ := os.ReadFile(packs[0])
	// The 64 KiB blob fills most of the pack: its middle is the blob's.
	for j := len(data) / 2; j < len(data)/2+4096; j++ {
		data[j] ^= 0xff
	}
	os.WriteFile(packs[0], data, 0o644)

	// A fresh root (prev "") re-exports the stored commit and meets the damage.
	tg2 := newTarget(t)
	os.MkdirAll(filepath.Dir(tg2.stateDir()), 0o755)
	os.Rename(tg.stateDir(), tg2.stateDir())
	src2, logs2 := newSource(t, srv.url("r.git"), git.Options{}, tg2.stateDir())
	_, _, err := tg2.sync(src2)
	if err == nil || fetch.IsPermanent(err) || !strings.Contains(err.Error(), "object store") {
		t.Fatalf("err = %v, want a transient object-store error", err)
	}
	assertOneLine(t, err)
	t.Logf("error shown: %v", err)
	if _, serr := os.Stat(filepath.Join(tg2.stateDir(), "repo.git")); serr == nil {
		t.Fatal("the damaged store was kept")
	}
	tg2.mustSync(src2)
	tg2.assertTree(map[string]string{"big.bin": big})
	if n := strings.Count(logs.String()+logs2.String(), "object store unusable"); n != 1 {
		t.Fatalf("%d warnings about the store, want 1; logs:\n%s", n, logs2)
	}
}

func TestStalledSSHServerTimesOut(t *testing.T) {
	t.Parallel()
	// Accepts TCP and never speaks SSH: a wedged server or load balancer.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	srv := startSSH(t, t.TempDir()) // for a key and a known_hosts file
	tg := newTarget(t)
	src, _ := newSource(t, "git::ssh://git@"+ln.Addr().String()+"/r.git", git.Options{SSHKeyFile: srv.clientKeyFile, InsecureIgnoreHostKey: true}, tg.stateDir())
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, _, err := tg.syncCtx(ctx, src)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || fetch.IsPermanent(err) || !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("err = %v, want a transient timeout", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Fetch ignored its deadline against a stalled SSH server")
	}
}
