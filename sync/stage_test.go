package sync

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"syscall"
	"testing"

	"github.com/ferrysync/ferry/fetch"
)

func opener(s string) fetch.Opener {
	return func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(s)), nil }
}

// publishFiles stages files (path -> content, key = content) and publishes rev.
func publishFiles(t *testing.T, s *Store, name, rev string, files map[string]string) Stats {
	t.Helper()
	prev, err := s.Current(name)
	if err != nil {
		t.Fatal(err)
	}
	st := s.Begin(name, prev)
	defer st.Discard()
	for p, c := range files {
		if err := st.WriteFile(p, 0o644, c, opener(c)); err != nil {
			t.Fatalf("write %s: %v", p, err)
		}
	}
	stats := st.Stats()
	if err := st.Publish(rev); err != nil {
		t.Fatalf("publish %s: %v", rev, err)
	}
	return stats
}

func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.Type()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			out[filepath.ToSlash(rel)] = "-> " + target
			return nil
		}
		data, err := os.ReadFile(p)
		out[filepath.ToSlash(rel)] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func newStore(t *testing.T, limits fetch.Limits) *Store {
	t.Helper()
	s, err := OpenStore(t.TempDir(), limits)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestPublishCreatesRelativeLinkToCompleteTree(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	files := map[string]string{"app.yaml": "a: 1\n", "conf.d/x.conf": "x\n", "conf.d/deep/y": "y"}
	publishFiles(t, s, "config", "rev1", files)

	target, err := os.Readlink(filepath.Join(s.Root(), "config"))
	if err != nil {
		t.Fatal(err)
	}
	if target != ".ferry/config/rev1" {
		t.Fatalf("link target = %q, want relative .ferry/config/rev1", target)
	}
	got := readTree(t, filepath.Join(s.Root(), "config"))
	if len(got) != len(files) {
		t.Fatalf("tree = %v, want %v", got, files)
	}
	for p, c := range files {
		if got[p] != c {
			t.Errorf("%s = %q, want %q", p, got[p], c)
		}
	}
	if rev, _ := s.Current("config"); rev != "rev1" {
		t.Fatalf("Current = %q", rev)
	}
}

func TestPublishReusesUnchangedFilesByHardLink(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	publishFiles(t, s, "c", "r1", map[string]string{"same": strings.Repeat("s", 1000), "changed": "old"})
	stats := publishFiles(t, s, "c", "r2", map[string]string{"same": strings.Repeat("s", 1000), "changed": "new!"})

	if stats.Reused != 1 || stats.BytesWritten != 4 {
		t.Fatalf("stats = %+v, want 1 reused file and 4 bytes written", stats)
	}
	a, _ := os.Stat(filepath.Join(s.Root(), ".ferry/c/r1/same"))
	b, _ := os.Stat(filepath.Join(s.Root(), ".ferry/c/r2/same"))
	if !os.SameFile(a, b) {
		t.Fatal("unchanged file was not hard-linked from the previous revision")
	}
	if got := readTree(t, filepath.Join(s.Root(), "c"))["changed"]; got != "new!" {
		t.Fatalf("changed = %q", got)
	}
}

func TestPublishNormalizesModes(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	st := s.Begin("c", "")
	defer st.Discard()
	st.WriteFile("run.sh", 0o4750, "", opener("#!/bin/sh\n"))
	st.WriteFile("secret", 0o600, "", opener("x"))
	if err := st.Publish("r1"); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]fs.FileMode{"run.sh": 0o555, "secret": 0o444} {
		fi, err := os.Stat(filepath.Join(s.Root(), "c", name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s mode = %v, want %v (read-only, no setuid, readable by the app)", name, fi.Mode(), want)
		}
	}
}

func TestStageRefusesEscapesAndLimits(t *testing.T) {
	limits := fetch.Limits{MaxFiles: 3, MaxFileSize: 100, MaxBytes: 150}
	cases := []struct {
		name  string
		stage func(st *Stage) error
		want  string
	}{
		{"dotdot path", func(st *Stage) error { return st.WriteFile("../x", 0o644, "", opener("x")) }, `"../x": path leaves the revision`},
		{"nested dotdot", func(st *Stage) error { return st.WriteFile("a/../../x", 0o644, "", opener("x")) }, "leaves the revision"},
		{"absolute path", func(st *Stage) error { return st.WriteFile("/etc/passwd", 0o644, "", opener("x")) }, `"/etc/passwd": absolute path`},
		{"symlink to /etc", func(st *Stage) error { return st.Symlink("etc", "/etc") }, `"etc": symlink to absolute path "/etc"`},
		{"symlink up", func(st *Stage) error { return st.Symlink("a/up", "../..") }, `"a/up": symlink to "../.." leaves the revision`},
		{"write through symlink", func(st *Stage) error {
			if err := st.Symlink("dir", "real"); err != nil {
				return err
			}
			return st.WriteFile("dir/x", 0o644, "", opener("x"))
		}, `"dir/x": parent "dir" is a symlink`},
		{"duplicate", func(st *Stage) error {
			st.WriteFile("a", 0o644, "", opener("x"))
			return st.WriteFile("./a", 0o644, "", opener("y"))
		}, `"./a": duplicate entry`},
		{"oversized file", func(st *Stage) error { return st.WriteFile("big", 0o644, "", opener(strings.Repeat("x", 101))) }, `"big": file exceeds 100 bytes`},
		{"too many bytes", func(st *Stage) error {
			st.WriteFile("a", 0o644, "", opener(strings.Repeat("x", 80)))
			return st.WriteFile("b", 0o644, "", opener(strings.Repeat("x", 80)))
		}, `"b": revision exceeds`},
		{"too many files", func(st *Stage) error {
			for _, n := range []string{"a", "b", "c"} {
				st.WriteFile(n, 0o644, "", opener("x"))
			}
			return st.WriteFile("d", 0o644, "", opener("x"))
		}, `"d": revision has more than 3 files`},
		{"dangling link climbing through a link", func(st *Stage) error {
			// By name x stays inside; on disk y is the root, so y/.. is out,
			// and the missing final component must not excuse it.
			st.Symlink("a/b/y", "../..")
			if err := st.Symlink("x", "a/b/y/a/b/y/../../../../outside-secret"); err != nil {
				return err
			}
			return st.Publish("r2")
		}, `"x": symlink to "a/b/y/a/b/y/../../../../outside-secret" resolves outside the revision`},
		{"file over a directory", func(st *Stage) error {
			st.WriteFile("a/b", 0o644, "", opener("x"))
			return st.WriteFile("a", 0o644, "", opener("y"))
		}, `"a": is both a directory and a file`},
		{"symlink chain out", func(st *Stage) error {
			// Each link looks inside by name; together they reach the parent.
			st.Symlink("self", ".")
			if err := st.Symlink("out", "self/.."); err != nil {
				return err
			}
			return st.Publish("r2")
		}, `"out": symlink to "self/.." resolves outside the revision`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, limits)
			publishFiles(t, s, "c", "r1", map[string]string{"good": "kept"})
			st := s.Begin("c", "r1")
			err := tc.stage(st)
			st.Discard()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if !fetch.IsPermanent(err) {
				t.Errorf("err %v is not permanent: retrying cannot fix it", err)
			}
			if got := readTree(t, filepath.Join(s.Root(), "c")); got["good"] != "kept" || len(got) != 1 {
				t.Fatalf("published tree changed: %v", got)
			}
			if leftovers, _ := filepath.Glob(filepath.Join(s.Root(), ".ferry/c/.stage-*")); len(leftovers) > 0 {
				t.Fatalf("staging left behind: %v", leftovers)
			}
		})
	}
}

