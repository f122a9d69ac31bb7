package sync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/testkit"
)

// publishKeyed publishes files with each content as its key, the way a
// source with content keys (git blobs, S3 ETags) does, so that unchanged
// files are candidates for reuse.
func publishKeyed(t *testing.T, s *Store, rev, prev string, files map[string]string) Stats {
	t.Helper()
	st := s.Begin("c", prev)
	defer st.Discard()
	for p, c := range files {
		if err := st.WriteFile(p, 0o644, "k:"+c, opener(c)); err != nil {
			t.Fatal(err)
		}
	}
	stats := st.Stats()
	if err := st.Publish(rev); err != nil {
		t.Fatal(err)
	}
	return stats
}

// TestReuseNeverCarriesDamage: a published file changed on disk (edited in
// place, replaced, turned into a symlink, made writable, deleted) is not
// hard-linked into the next revision, even across a restart: the next
// revision holds the origin's bytes, as a read-only regular file.
func TestReuseNeverCarriesDamage(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "hostname")
	os.WriteFile(outside, []byte("not config\n"), 0o644)
	for _, tc := range []struct {
		name   string
		tamper func(p string)
	}{
		{"edited in place", func(p string) { os.WriteFile(p, []byte("tampered"), 0o644) }},
		{"edited in place, same size, mtime restored", func(p string) {
			fi, _ := os.Stat(p)
			os.WriteFile(p, []byte("B-conf"), 0o644)
			os.Chtimes(p, fi.ModTime(), fi.ModTime())
		}},
		{"replaced like sed -i", func(p string) {
			os.WriteFile(p+".tmp", []byte("sed was here"), 0o444)
			os.Rename(p+".tmp", p)
		}},
		{"replaced by a symlink", func(p string) { os.Remove(p); os.Symlink(outside, p) }},
		{"made writable", func(p string) { os.Chmod(p, 0o666) }},
		{"deleted", func(p string) { os.Remove(p) }},
	} {
		for _, restart := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/restart=%t", tc.name, restart), func(t *testing.T) {
				root := t.TempDir()
				s, err := OpenStore(root, fetch.Limits{})
				if err != nil {
					t.Fatal(err)
				}
				defer func() { s.Close() }()
				v1 := map[string]string{"a.conf": "a1", "b.conf": "b-conf"}
				publishKeyed(t, s, "r1", "", v1)
				tc.tamper(filepath.Join(root, "c", "b.conf"))
				if restart {
					s.Close()
					if s, err = OpenStore(root, fetch.Limits{}); err != nil {
						t.Fatal(err)
					}
				}
				var logs bytes.Buffer
				st := s.begin("c", "r1", slog.New(slog.NewTextHandler(&logs, nil)))
				for p, c := range map[string]string{"a.conf": "a2", "b.conf": "b-conf"} {
					if err := st.WriteFile(p, 0o644, "k:"+c, opener(c)); err != nil {
						t.Fatal(err)
					}
				}
				stats := st.Stats()
				if err := st.Publish("r2"); err != nil {
					t.Fatal(err)
				}
				if stats.Damaged != 1 || stats.Reused != 0 {
					t.Errorf("stats %+v, want 1 damaged file and none reused", stats)
				}
				p := filepath.Join(root, "c", "b.conf")
				fi, err := os.Lstat(p)
				if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != filePerm {
					t.Fatalf("b.conf in r2: %v, %v; want a regular 0444 file", fi, err)
				}
				if data, _ := os.ReadFile(p); string(data) != "b-conf" {
					t.Fatalf("b.conf in r2 = %q, want the origin's bytes", data)
				}
				if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "b.conf") {
					t.Errorf("no warning naming the file:\n%s", logs.String())
				}
			})
		}
	}
}

