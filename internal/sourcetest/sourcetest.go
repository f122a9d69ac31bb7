// Package sourcetest is the behaviour every source must have, written once
// and run against each backend with a real origin: it publishes a tree
// through the real publish engine, notices no change, publishes a change,
// refuses escapes and keeps the last good revision when the origin fails.
package sourcetest

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/sync"
)

// Origin is a real origin under a test's control.
type Origin interface {
	// Source returns a source reading this origin; stateDir is its private
	// state directory.
	Source(t *testing.T, stateDir string) fetch.Source
	// Set replaces the origin's content with files (path -> content).
	Set(t *testing.T, files map[string]string)
	// Break makes the next fetches fail the way an outage would.
	Break(t *testing.T)
}

// Escaper is an Origin that can hold an entry pointing outside the tree
// (a symlink to /etc, a "../" path).
type Escaper interface {
	// SetEscape replaces the content with a tree holding a hostile entry,
	// and returns the entry's name as the error must show it.
	SetEscape(t *testing.T) string
}

// Run runs the contract against o.
func Run(t *testing.T, o Origin) {
	root := t.TempDir()
	store, err := sync.OpenStore(root, fetch.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	src := o.Source(t, sync.StateDir(root, "c"))
	fetchOnce := func(t *testing.T) (string, string, sync.Stats, error) {
		t.Helper()
		r := Sync(t, store, "c", src)
		return r.Prev, r.Rev, r.Stats, r.Err
	}

	v1 := map[string]string{"app.yaml": "version: 1\n", "conf.d/a.conf": "a\n", "conf.d/b.conf": "b\n"}
	var rev1 string
	t.Run("PublishesTree", func(t *testing.T) {
		o.Set(t, v1)
		_, rev, _, err := fetchOnce(t)
		if err != nil {
			t.Fatal(err)
		}
		if rev == "" {
			t.Fatal("empty revision")
		}
		rev1 = rev
		AssertTree(t, ReadTree(t, store.LinkPath("c")), v1)
	})
	t.Run("UnchangedIsNotModified", func(t *testing.T) {
		prev, rev, stats, err := fetchOnce(t)
		if err != nil {
			t.Fatal(err)
		}
		if rev != prev || rev != rev1 {
			t.Fatalf("revision %q after no change, want %q", rev, rev1)
		}
		if stats.BytesWritten != 0 {
			t.Fatalf("%d bytes written for an unchanged origin", stats.BytesWritten)
		}
	})
	v2 := map[string]string{"app.yaml": "version: 2\n", "conf.d/a.conf": "a\n", "conf.d/c.conf": "c\n"}
	t.Run("ChangePublishesNewRevision", func(t *testing.T) {
		o.Set(t, v2)
		_, rev, _, err := fetchOnce(t)
		if err != nil {
			t.Fatal(err)
		}
		if rev == rev1 {
			t.Fatal("revision did not change with the content")
		}
		AssertTree(t, ReadTree(t, store.LinkPath("c")), v2)
	})
	if e, ok := o.(Escaper); ok {
		t.Run("RefusesEscape", func(t *testing.T) {
			entry := e.SetEscape(t)
			_, _, _, err := fetchOnce(t)
			if err == nil || !strings.Contains(err.Error(), entry) {
				t.Fatalf("err = %v, want a refusal naming %q", err, entry)
			}
			AssertTree(t, ReadTree(t, store.LinkPath("c")), v2)
			o.Set(t, v2)
		})
	}
	t.Run("OutageKeepsLastGoodRevision", func(t *testing.T) {
		o.Break(t)
		_, _, _, err := fetchOnce(t)
		if err == nil {
			t.Fatal("fetch from a broken origin succeeded")
		}
		if strings.Count(err.Error(), "\n") > 0 {
			t.Errorf("error is not one line: %q", err)
		}
		AssertTree(t, ReadTree(t, store.LinkPath("c")), v2)
		if m, _ := filepath.Glob(filepath.Join(root, ".ferry/c/.stage-*")); len(m) > 0 {
			t.Fatalf("staging left behind: %v", m)
		}
	})
}

// Result is what one Sync did.
type Result struct {
	Prev, Rev string // the revision before and after
	Stats     sync.Stats
	Err       error // the Fetch's or the publish's
}

// Sync is one fetch-then-publish of src as source name, the way the
// daemon does it: against the revision published, publishing what
// changed, removing staging whatever happens. A source that reports no
// change must not have written anything.
func Sync(t testing.TB, store *sync.Store, name string, src fetch.Source) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	prev, err := store.Current(name)
	if err != nil {
		t.Fatal(err)
	}
	st := store.Begin(name, prev)
	defer st.Discard()
	rev, err := src.Fetch(ctx, prev, st)
	r := Result{Prev: prev, Rev: rev, Stats: st.Stats(), Err: err}
	switch {
	case err != nil:
	case rev == "":
		r.Err = errors.New("the source returned no revision")
	case rev == prev:
		if st.Dir() != "" {
			t.Errorf("source wrote to staging although nothing changed")
		}
	default:
		r.Err = st.Publish(rev)
	}
	return r
}

// MustSync is Sync that fails the test on an error.
func MustSync(t testing.TB, store *sync.Store, name string, src fetch.Source) Result {
	t.Helper()
	r := Sync(t, store, name, src)
	if r.Err != nil {
		t.Fatalf("sync: %v", r.Err)
	}
	return r
}

// ReadTree returns the tree at dir (a link is followed first) as relative
// slash-separated path -> content; a symlink shows as "-> target".
func ReadTree(t testing.TB, dir string) map[string]string {
	t.Helper()
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	err = filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(real, p)
		if d.Type()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			got[filepath.ToSlash(rel)] = "-> " + target
			return err
		}
		data, err := os.ReadFile(p)
		got[filepath.ToSlash(rel)] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// AssertTree fails unless got holds exactly want. Long contents are cut in
// the message.
func AssertTree(t testing.TB, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("tree = %v, want %v", sortedKeys(got), sortedKeys(want))
	}
	for p, c := range want {
		if g, ok := got[p]; !ok || g != c {
			t.Fatalf("%s = %q, want %q", p, clip(g), clip(c))
		}
	}
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