func TestOpenStoreRemovesLeftoversAndKeepsRevisions(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	publishFiles(t, s, "c", "r1", map[string]string{"f": "1"})
	// What a killed process leaves: a half-written stage, a temp link and
	// a half-written manifest.
	st := s.Begin("c", "r1")
	st.WriteFile("partial", 0o644, "", opener("half"))
	os.Symlink(".ferry/c/r1", filepath.Join(s.Root(), ".ferry/c/.link-dead"))
	os.WriteFile(filepath.Join(s.Root(), ".ferry/c/.meta/.tmp-dead"), nil, 0o644)

	s.Close()
	s2, err := OpenStore(s.Root(), fetch.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for _, pattern := range []string{".ferry/c/.stage-*", ".ferry/c/.link-*", ".ferry/c/.meta/.tmp-*"} {
		if m, _ := filepath.Glob(filepath.Join(s.Root(), pattern)); len(m) > 0 {
			t.Errorf("leftover %v not removed", m)
		}
	}
	if got := readTree(t, filepath.Join(s.Root(), "c")); got["f"] != "1" {
		t.Fatalf("published revision damaged: %v", got)
	}
}

func TestGCKeepsNewestAndNeverTheCurrent(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	for _, rev := range []string{"r1", "r2", "r3", "r4"} {
		publishFiles(t, s, "c", rev, map[string]string{"f": rev})
	}
	// Going back to r1 makes it current (and newest) again.
	publishFiles(t, s, "c", "r1", map[string]string{"f": "r1"})
	if err := s.GC("c", 2); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(s.Root(), ".ferry/c"))
	var revs []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			revs = append(revs, e.Name())
		}
	}
	if strings.Join(revs, ",") != "r1,r4" {
		t.Fatalf("revisions after GC = %v, want r1 (current) and r4 (newest other)", revs)
	}
	if m, _ := filepath.Glob(filepath.Join(s.Root(), ".ferry/c/.meta/*")); len(m) != 2 {
		t.Fatalf("manifests after GC = %v, want 2", m)
	}
	if got := readTree(t, filepath.Join(s.Root(), "c")); got["f"] != "r1" {
		t.Fatalf("current tree = %v", got)
	}
}

