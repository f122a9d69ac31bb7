package git_test

import (
	"context"
	"strings"
	gosync "sync"
	"testing"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/git"
	"github.com/ferrysync/ferry/internal/sourcetest"
	"github.com/ferrysync/ferry/signal"
	ferrysync "github.com/ferrysync/ferry/sync"
)

func TestSubdirPublishesOnlyThatTree(t *testing.T) {
	t.Parallel()
	r, srv := serveRepo(t)
	sha := r.set(map[string]string{"README": "top", "conf/prod/app.yaml": "prod", "conf/prod/x/y": "deep", "conf/dev/app.yaml": "dev"})
	store, state := newStore(t, fetch.Limits{})
	src, _ := newSource(t, "git::"+srv.URL+"/r.git//conf/prod?ref=main", git.Options{}, state)
	rev := sourcetest.MustSync(t, store, "c", src).Rev
	if want := r.git("rev-parse", sha+":conf/prod"); rev != want {
		t.Fatalf("revision %s, want the tree of conf/prod %s", rev, want)
	}
	assertPublished(t, store, map[string]string{"app.yaml": "prod", "x/y": "deep"})

	// Another subdir of the same commit is another revision: a restart
	// with a changed //subdir must not keep the old tree.
	other, _ := newSource(t, "git::"+srv.URL+"/r.git//conf/dev?ref=main", git.Options{}, state)
	if rev2 := sourcetest.MustSync(t, store, "c", other).Rev; rev2 != r.git("rev-parse", sha+":conf/dev") {
		t.Fatalf("revision %s for conf/dev of %s (conf/prod: %s)", rev2, sha, rev)
	}
	assertPublished(t, store, map[string]string{"app.yaml": "dev"})

	missing, _ := newSource(t, "git::"+srv.URL+"/r.git//nope", git.Options{}, state)
	if err := sourcetest.Sync(t, store, "c", missing).Err; err == nil || !strings.Contains(err.Error(), `"nope"`) || !fetch.IsPermanent(err) {
		t.Fatalf("err = %v, want a permanent error naming the missing subdir", err)
	}
}

// TestSubdirRevisionChangesOnlyWithTheSubdirectory: a commit that leaves
// //subdir alone is no new revision (nothing written, so nothing published
// or notified), yet OriginRevision still names the commit; a restart with
// the ref unchanged downloads nothing.
func TestSubdirRevisionChangesOnlyWithTheSubdirectory(t *testing.T) {
	t.Parallel()
	r, srv := serveRepo(t)
	files := map[string]string{"README": "v1", "prod/app.yaml": "prod v1", "dev/app.yaml": "dev v1"}
	c1 := r.set(files)
	store, state := newStore(t, fetch.Limits{})
	url := "git::" + srv.URL + "/r.git//prod?ref=main"
	src, _ := newSource(t, url, git.Options{}, state)
	assertOrigin(t, src, "")
	rev1 := sourcetest.MustSync(t, store, "c", src).Rev
	if want := r.git("rev-parse", c1+":prod"); rev1 != want {
		t.Fatalf("revision %s, want the tree of prod, %s", rev1, want)
	}
	assertOrigin(t, src, c1)

	// Commits outside the subdirectory: the new commit is fetched (to learn
	// its tree), and the revision stays. Sync fails the test if anything
	// was written.
	files["README"], files["dev/app.yaml"] = "v2", "dev v2"
	c2 := r.set(files)
	posts := srv.uploadPOST.Load()
	if rev := sourcetest.MustSync(t, store, "c", src).Rev; rev != rev1 {
		t.Fatalf("commit outside the subdir: revision %s, want %s unchanged", rev, rev1)
	}
	if n := srv.uploadPOST.Load() - posts; n != 1 {
		t.Fatalf("%d upload-pack POSTs for a new commit, want 1", n)
	}
	assertOrigin(t, src, c2)

	// A commit inside it is a new revision.
	files["prod/app.yaml"] = "prod v2"
	c3 := r.set(files)
	rev3 := sourcetest.MustSync(t, store, "c", src).Rev
	if want := r.git("rev-parse", c3+":prod"); rev3 != want {
		t.Fatalf("revision %s after a change in prod, want %s", rev3, want)
	}
	assertPublished(t, store, map[string]string{"app.yaml": "prod v2"})
	assertOrigin(t, src, c3)

	// A restart with the ref unchanged: the store knows the commit and its
	// tree, so the poll is one ls-remote.
	restarted, _ := newSource(t, url, git.Options{}, state)
	posts = srv.uploadPOST.Load()
	if rev := sourcetest.MustSync(t, store, "c", restarted).Rev; rev != rev3 {
		t.Fatalf("after a restart: revision %s, want %s", rev, rev3)
	}
	if n := srv.uploadPOST.Load() - posts; n != 0 {
		t.Fatalf("%d upload-pack POSTs after a restart with nothing new, want 0", n)
	}
	assertOrigin(t, restarted, c3)

	// Pinned to a commit: its subdirectory's tree, and after a restart no
	// request at all.
	pinned := "git::" + srv.URL + "/r.git//prod?ref=" + c2
	for i := range 2 {
		pin, _ := newSource(t, pinned, git.Options{}, state)
		requests := srv.infoRefs.Load() + srv.uploadPOST.Load()
		if rev := sourcetest.MustSync(t, store, "c", pin).Rev; rev != rev1 {
			t.Fatalf("pinned to %s: revision %s, want %s", c2, rev, rev1)
		}
		if n := srv.infoRefs.Load() + srv.uploadPOST.Load() - requests; i == 1 && n != 0 {
			t.Fatalf("%d requests for a pinned commit after a restart, want 0", n)
		}
		assertOrigin(t, pin, c2)
	}
}