// TestUntouchedFilesAreStillReused: the checks do not cost the O(changed)
// publish: an intact previous file is linked, not written.
func TestUntouchedFilesAreStillReused(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	publishKeyed(t, s, "r1", "", map[string]string{"a": "1", "b": "2"})
	stats := publishKeyed(t, s, "r2", "r1", map[string]string{"a": "1", "b": "3"})
	if stats.Reused != 1 || stats.BytesWritten != 1 || stats.Damaged != 0 {
		t.Fatalf("stats %+v, want a reused and one byte written", stats)
	}
	a1, _ := os.Stat(filepath.Join(s.Root(), ".ferry/c/r1/a"))
	a2, _ := os.Stat(filepath.Join(s.Root(), ".ferry/c/r2/a"))
	if !os.SameFile(a1, a2) {
		t.Fatal("an intact file was copied, not hard-linked")
	}
}

// TestIntactFilesAreReusedByTheirInodeAlone: once a revision is sealed,
// reusing its untouched files reads none of them; a file whose inode
// changed without its content changing (a chmod undone) is read and
// hashed, then reused, with no warning.
func TestIntactFilesAreReusedByTheirInodeAlone(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	files := map[string]string{"a": "1", "b": "2", "c": "3"}
	publishKeyed(t, s, "r1", "", files)
	if err := s.Seal("c", "r1"); err != nil {
		t.Fatal(err)
	}
	stats := publishKeyed(t, s, "r2", "r1", files)
	if stats.Reused != 3 || stats.Reread != 0 {
		t.Fatalf("stats %+v, want 3 reused by inode, none read", stats)
	}
	if err := s.Seal("c", "r2"); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(s.Root(), ".ferry/c/r2/b")
	os.Chmod(p, 0o644)
	os.Chmod(p, 0o444)
	stats = publishKeyed(t, s, "r3", "r2", files)
	if stats.Reused != 3 || stats.Reread != 1 || stats.Damaged != 0 {
		t.Fatalf("stats %+v, want 3 reused, 1 read first, none damaged", stats)
	}
}

// TestPublishReplacesADamagedTreeOfTheSameRevision: going back to a kept
// revision, or repairing the current one, never trusts the tree already on
// disk under that name.
func TestPublishReplacesADamagedTreeOfTheSameRevision(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	publishKeyed(t, s, "r1", "", map[string]string{"a": "1"})
	publishKeyed(t, s, "r2", "r1", map[string]string{"a": "2"})
	os.WriteFile(filepath.Join(s.Root(), ".ferry/c/r1/a"), []byte("tampered"), 0o644)
	os.WriteFile(filepath.Join(s.Root(), ".ferry/c/r1/extra"), []byte("x"), 0o644)
	publishKeyed(t, s, "r1", "r2", map[string]string{"a": "1"})
	if got := readTree(t, filepath.Join(s.Root(), "c")); len(got) != 1 || got["a"] != "1" {
		t.Fatalf("revert to r1 published %v", got)
	}
	// The current one, in place: readers of ROOT/c never find it missing.
	os.WriteFile(filepath.Join(s.Root(), "c", "a"), []byte("tampered"), 0o644)
	publishKeyed(t, s, "r1", "", map[string]string{"a": "1"})
	if got := readTree(t, filepath.Join(s.Root(), "c")); got["a"] != "1" {
		t.Fatalf("repaired r1 = %v", got)
	}
	if err := s.Verify(context.Background(), "c", "r1"); err != nil {
		t.Fatalf("repaired tree does not verify: %v", err)
	}
}