func TestSwapRefusesToReplaceARealDirectory(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	os.Mkdir(filepath.Join(s.Root(), "c"), 0o755)
	st := s.Begin("c", "")
	defer st.Discard()
	st.WriteFile("f", 0o644, "", opener("x"))
	err := st.Publish("r1")
	if err == nil || !strings.Contains(err.Error(), "is not a symlink") {
		t.Fatalf("err = %v, want a refusal to replace the directory", err)
	}
}

func TestStageReportsDiskErrors(t *testing.T) {
	// A source whose reader fails mid-file: the error names the entry and
	// nothing is published.
	s := newStore(t, fetch.Limits{})
	st := s.Begin("c", "")
	defer st.Discard()
	boom := errors.New("connection reset")
	err := st.WriteFile("conf/app.yaml", 0o644, "", func() (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(strings.NewReader("partial"), errReader{boom})), nil
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "conf/app.yaml") {
		t.Fatalf("err = %v, want connection reset naming the entry", err)
	}
	if _, err := os.Lstat(filepath.Join(s.Root(), "c")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("link exists after a failed stage: %v", err)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// An I/O error while staging (here ENOSPC) names the entry and the cause,
// and stays retryable: a full disk may clear up.
func TestStageIOErrorsAreNamedAndRetryable(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	st := s.Begin("c", "")
	defer st.Discard()
	err := st.WriteFile("big.bin", 0o644, "", func() (io.ReadCloser, error) {
		return io.NopCloser(errReader{syscall.ENOSPC}), nil
	})
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), `stage big.bin: no space left on device`) {
		t.Fatalf("err = %v", err)
	}
	if fetch.IsPermanent(err) {
		t.Fatal("a full disk may clear up: it must be retried, not permanent")
	}
}

func TestParallelWritersCannotOvershootMaxBytesOnDisk(t *testing.T) {
	const limit = 1 << 20
	s := newStore(t, fetch.Limits{MaxBytes: limit})
	st := s.Begin("c", "")
	defer st.Discard()
	var wg gosync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st.WriteFile(fmt.Sprintf("f%d", i), 0o644, "", opener(strings.Repeat("x", 600<<10)))
		}()
	}
	wg.Wait()
	var onDisk int64
	filepath.WalkDir(st.Dir(), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			fi, _ := d.Info()
			onDisk += fi.Size()
		}
		return nil
	})
	if onDisk > limit {
		t.Fatalf("%d bytes on disk with --max-bytes %d", onDisk, limit)
	}
}

func TestTreeIsReadableWhateverTheUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	s := newStore(t, fetch.Limits{})
	publishFiles(t, s, "c", "r1", map[string]string{"d/e/f": "x"})
	for _, p := range []string{".ferry", ".ferry/c", ".ferry/c/r1", ".ferry/c/r1/d", ".ferry/c/r1/d/e"} {
		fi, err := os.Stat(filepath.Join(s.Root(), p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o755 {
			t.Errorf("%s mode %v under umask 077: an app running as another user cannot read it", p, fi.Mode().Perm())
		}
	}
}

// TestStampsTakenAtWriteMatchTheDisk: the stamp a file gets as it is
// written, small (in the background) or large (as it is read), and with
// its mode narrowed by the umask or not, is the one lstat reads once it is
// published, so the next publish reuses each file on one lstat, reading
// none.
func TestStampsTakenAtWriteMatchTheDisk(t *testing.T) {
	large := strings.Repeat("L", smallFile+1)
	for _, umask := range []int{0o022, 0o277} {
		t.Run(fmt.Sprintf("umask %03o", umask), func(t *testing.T) {
			old := syscall.Umask(umask)
			defer syscall.Umask(old)
			s := newStore(t, fetch.Limits{})
			files := map[string]string{"small": "s", "d/small": "ss", "large": large}
			publishKeyed(t, s, "r1", "", files)
			m, err := s.readManifest("c", "r1")
			if err != nil {
				t.Fatal(err)
			}
			for rel, e := range m.Files {
				fi, err := os.Lstat(filepath.Join(s.Root(), ".ferry/c/r1", rel))
				if err != nil {
					t.Fatal(err)
				}
				if e.Ino == 0 || !e.unchangedSince(fi) {
					t.Errorf("%s: manifest has %+v, lstat mode %v", rel, e, fi.Mode())
				}
				if fi.Mode().Perm()&0o444 != 0o444 {
					t.Errorf("%s: mode %v, not readable by another user", rel, fi.Mode().Perm())
				}
			}
			if stats := publishKeyed(t, s, "r2", "r1", files); stats.Reused != len(files) || stats.Reread != 0 {
				t.Errorf("next publish: %+v, want all %d files reused on their stamps", stats, len(files))
			}
		})
	}
}

func TestGCLeavesNoPartialTreeUnderARevisionName(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	for _, rev := range []string{"r1", "r2", "r3"} {
		publishFiles(t, s, "c", rev, map[string]string{"a": rev, "b": rev})
	}
	// What an interrupted GC leaves: the doomed tree, under a stage name.
	leftover := filepath.Join(s.Root(), ".ferry/c/.stage-gc-dead")
	os.MkdirAll(filepath.Join(leftover, "half"), 0o755)
	if err := s.GC("c", 1); err != nil {
		t.Fatal(err)
	}
	for _, rev := range []string{"r1", "r2"} {
		if _, err := os.Stat(filepath.Join(s.Root(), ".ferry/c", rev)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s still present after GC: %v", rev, err)
		}
	}
	s.Close()
	s, err := OpenStore(s.Root(), fetch.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(leftover); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("an interrupted GC's leftovers survived a restart")
	}
	// Publishing r1 again must write it afresh, complete.
	publishFiles(t, s, "c", "r1", map[string]string{"a": "r1", "b": "r1"})
	if got := readTree(t, filepath.Join(s.Root(), "c")); got["a"] != "r1" || got["b"] != "r1" {
		t.Fatalf("republished r1 = %v", got)
	}
}

// sizedBody is a body that announces a size, true or not (fetch.Sized).
type sizedBody struct {
	io.Reader
	size int64
}

func (b sizedBody) Size() int64  { return b.size }
func (b sizedBody) Close() error { return nil }

// TestAnnouncedSizeIsOnlyAHint: a body that tells its size is published
// whole whether the size is true, too small or too large, around the sizes
// where the Stage changes buffers.
func TestAnnouncedSizeIsOnlyAHint(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	st := s.Begin("c", "")
	defer st.Discard()
	want := map[string]string{}
	for _, c := range bufferClasses {
		for _, n := range []int{c - 1, c, c + 1} {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(i*7 + n)
			}
			for _, announced := range []int64{int64(n), int64(n) / 2, 2*int64(n) + 1} {
				name := fmt.Sprintf("f%d-%d", n, announced)
				want[name] = string(b)
				open := func() (io.ReadCloser, error) { return sizedBody{bytes.NewReader(b), announced}, nil }
				if err := st.WriteFile(name, 0o644, "", open); err != nil {
					t.Fatalf("write %s: %v", name, err)
				}
			}
		}
	}
	if err := st.Publish("r1"); err != nil {
		t.Fatal(err)
	}
	got := readTree(t, filepath.Join(s.Root(), "c"))
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: %d bytes published, want %d as written", name, len(got[name]), len(w))
		}
	}
}

// TestPublishKeepsEveryByteAcrossBufferSizes: files around the sizes where
// the Stage changes buffers (async.go) and writes in place arrive whole.
func TestPublishKeepsEveryByteAcrossBufferSizes(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	files := map[string]string{}
	sizes := []int{0, 1, 3*smallFile + 7}
	for _, c := range bufferClasses {
		sizes = append(sizes, c-2, c-1, c, c+1)
	}
	for _, n := range sizes {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + n)
		}
		files[fmt.Sprintf("f%d", n)] = string(b)
	}
	publishFiles(t, s, "c", "r1", files)
	got := readTree(t, filepath.Join(s.Root(), "c"))
	for name, want := range files {
		if got[name] != want {
			t.Errorf("%s: %d bytes published, want %d as written", name, len(got[name]), len(want))
		}
	}
}

