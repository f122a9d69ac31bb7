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

func TestRestartReusesTheObjectStore(t *testing.T) {
	t.Parallel()
	r, srv := serveRepo(t)
	big := randomText(t, 512<<10)
	r.set(map[string]string{"big.bin": big, "small": "1"})
	store, state := newStore(t, fetch.Limits{})
	first, _ := newSource(t, srv.url("r.git"), git.Options{}, state)
	sourcetest.MustSync(t, store, "c", first)
	fullClone := srv.packBytes.Load()
	if fullClone < 512<<10 {
		t.Fatalf("first fetch downloaded %d bytes, expected the whole 512 KiB blob", fullClone)
	}

	// The container restarts: a new Source on the same state directory.
	// A restart with nothing new downloads nothing.
	restarted, _ := newSource(t, srv.url("r.git"), git.Options{}, state)
	sourcetest.MustSync(t, store, "c", restarted)
	if n := srv.packBytes.Load() - fullClone; n != 0 {
		t.Fatalf("restart with no new commit downloaded %d bytes", n)
	}
	// A new commit downloads only what is new, not the 512 KiB blob again.
	r.set(map[string]string{"big.bin": big, "small": "2"})
	sourcetest.MustSync(t, store, "c", restarted)
	assertPublished(t, store, map[string]string{"big.bin": big, "small": "2"})
	if n := srv.packBytes.Load() - fullClone; n > 16<<10 {
		t.Fatalf("fetch after restart downloaded %d bytes; the store was not reused (full clone: %d)", n, fullClone)
	}

	// Publish lost but commit fetched (killed between fetch and swap): the
	// store answers without a download.
	before := srv.packBytes.Load()
	again, _ := newSource(t, srv.url("r.git"), git.Options{}, state)
	mustFetch(t, again)
	if n := srv.packBytes.Load() - before; n != 0 {
		t.Fatalf("commit already in the store was downloaded again (%d bytes)", n)
	}
}

func TestCorruptStoreIsRebuiltWithOneWarning(t *testing.T) {
	t.Parallel()
	r, srv := serveRepo(t)
	r.set(map[string]string{"a": "1"})
	state := t.TempDir()
	src, logs := newSource(t, srv.url("r.git"), git.Options{}, state)
	rev, _ := mustFetch(t, src)

	packs, _ := filepath.Glob(filepath.Join(state, "*", "objects", "pack", "*.pack"))
	if len(packs) == 0 {
		t.Fatal("no pack in the object store")
	}
	for _, p := range packs {
		os.WriteFile(p, []byte("garbage"), 0o644)
	}
	r.set(map[string]string{"a": "2"})
	_, w, err := fetchMem(t, src, rev)
	if err != nil {
		t.Fatalf("fetch with a corrupt store: %v", err)
	}
	sourcetest.AssertTree(t, w.Tree(), map[string]string{"a": "2"})
	if n := strings.Count(logs.String(), "object store unusable"); n != 1 {
		t.Fatalf("%d warnings about the store, want 1; logs:\n%s", n, logs)
	}
}

func TestForeignStoreIsReplaced(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	newRepo(t, base, "one.git").set(map[string]string{"from": "one"})
	two := newRepo(t, base, "two.git")
	two.set(map[string]string{"from": "two"})
	srv := startHTTP(t, base)
	state := t.TempDir()
	a, _ := newSource(t, srv.url("one.git"), git.Options{}, state)
	mustFetch(t, a)
	// The same source name now points at another repository.
	b, logs := newSource(t, srv.url("two.git"), git.Options{}, state)
	_, w := mustFetch(t, b)
	sourcetest.AssertTree(t, w.Tree(), map[string]string{"from": "two"})
	if !strings.Contains(logs.String(), "another repository URL") {
		t.Fatalf("no warning about the foreign store; logs:\n%s", logs)
	}
	// A directory that is no repository at all.
	os.RemoveAll(state)
	os.MkdirAll(filepath.Join(state, "repo.git", "junk"), 0o755)
	two.set(map[string]string{"from": "two, again"})
	_, w = mustFetch(t, b)
	sourcetest.AssertTree(t, w.Tree(), map[string]string{"from": "two, again"})
}

func TestUnreadableObjectRemovesTheStoreAndTheNextSyncFetchesAgain(t *testing.T) {
	t.Parallel()
	r, srv := serveRepo(t)
	big := randomText(t, 64<<10)
	r.set(map[string]string{"big.bin": big})
	state := t.TempDir()
	src, logs := newSource(t, srv.url("r.git"), git.Options{}, state)
	mustFetch(t, src)

	// Damage the blob's bytes in the pack, leaving commit and tree readable.
	packs, _ := filepath.Glob(filepath.Join(state, "*", "objects", "pack", "*.pack"))
	if len(packs) != 1 {
		t.Fatalf("packs %v, want one", packs)
	}
	data, _ := os.ReadFile(packs[0])
	// The 64 KiB blob fills most of the pack: its middle is the blob's.
	for j := len(data) / 2; j < len(data)/2+4096; j++ {
		data[j] ^= 0xff
	}
	os.WriteFile(packs[0], data, 0o644)

	// With nothing published, the stored commit is exported again and
	// meets the damage.
	_, _, err := fetchMem(t, src, "")
	if err == nil || fetch.IsPermanent(err) || !strings.Contains(err.Error(), "object store") {
		t.Fatalf("err = %v, want a transient object-store error", err)
	}
	assertOneLine(t, err)
	t.Logf("error shown: %v", err)
	if _, serr := os.Stat(filepath.Join(state, "repo.git")); serr == nil {
		t.Fatal("the damaged store was kept")
	}
	_, w := mustFetch(t, src)
	sourcetest.AssertTree(t, w.Tree(), map[string]string{"big.bin": big})
	if n := strings.Count(logs.String(), "object store unusable"); n != 1 {
		t.Fatalf("%d warnings about the store, want 1; logs:\n%s", n, logs)
	}
}
