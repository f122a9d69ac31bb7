package git_test

import (
	"testing"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/git"
)

// TestSubdirRevisionChangesOnlyWithTheSubdirectory: a commit that leaves
// //subdir alone is no new revision (nothing written, so nothing published
// or notified), yet OriginRevision still names the commit; a restart with
// the ref unchanged downloads nothing.
func TestSubdirRevisionChangesOnlyWithTheSubdirectory(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	files := map[string]string{"README": "v1", "prod/app.yaml": "prod v1", "dev/app.yaml": "dev v1"}
	c1 := r.set(files)
	srv := startHTTP(t, base)
	tg := newTarget(t)
	url := "git::" + srv.URL + "/r.git//prod?ref=main"
	src, _ := newSource(t, url, git.Options{}, tg.stateDir())
	assertOrigin(t, src, "")
	rev1 := tg.mustSync(src)
	if want := r.git("rev-parse", c1+":prod"); rev1 != want {
		t.Fatalf("revision %s, want the tree of prod, %s", rev1, want)
	}
	assertOrigin(t, src, c1)

	// Commits outside the subdirectory: the new commit is fetched (to learn
	// its tree), and the revision stays. tg.sync fails the test if
	// anything was written.
	files["README"], files["dev/app.yaml"] = "v2", "dev v2"
	c2 := r.set(files)
	posts := srv.uploadPOST.Load()
	if rev, _, err := tg.sync(src); err != nil || rev != rev1 {
		t.Fatalf("commit outside the subdir: revision %s, err %v; want %s unchanged", rev, err, rev1)
	}
	if n := srv.uploadPOST.Load() - posts; n != 1 {
		t.Fatalf("%d upload-pack POSTs for a new commit, want 1", n)
	}
	assertOrigin(t, src, c2)

	// A commit inside it is a new revision.
	files["prod/app.yaml"] = "prod v2"
	c3 := r.set(files)
	rev3 := tg.mustSync(src)
	if want := r.git("rev-parse", c3+":prod"); rev3 != want {
		t.Fatalf("revision %s after a change in prod, want %s", rev3, want)
	}
	tg.assertTree(map[string]string{"app.yaml": "prod v2"})
	assertOrigin(t, src, c3)

	// A restart with the ref unchanged: the store knows the commit and its
	// tree, so the poll is one ls-remote.
	restarted, _ := newSource(t, url, git.Options{}, tg.stateDir())
	posts = srv.uploadPOST.Load()
	if rev := tg.mustSync(restarted); rev != rev3 {
		t.Fatalf("after a restart: revision %s, want %s", rev, rev3)
	}
	if n := srv.uploadPOST.Load() - posts; n != 0 {
		t.Fatalf("%d upload-pack POSTs after a restart with nothing new, want 0", n)
	}
	assertOrigin(t, restarted, c3)

	// Pinned to a commit: its subdirectory's tree, and after a restart no
	// request at all.
	pinned := "git::" + srv.URL + "/r.git//prod?ref=" + c2
	src2, _ := newSource(t, pinned, git.Options{}, tg.stateDir())
	if rev := tg.mustSync(src2); rev != rev1 {
		t.Fatalf("pinned to %s: revision %s, want %s", c2, rev, rev1)
	}
	assertOrigin(t, src2, c2)
	requests := srv.infoRefs.Load() + srv.uploadPOST.Load()
	src3, _ := newSource(t, pinned, git.Options{}, tg.stateDir())
	if rev := tg.mustSync(src3); rev != rev1 {
		t.Fatalf("pinned, restarted: revision %s, want %s", rev, rev1)
	}
	if n := srv.infoRefs.Load() + srv.uploadPOST.Load() - requests; n != 0 {
		t.Fatalf("%d requests for a pinned commit after a restart, want 0", n)
	}
	assertOrigin(t, src3, c2)
}

// TestRevisionWithoutSubdirIsTheCommit: the commit SHA, which
// OriginRevision repeats.
func TestRevisionWithoutSubdirIsTheCommit(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	c1 := r.set(map[string]string{"a": "1"})
	srv := startHTTP(t, base)
	tg := newTarget(t)
	src, _ := newSource(t, srv.url("r.git"), git.Options{}, tg.stateDir())
	if rev := tg.mustSync(src); rev != c1 {
		t.Fatalf("revision %s, want the commit %s", rev, c1)
	}
	assertOrigin(t, src, c1)
	c2 := r.set(map[string]string{"a": "1", "b": "2"})
	if rev := tg.mustSync(src); rev != c2 {
		t.Fatalf("revision %s, want the commit %s", rev, c2)
	}
	assertOrigin(t, src, c2)
}

// assertOrigin checks that src reports commit as the origin's revision
// ("" before the first fetch).
func assertOrigin(t *testing.T, src fetch.Source, commit string) {
	t.Helper()
	or, ok := src.(fetch.OriginReporter)
	if !ok {
		t.Fatalf("%T is no fetch.OriginReporter", src)
	}
	if got := or.OriginRevision(); got != commit {
		t.Fatalf("OriginRevision = %q, want the commit %q", got, commit)
	}
}