// TestCheckAndVerifyFindDamage: the cheap check sees a missing or replaced
// link and a missing tree; the deep one, any change inside the tree.
func TestCheckAndVerifyFindDamage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(root string)
		cheap  bool // found by Check, not only by Verify
	}{
		{"link deleted", func(r string) { os.Remove(filepath.Join(r, "c")) }, true},
		{"link replaced by a directory", func(r string) { os.Remove(filepath.Join(r, "c")); os.Mkdir(filepath.Join(r, "c"), 0o755) }, true},
		{"link pointed elsewhere", func(r string) { os.Remove(filepath.Join(r, "c")); os.Symlink("/etc", filepath.Join(r, "c")) }, true},
		{"tree deleted", func(r string) { os.RemoveAll(filepath.Join(r, ".ferry/c/r1")) }, true},
		{"tree replaced by a symlink", func(r string) {
			os.RemoveAll(filepath.Join(r, ".ferry/c/r1"))
			os.Symlink(r, filepath.Join(r, ".ferry/c/r1"))
		}, true},
		{"file edited", func(r string) { os.WriteFile(filepath.Join(r, "c/d/f"), []byte("F"), 0o444) }, false},
		{"file added", func(r string) { os.WriteFile(filepath.Join(r, "c/new"), []byte("x"), 0o444) }, false},
		{"file removed", func(r string) { os.Remove(filepath.Join(r, "c/d/f")) }, false},
		{"directory added", func(r string) { os.Mkdir(filepath.Join(r, "c/e"), 0o755) }, false},
		{"symlink retargeted", func(r string) { os.Remove(filepath.Join(r, "c/l")); os.Symlink("d", filepath.Join(r, "c/l")) }, false},
		{"file made executable", func(r string) { os.Chmod(filepath.Join(r, "c/d/f"), 0o555) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, fetch.Limits{})
			st := s.Begin("c", "")
			st.WriteFile("d/f", 0o644, "", opener("f"))
			st.Symlink("l", "d/f")
			if err := st.Publish("r1"); err != nil {
				t.Fatal(err)
			}
			if err := s.Check("c", "r1"); err != nil {
				t.Fatalf("intact tree fails the cheap check: %v", err)
			}
			if err := s.Verify(context.Background(), "c", "r1"); err != nil {
				t.Fatalf("intact tree fails the deep check: %v", err)
			}
			tc.tamper(s.Root())
			err := s.Check("c", "r1")
			if tc.cheap != (err != nil) {
				t.Fatalf("Check = %v, want an error: %t", err, tc.cheap)
			}
			if err == nil {
				if err := s.Verify(context.Background(), "c", "r1"); err == nil {
					t.Fatal("Verify found nothing")
				} else {
					t.Log(err)
				}
			}
		})
	}
}