// TestReusedFilesObeyMaxFileSize: a file reused from the previous
// revision (stage.go WriteFile -> reuse -> link) is counted against
// --max-bytes (link's addBytes) but never against --max-file-size: its
// opener, where sources and copyTo/readSmall check the size, is not
// called. After the limit is lowered (a restart with a smaller
// --max-file-size, a per-source limit in the config file), an unchanged
// file over it is still published, in a revision a fresh fetch would
// refuse.
func TestReusedFilesObeyMaxFileSize(t *testing.T) {
	root := t.TempDir()
	s, err := OpenStore(root, fetch.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 4096)
	publishKeyed(t, s, "r1", "", map[string]string{"big": big})
	s.Close()

	s, err = OpenStore(root, fetch.Limits{MaxFileSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st := s.Begin("c", "r1")
	defer st.Discard()
	err = st.WriteFile("big", 0o644, "k:"+big, opener(big))
	if err == nil {
		err = st.Publish("r2")
	}
	if err == nil {
		t.Fatalf("a %d-byte file was published under --max-file-size 1024 (reused: %d)", len(big), st.Stats().Reused)
	}
}

// TestStageNeverWritesThroughAPlantedSymlink: the staging directory sits
// in ROOT/.ferry/NAME for the whole fetch, and the names of the
// directories a source will create are the origin's: another writer of
// the volume can plant a symlink for one before ferry makes it, or swap
// one ferry made for a symlink. Nothing is then written, linked or
// chmod'ed through it, and nothing is published: with openat2 and with
// the walk that replaces it where the kernel has none.
func TestStageNeverWritesThroughAPlantedSymlink(t *testing.T) {
	plant := map[string]func(t *testing.T, stage, outside string){
		"before ferry makes the directory": func(t *testing.T, stage, outside string) {
			if err := os.Symlink(outside, filepath.Join(stage, "conf.d")); err != nil {
				t.Fatal(err)
			}
		},
		"in place of a directory ferry made": func(t *testing.T, stage, outside string) {
			if err := os.MkdirAll(filepath.Join(stage, "conf.d"), 0o755); err != nil {
				t.Fatal(err)
			}
			os.Rename(filepath.Join(stage, "conf.d"), filepath.Join(stage, "moved"))
			if err := os.Symlink(outside, filepath.Join(stage, "conf.d")); err != nil {
				t.Fatal(err)
			}
		},
	}
	files := map[string]string{"small": "b: 2\n", "large": strings.Repeat("L", smallFile+1)}
	for _, walk := range []bool{false, true} {
		for when, plant := range plant {
			for size, content := range files {
				t.Run(fmt.Sprintf("walk=%v/%s/%s", walk, when, size), func(t *testing.T) {
					defer noOpenat2.Store(noOpenat2.Load())
					noOpenat2.Store(walk)
					outside := t.TempDir()
					s := newStore(t, fetch.Limits{})
					st := s.Begin("c", "")
					defer st.Discard()
					mustWrite := func(name string) {
						if err := st.WriteFile(name, 0o644, "", opener("x")); err != nil {
							t.Fatal(err)
						}
					}
					mustWrite("a.yaml")
					if when == "in place of a directory ferry made" {
						mustWrite("conf.d/first.yaml")
						st.Stats() // its background write is done
					}
					plant(t, st.Dir(), outside)
					// A source stops at its first failed write; a small
					// file's fails at the publish.
					err := st.WriteFile("conf.d/b.yaml", 0o644, "", opener(content))
					if err == nil {
						err = st.Publish("r1")
					}
					if entries, _ := os.ReadDir(outside); len(entries) != 0 {
						t.Errorf("ferry wrote %v outside ROOT, through the planted symlink (%v)", entries, err)
					}
					if !errors.Is(err, errInTheWay) {
						t.Errorf("error %v, want the entry in the way named", err)
					}
					if _, err := os.Lstat(filepath.Join(s.Root(), ".ferry/c/r1")); err == nil {
						t.Error("published with a planted symlink in the way")
					}
				})
			}
		}
	}
}