// TestRevisionWithoutSubdirIsTheCommit: the commit SHA, which
// OriginRevision repeats.
func TestRevisionWithoutSubdirIsTheCommit(t *testing.T) {
	t.Parallel()
	r, srv := serveRepo(t)
	src, _ := newSource(t, srv.url("r.git"), git.Options{}, t.TempDir())
	prev := ""
	for _, files := range []map[string]string{{"a": "1"}, {"a": "1", "b": "2"}} {
		c := r.set(files)
		rev, _, err := fetchMem(t, src, prev)
		if err != nil || rev != c {
			t.Fatalf("revision %s (%v), want the commit %s", rev, err, c)
		}
		assertOrigin(t, src, c)
		prev = rev
	}
}

// assertOrigin checks that src reports commit as the origin's revision
// ("" before the first fetch).
func assertOrigin(t *testing.T, src fetch.OriginReporter, commit string) {
	t.Helper()
	if got := src.OriginRevision(); got != commit {
		t.Fatalf("OriginRevision = %q, want the commit %q", got, commit)
	}
}

// TestPathsPublishOnlyTheSelectionAndChangeOnlyWithIt: ?paths= keeps the
// directories and globs it names, where they are in the repository; a
// commit that changes nothing selected is no new revision (nothing
// written, so nothing published and nobody notified).
func TestPathsPublishOnlyTheSelectionAndChangeOnlyWithIt(t *testing.T) {
	t.Parallel()
	r, srv := serveRepo(t)
	files := map[string]string{"README": "top", "conf/prod/app.yaml": "prod", "conf/prod/x/y": "deep", "conf/dev/app.yaml": "dev",
		"shared/a.yaml": "a", "shared/b.json": "b", "shared/sub/c.yaml": "c"}
	r.set(files)
	store, state := newStore(t, fetch.Limits{})
	src, _ := newSource(t, "git::"+srv.URL+"/r.git?paths=conf/prod,shared/*.yaml", git.Options{}, state)
	rev1 := sourcetest.MustSync(t, store, "c", src).Rev
	assertPublished(t, store, map[string]string{"conf/prod/app.yaml": "prod", "conf/prod/x/y": "deep", "shared/a.yaml": "a"})

	files["README"], files["conf/dev/app.yaml"], files["shared/b.json"], files["shared/sub/c.yaml"] = "top 2", "dev 2", "b 2", "c 2"
	c2 := r.set(files)
	if rev := sourcetest.MustSync(t, store, "c", src).Rev; rev != rev1 {
		t.Fatalf("a change outside the selection: revision %s, want %s unchanged", rev, rev1)
	}
	assertOrigin(t, src, c2)

	files["shared/a.yaml"] = "a 2"
	r.set(files)
	rev3 := sourcetest.MustSync(t, store, "c", src).Rev
	if rev3 == rev1 {
		t.Fatal("a change inside the selection kept the revision")
	}
	assertPublished(t, store, map[string]string{"conf/prod/app.yaml": "prod", "conf/prod/x/y": "deep", "shared/a.yaml": "a 2"})

	// Relative to the //subdir, and another selection of the same commit is
	// another revision.
	sub, _ := newSource(t, "git::"+srv.URL+"/r.git//conf?paths=*/app.yaml", git.Options{}, state)
	if rev := sourcetest.MustSync(t, store, "c", sub).Rev; rev == rev3 {
		t.Fatal("another selection kept the revision")
	}
	assertPublished(t, store, map[string]string{"prod/app.yaml": "prod", "dev/app.yaml": "dev 2"})
}