// TestGCAndCleanNeverFollowASymlink: symlinks planted where ferry removes
// things (an old revision's name, a leftover staging name) are removed as
// links at most; the directory outside ROOT they point at is untouched.
func TestGCAndCleanNeverFollowASymlink(t *testing.T) {
	victim := t.TempDir()
	os.WriteFile(filepath.Join(victim, "precious"), []byte("keep me"), 0o644)
	s := newStore(t, fetch.Limits{})
	for _, rev := range []string{"r1", "r2", "r3"} {
		publishKeyed(t, s, rev, "", map[string]string{"f": rev})
	}
	os.Symlink(victim, filepath.Join(s.Root(), ".ferry/c/r0"))
	os.Symlink(victim, filepath.Join(s.Root(), ".ferry/c/.stage-planted"))
	if err := s.GC("c", 1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := OpenStore(s.Root(), fetch.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if data, err := os.ReadFile(filepath.Join(victim, "precious")); err != nil || string(data) != "keep me" {
		t.Fatalf("a directory outside ROOT was touched: %q, %v", data, err)
	}
	if _, err := os.Lstat(filepath.Join(s.Root(), ".ferry/c/.stage-planted")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the planted staging link was not removed: %v", err)
	}
}

// TestSymlinkedStateDirectoriesAreRefusedAtStart: ROOT/.ferry and
// ROOT/.ferry/NAME must be real directories; a symlink there is refused
// with a message that says so, and its target is left alone.
func TestSymlinkedStateDirectoriesAreRefusedAtStart(t *testing.T) {
	victim := t.TempDir()
	os.WriteFile(filepath.Join(victim, "precious"), []byte("keep me"), 0o644)
	os.Mkdir(filepath.Join(victim, ".stage-old"), 0o755)
	t.Run(".ferry", func(t *testing.T) {
		root := t.TempDir()
		os.Symlink(victim, filepath.Join(root, ".ferry"))
		_, err := OpenStore(root, fetch.Limits{})
		if err == nil || !strings.Contains(err.Error(), "is a symlink") {
			t.Fatalf("err = %v, want a refusal naming the symlink", err)
		}
	})
	t.Run(".ferry is a file", func(t *testing.T) {
		root := t.TempDir()
		os.WriteFile(filepath.Join(root, ".ferry"), nil, 0o644)
		_, err := OpenStore(root, fetch.Limits{})
		if err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Fatalf("err = %v, want a refusal", err)
		}
	})
	for _, sub := range []string{"", "/.state", "/.meta"} {
		t.Run(".ferry/c"+sub, func(t *testing.T) {
			s := newStore(t, fetch.Limits{})
			if sub != "" {
				os.MkdirAll(filepath.Join(s.Root(), ".ferry/c"), 0o755)
			}
			os.Symlink(victim, filepath.Join(s.Root(), ".ferry/c"+sub))
			err := s.Prepare([]string{"c"}, nil)
			if err == nil || !strings.Contains(err.Error(), ".ferry/c"+sub) {
				t.Fatalf("err = %v, want a refusal naming .ferry/c%s", err, sub)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(victim, ".stage-old")); err != nil {
		t.Fatalf("the victim directory lost an entry: %v", err)
	}
	if data, err := os.ReadFile(filepath.Join(victim, "precious")); err != nil || string(data) != "keep me" {
		t.Fatalf("victim touched: %q %v", data, err)
	}
}

// TestOneStorePerRoot: a second ferry on the same root would remove the
// first one's staging and race its links: it is refused, with the holder.
func TestOneStorePerRoot(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	_, err := OpenStore(s.Root(), fetch.Limits{})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), filepath.Join(s.Root(), ".ferry/lock")) ||
		!strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("err = %v, want ErrLocked naming the lock file and this pid", err)
	}
	s.Close()
	s2, err := OpenStore(s.Root(), fetch.Limits{})
	if err != nil {
		t.Fatalf("after Close the root is free: %v", err)
	}
	s2.Close()
}

// TestPrepareRemovesOnlyWhatRemovedSourcesLeft: the link and revisions of
// a source no longer configured go, with one line each; the others' and
// everything else in ROOT stay.
func TestPrepareRemovesOnlyWhatRemovedSourcesLeft(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	// "exch" was published in exchange mode: ROOT/exch is a directory.
	if err := s.SetPublishMode("exch", PublishExchange); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"keep", "gone", "exch"} {
		st := s.Begin(name, "")
		st.WriteFile("f", 0o644, "", opener(name))
		if err := st.Publish("r1"); err != nil {
			t.Fatal(err)
		}
	}
	root := s.Root()
	os.WriteFile(filepath.Join(root, "app.log"), []byte("mine"), 0o644)
	os.Mkdir(filepath.Join(root, "data"), 0o755)
	os.Symlink("/etc", filepath.Join(root, "etc"))
	os.Symlink(".ferry/gone/r1", filepath.Join(root, "alias"))
	var logs bytes.Buffer
	if err := s.Prepare([]string{"keep"}, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"gone", "alias", ".ferry/gone", "exch", ".ferry/exch"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s not removed: %v", p, err)
		}
	}
	for _, p := range []string{"keep", ".ferry/keep/r1", "app.log", "data", "etc", ".ferry/lock"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
	if n := strings.Count(logs.String(), "level=INFO"); n != 5 {
		t.Errorf("%d INFO lines, want one per removed link or directory and one per source's revisions:\n%s", n, logs.String())
	}
}

// TestPrepareMakesSourceDirectoriesTraversable: a source directory made
// 0700 (by an older ferry's HTTP source, or by hand) is opened up, so an
// app running as another user can reach the revisions.
func TestPrepareMakesSourceDirectoriesTraversable(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	os.Mkdir(filepath.Join(s.Root(), ".ferry/c"), 0o700)
	if err := s.Prepare([]string{"c"}, nil); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(s.Root(), ".ferry/c")); fi.Mode().Perm() != dirPerm {
		t.Fatalf(".ferry/c mode %v, want %v", fi.Mode().Perm(), fs.FileMode(dirPerm))
	}
}

