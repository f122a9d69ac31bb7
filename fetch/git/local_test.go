package git_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/git"
	"github.com/ferrysync/ferry/internal/sourcetest"
)

// TestFileURLIsReadInPlaceWithoutTheGitBinary: a git::file:// repository,
// bare, with a work tree, a linked work tree or a shared clone's, is
// published from its own object database with no git binary on PATH, and
// nothing is copied into the source's state directory. Not parallel: it
// empties PATH.
func TestFileURLIsReadInPlaceWithoutTheGitBinary(t *testing.T) {
	base := t.TempDir()
	r := newRepo(t, base, "work")
	r.write("tool.sh", "#!/bin/sh\n", 0o755)
	first := r.set(map[string]string{"app.yaml": "v1", "conf/prod.yaml": "prod v1"})
	r.git("tag", "-a", "-m", "release", "v1")
	second := r.set(map[string]string{"app.yaml": "v2", "conf/prod.yaml": "prod v2"})
	r.git("clone", "-q", "--bare", r.dir, filepath.Join(base, "bare.git"))
	// Its objects are the work tree's, named in objects/info/alternates.
	r.git("clone", "-q", "--shared", r.dir, filepath.Join(base, "shared"))
	r.git("worktree", "add", "-q", "-b", "linked", filepath.Join(base, "linked"))
	linked := &repo{t: t, dir: filepath.Join(base, "linked"), env: r.env}
	third := linked.set(map[string]string{"app.yaml": "linked"})
	// Not committed: never published, as git clone would not.
	r.write("app.yaml", "uncommitted", 0o644)

	t.Setenv("PATH", t.TempDir())
	for _, c := range []struct {
		name, url, commit string
		want              map[string]string
	}{
		{"bare, remote HEAD", "bare.git", second, map[string]string{"app.yaml": "v2", "conf/prod.yaml": "prod v2"}},
		{"bare, annotated tag", "bare.git?ref=v1", first, map[string]string{"app.yaml": "v1", "conf/prod.yaml": "prod v1"}},
		{"work tree, its HEAD", "work", second, map[string]string{"app.yaml": "v2", "conf/prod.yaml": "prod v2"}},
		{"work tree, subdir", "work//conf?ref=main", second, map[string]string{"prod.yaml": "prod v2"}},
		{"work tree, commit SHA", "work?ref=" + first, first, map[string]string{"app.yaml": "v1", "conf/prod.yaml": "prod v1"}},
		{"linked work tree, its HEAD", "linked", third, map[string]string{"app.yaml": "linked"}},
		{"shared clone", "shared", second, map[string]string{"app.yaml": "v2", "conf/prod.yaml": "prod v2"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			state := t.TempDir()
			// A store an earlier version fetched into is removed.
			os.MkdirAll(filepath.Join(state, "repo.git", "objects"), 0o755)
			src, _ := newSource(t, "git::file://"+base+"/"+c.url, git.Options{}, state)
			rev, w := mustFetch(t, src)
			sourcetest.AssertTree(t, w.Tree(), c.want)
			if src.OriginRevision() != c.commit {
				t.Fatalf("commit %s, want %s", src.OriginRevision(), c.commit)
			}
			if again, w, err := fetchMem(t, src, rev); err != nil || again != rev || w.Opened() != 0 {
				t.Fatalf("unchanged poll: revision %s, %d files read, err %v; want %s, none", again, w.Opened(), err, rev)
			}
			if files := storeFiles(t, state); len(files) != 0 {
				t.Fatalf("state directory holds %v, want nothing", files)
			}
		})
	}

	for _, c := range []struct{ name, url, want string }{
		{"no repository", "git::file://" + filepath.Join(base, "missing"), "no git repository at"},
		{"no such ref", "git::file://" + filepath.Join(base, "bare.git") + "?ref=nope", `ref "nope" not found`},
		{"no such commit", "git::file://" + filepath.Join(base, "bare.git") + "?ref=" + strings.Repeat("ab", 20), "not found in the repository"},
	} {
		src, _ := newSource(t, c.url, git.Options{}, t.TempDir())
		_, _, err := fetchMem(t, src, "")
		if err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: err = %v, want a permanent %q", c.name, err, c.want)
		}
		assertOneLine(t, err)
	}
}