func TestPathsThatAreNotCleanArePermanentConfigurationErrors(t *testing.T) {
	t.Parallel()
	for _, q := range []string{"paths=", "paths=../x", "paths=a/[", "paths=a/./b"} {
		u, err := fetch.Parse("git::https://example.com/r.git?" + q)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := git.New(u, git.Options{}, fetch.Env{StateDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "paths") {
			t.Fatalf("%s: err = %v, want one naming paths", q, err)
		}
	}
}

type notes struct {
	mu      gosync.Mutex
	changes []signal.Change
}

func (n *notes) Notify(cs ...signal.Change) {
	n.mu.Lock()
	n.changes = append(n.changes, cs...)
	n.mu.Unlock()
}

func (n *notes) count() int { n.mu.Lock(); defer n.mu.Unlock(); return len(n.changes) }

// TestIgnoredChangeOfAGitSourcePublishesNothing: the engine's ignore
// patterns over a real git source: a commit that changes only ignored
// files is a new commit, yet nothing is published and nobody is told.
func TestIgnoredChangeOfAGitSourcePublishesNothing(t *testing.T) {
	t.Parallel()
	r, srv := serveRepo(t)
	files := map[string]string{"app.yaml": "v1", "README.md": "docs", "tests/a.yaml": "t"}
	r.set(files)
	store, state := newStore(t, fetch.Limits{})
	src, _ := newSource(t, srv.url("r.git"), git.Options{}, state)
	rec := &notes{}
	s, err := ferrysync.New(ferrysync.Config{Store: store, Notifiers: []ferrysync.Notifier{rec},
		Sources: []ferrysync.Source{{Name: "c", Backend: src, Ignore: []string{"*.md", "tests/"}}}})
	if err != nil {
		t.Fatal(err)
	}
	once := func() string {
		t.Helper()
		if err := s.Once(context.Background()); err != nil {
			t.Fatal(err)
		}
		rev, _ := store.Current("c")
		return rev
	}
	c1 := once()
	assertPublished(t, store, map[string]string{"app.yaml": "v1"})

	files["README.md"], files["tests/a.yaml"] = "docs v2", "t2"
	r.set(files)
	if rev := once(); rev != c1 || rec.count() != 0 {
		t.Fatalf("an ignored change: revision %s (was %s), %d notifications", rev, c1, rec.count())
	}
	posts := srv.uploadPOST.Load()
	if rev := once(); rev != c1 || srv.uploadPOST.Load() != posts {
		t.Fatalf("the poll after an ignored change: revision %s, %d fetches", rev, srv.uploadPOST.Load()-posts)
	}

	files["app.yaml"] = "v2"
	c3 := r.set(files)
	if rev := once(); rev != c3 || rec.count() != 1 {
		t.Fatalf("a change: revision %s, want %s; %d notifications, want 1", rev, c3, rec.count())
	}
	assertPublished(t, store, map[string]string{"app.yaml": "v2"})
}