// TestStageRefusesGitDirectories: a .git entry, in any case, anywhere in
// the tree, fails the revision, naming the entry.
func TestStageRefusesGitDirectories(t *testing.T) {
	for _, name := range []string{".git/config", "sub/.GIT/hooks/post-checkout", ".Git", "a/.git"} {
		s := newStore(t, fetch.Limits{})
		st := s.Begin("c", "")
		err := st.WriteFile(name, 0o644, "", opener("x"))
		if !fetch.IsPermanent(err) || !strings.Contains(err.Error(), ".git") || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err = %v, want a permanent refusal naming it", name, err)
		}
		st.Discard()
	}
	s := newStore(t, fetch.Limits{})
	st := s.Begin("c", "")
	defer st.Discard()
	if err := st.Mkdir("x/.git"); !fetch.IsPermanent(err) {
		t.Errorf("Mkdir x/.git: %v", err)
	}
	if err := st.Symlink(".git", "a"); !fetch.IsPermanent(err) {
		t.Errorf("Symlink .git: %v", err)
	}
	for _, ok := range []string{".gitignore", ".github/workflows/ci.yaml", "git/x", ".git-credentials-example"} {
		if err := st.WriteFile(ok, 0o644, "", opener("x")); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
}

// TestPathTooLongForTheFilesystemIsPermanent: ENAMETOOLONG will be the
// same on every retry.
func TestPathTooLongForTheFilesystemIsPermanent(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	st := s.Begin("c", "")
	defer st.Discard()
	// Within the name rules (each component < 255, the whole < 4096), but
	// with the staging directory in front it is past PATH_MAX.
	name := strings.Repeat(strings.Repeat("d", 200)+"/", 20) + "f"
	err := st.WriteFile(name, 0o644, "", opener("x"))
	if !errors.Is(err, syscall.ENAMETOOLONG) || !fetch.IsPermanent(err) {
		t.Fatalf("err = %v, want a permanent ENAMETOOLONG", err)
	}
}

// TestMkdirPastPathMaxIsRefused: an empty directory whose path once
// published would pass PATH_MAX is refused, permanently, as a file is.
func TestMkdirPastPathMaxIsRefused(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	st := s.Begin("c", "")
	defer st.Discard()
	name := strings.Repeat(strings.Repeat("d", 200)+"/", 20) + "e"
	if err := st.Mkdir(name); !errors.Is(err, syscall.ENAMETOOLONG) || !fetch.IsPermanent(err) {
		t.Fatalf("err = %v, want a permanent ENAMETOOLONG", err)
	}
}

// TestTheLongestPathStagedIsVerifiable: the longest path a stage accepts
// is published and deep-checked by whole paths under the longest revision
// name; one byte more is refused when it is staged.
func TestTheLongestPathStagedIsVerifiable(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	st := s.Begin("c", "")
	defer st.Discard()
	rev := strings.Repeat("a", maxRev)
	left := syscall.PathMax - 1 - (len(filepath.Join(s.Root(), ".ferry", "c", rev)) + 1)
	var b strings.Builder
	for b.Len()+201 < left {
		b.WriteString(strings.Repeat("d", 200) + "/")
	}
	b.WriteString(strings.Repeat("f", left-b.Len()))
	other := s.Begin("c", "") // a refusal ends a stage: the source's fetch fails
	defer other.Discard()
	if err := other.WriteFile(b.String()+"g", 0o644, "", opener("x")); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Fatalf("one byte past the longest path: %v, want ENAMETOOLONG", err)
	}
	if err := st.WriteFile(b.String(), 0o644, "", opener("x")); err != nil {
		t.Fatalf("the longest path: %v", err)
	}
	if err := st.Publish(rev); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(context.Background(), "c", rev); err != nil {
		t.Fatalf("the longest path staged makes its revision unverifiable: %.300s", err)
	}
}

// empty is a source that finds nothing and says nothing wrong: an origin
// answering 304 to a request that carried no validator.
type empty struct{}

func (empty) Fetch(context.Context, string, fetch.Writer) (string, error) { return "", nil }

// TestOnceNeverSucceedsWithoutARevision: success means config is there.
// OnceTimeout leaves room for an attempt on a loaded machine: one that
// ends on the deadline carries no "no revision".
func TestOnceNeverSucceedsWithoutARevision(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	sy, err := New(Config{Store: s, Sources: []Source{{Name: "c", Backend: empty{}}}, OnceTimeout: 2 * time.Second, Period: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	err = sy.Once(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no revision") {
		t.Fatalf("Once = %v, want a failure", err)
	}
	if _, err := os.Lstat(filepath.Join(s.Root(), "c")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a link exists: %v", err)
	}
}

// TestRunRepairsDamageWithinAPeriod: under Run, a deleted link, a deleted
// tree and (with the deep check) a file edited in place are published
// again within a period, and counted; the app is told when the tree was
// put back (what it read may have been wrong), not when only the link was.
func TestRunRepairsDamageWithinAPeriod(t *testing.T) {
	for _, tc := range []struct {
		name     string
		tamper   func(root string)
		linkOnly bool
	}{
		{"link deleted", func(r string) { os.Remove(filepath.Join(r, "c")) }, true},
		{"link moved", func(r string) { os.Remove(filepath.Join(r, "c")); os.Symlink("/etc", filepath.Join(r, "c")) }, true},
		{"tree deleted", func(r string) { os.RemoveAll(filepath.Join(r, ".ferry/c/r1")) }, false},
		{"file edited", func(r string) { os.WriteFile(filepath.Join(r, "c/f"), []byte("tampered"), 0o444) }, false},
		{"file replaced by a symlink", func(r string) {
			os.Remove(filepath.Join(r, "c/f"))
			os.Symlink("/etc/hostname", filepath.Join(r, "c/f"))
		}, false},
		{"tree replaced by a symlink", func(r string) {
			victim := filepath.Join(r, "victim")
			os.MkdirAll(victim, 0o755)
			os.WriteFile(filepath.Join(victim, "f"), []byte("victim"), 0o644)
			os.RemoveAll(filepath.Join(r, ".ferry/c/r1"))
			os.Symlink(victim, filepath.Join(r, ".ferry/c/r1"))
		}, false},
		{"tree replaced by a file", func(r string) {
			os.RemoveAll(filepath.Join(r, ".ferry/c/r1"))
			os.WriteFile(filepath.Join(r, ".ferry/c/r1"), []byte("x"), 0o644)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &origin{}
			o.set("r1", map[string]string{"f": "good", "g": "other"})
			rec := &recorder{}
			period := 100 * time.Millisecond
			h := startSyncer(t, Config{Sources: []Source{{Name: "c", Backend: o}}, Period: period,
				VerifyPeriod: period, Notifiers: []Notifier{rec}})
			testkit.Eventually(t, 10*time.Second, "first publish", func() bool { ok, _ := h.syncer.Ready(); return ok })
			time.Sleep(period) // let the first deep check pass on the intact tree
			root := h.store.Root()
			tree, _ := os.Stat(filepath.Join(root, ".ferry/c/r1"))
			tc.tamper(root)
			start := time.Now()
			testkit.Eventually(t, 10*time.Second, "repair", func() bool {
				data, err := os.ReadFile(filepath.Join(root, "c/f"))
				fi, lerr := os.Lstat(filepath.Join(root, "c/f"))
				return err == nil && string(data) == "good" && lerr == nil && fi.Mode().IsRegular()
			})
			if took := time.Since(start); took > 4*period+time.Second {
				t.Errorf("repaired after %s, want within a couple of periods of %s", took, period)
			}
			testkit.Eventually(t, 10*time.Second, "the repair counted", func() bool {
				return testutil.ToFloat64(h.syncer.metrics.repairs.WithLabelValues("c")) >= 1
			})
			if tc.linkOnly {
				time.Sleep(2 * period)
				if n := rec.got(); len(n) != 0 {
					t.Errorf("a link put back told the app: %v", n)
				}
				if after, _ := os.Stat(filepath.Join(root, ".ferry/c/r1")); !os.SameFile(tree, after) {
					t.Error("the intact tree was replaced: linking again should not fetch it")
				}
			} else {
				testkit.Eventually(t, 10*time.Second, "the app told", func() bool { return len(rec.got()) == 1 })
				if c := rec.got()[0]; c.Revision != "r1" {
					t.Errorf("notified %+v, want r1", c)
				}
			}
			if err := h.store.Verify(context.Background(), "c", "r1"); err != nil {
				t.Errorf("repaired tree does not verify: %v", err)
			}
		})
	}
}

// TestSealTakesWhatGCDidAndNothingElse: after a publish and its GC, the
// stamps follow the ctime the GC moved, once the content is checked (so
// the next publish reads nothing), but an edit that kept the size and put
// the mtime back, made before the seal, is found by the seal, and the next
// publish takes the file from the source.
func TestSealTakesWhatGCDidAndNothingElse(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	files := map[string]string{"a": "aaaa", "b": "bbbb"}
	for i, rev := range []string{"r1", "r2", "r3"} {
		prev := []string{"", "r1", "r2"}[i]
		publishKeyed(t, s, rev, prev, files)
		if err := s.GC("c", 2); err != nil {
			t.Fatal(err)
		}
		if err := s.Seal("c", rev); err != nil {
			t.Fatal(err)
		}
	}
	if stats := publishKeyed(t, s, "r4", "r3", files); stats.Reread != 0 || stats.Reused != 2 {
		t.Fatalf("after GC and seal: %+v, want both reused by inode", stats)
	}
	s.GC("c", 2)
	p := filepath.Join(s.Root(), ".ferry/c/r4/b")
	fi, _ := os.Stat(p)
	os.WriteFile(p, []byte("EVIL"), 0o444)
	os.Chtimes(p, fi.ModTime(), fi.ModTime())
	if err := s.Seal("c", "r4"); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "b: content changed") {
		t.Fatalf("Seal = %v, want the damage named", err)
	}
	stats := publishKeyed(t, s, "r5", "r4", files)
	if stats.Damaged != 1 || stats.Reused != 1 {
		t.Fatalf("after a masked edit: %+v, want b found damaged", stats)
	}
	if data, _ := os.ReadFile(filepath.Join(s.Root(), "c/b")); string(data) != "bbbb" {
		t.Fatalf("r5 holds b = %q", data)
	}
}

// TestGCNeverFollowsASymlinkedMetaDirectory: .meta is refused as a symlink
// at start only (prepare.go). Planted afterwards, GC removes an old
// revision's manifest by path (gc.go: os.Remove(s.manifestPath(...))),
// through the link: a file of the old revision's name is deleted in a
// directory outside ROOT; writeManifest writes there too.
func TestGCNeverFollowsASymlinkedMetaDirectory(t *testing.T) {
	victim := t.TempDir()
	s := newStore(t, fetch.Limits{})
	publishKeyed(t, s, "r1", "", map[string]string{"f": "1"})
	publishKeyed(t, s, "r2", "r1", map[string]string{"f": "2"})
	os.WriteFile(filepath.Join(victim, "r1"), []byte("precious"), 0o644)
	meta := filepath.Join(s.Root(), ".ferry/c/.meta")
	os.Rename(meta, meta+"-moved")
	if err := os.Symlink(victim, meta); err != nil {
		t.Fatal(err)
	}
	s.GC("c", 1)
	if _, err := os.Stat(filepath.Join(victim, "r1")); err != nil {
		t.Errorf("GC removed %s through the planted .meta symlink: %v", filepath.Join(victim, "r1"), err)
	}
	s.Seal("c", "r2")
	st := s.Begin("c", "r2")
	defer st.Discard()
	if err := st.WriteFile("f", 0o644, "k:3", opener("3")); err != nil {
		t.Fatal(err)
	}
	err := st.Publish("r3")
	if _, serr := os.Stat(filepath.Join(victim, "r3")); serr == nil {
		t.Errorf("r3's manifest was written outside ROOT, through the planted .meta symlink")
	}
	if err == nil || !strings.Contains(err.Error(), ".meta is not a directory (a symlink?)") {
		t.Errorf("publish with .meta a symlink: %v, want the cause named", err)
	}
}
