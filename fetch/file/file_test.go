package file_test

import (
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/file"
	"github.com/ferrysync/ferry/internal/sourcetest"
	"github.com/ferrysync/ferry/sync"
)

// dirOrigin is a real directory on disk.
type dirOrigin struct{ dir string }

func (o *dirOrigin) Source(t *testing.T, _ string) fetch.Source {
	u, err := fetch.Parse(o.dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := file.New(u, fetch.Env{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (o *dirOrigin) Set(t *testing.T, files map[string]string) {
	t.Helper()
	os.RemoveAll(o.dir)
	for p, c := range files {
		full := filepath.Join(o.dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (o *dirOrigin) Break(t *testing.T) { os.RemoveAll(o.dir) }

func (o *dirOrigin) SetEscape(t *testing.T) string {
	o.Set(t, map[string]string{"app.yaml": "x"})
	if err := os.Symlink("/etc/passwd", filepath.Join(o.dir, "passwd")); err != nil {
		t.Fatal(err)
	}
	return `"passwd": symlink to absolute path`
}

func TestContract(t *testing.T) {
	sourcetest.Run(t, &dirOrigin{dir: filepath.Join(t.TempDir(), "origin")})
}

func TestNewRejectsBadURLs(t *testing.T) {
	for _, raw := range []string{"file://otherhost/etc", "file:///etc?ref=x"} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := file.New(&fetch.URL{Kind: "file", URL: u}, fetch.Env{}); err == nil {
			t.Errorf("New(%s) succeeded", raw)
		}
	}
}

func TestRevisionFollowsContentNotTimestamps(t *testing.T) {
	o := &dirOrigin{dir: t.TempDir()}
	o.Set(t, map[string]string{"a": "1", "sub/b": "2"})
	s := o.Source(t, "")
	rev1 := fetchRev(t, s)
	// Rewriting the same bytes (new mtime, new ctime) keeps the revision.
	o.Set(t, map[string]string{"a": "1", "sub/b": "2"})
	if rev := fetchRev(t, s); rev != rev1 {
		t.Fatalf("revision changed for identical content: %s -> %s", rev1, rev)
	}
	// Same size, different bytes: a new revision.
	o.Set(t, map[string]string{"a": "9", "sub/b": "2"})
	if rev := fetchRev(t, s); rev == rev1 {
		t.Fatal("revision did not change when a file's content did")
	}
	// The exec bit is part of the revision.
	o.Set(t, map[string]string{"a": "1", "sub/b": "2"})
	os.Chmod(filepath.Join(o.dir, "a"), 0o755)
	if rev := fetchRev(t, s); rev == rev1 {
		t.Fatal("revision did not change with the exec bit")
	}
}

// fetchRev returns the revision the source reports against no previous one.
func fetchRev(t *testing.T, s fetch.Source) string {
	t.Helper()
	w := &discard{}
	rev, err := s.Fetch(t.Context(), "", w)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// discard is a Writer that keeps nothing: revision computation only.
type discard struct{}

func (discard) WriteFile(string, os.FileMode, string, fetch.Opener) error { return nil }
func (discard) Symlink(string, string) error                              { return nil }
func (discard) Mkdir(string) error                                        { return nil }

func TestSpecialFilesAreRefused(t *testing.T) {
	o := &dirOrigin{dir: t.TempDir()}
	o.Set(t, map[string]string{"a": "1"})
	if err := syscall.Mkfifo(filepath.Join(o.dir, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := o.Source(t, "").Fetch(t.Context(), "", discard{})
	if err == nil || !strings.Contains(err.Error(), `"pipe"`) || !fetch.IsPermanent(err) {
		t.Fatalf("err = %v, want a permanent refusal naming pipe", err)
	}
}

// A ConfigMap volume is a tree of relative symlinks into a timestamped
// directory that the kubelet swaps atomically: publishing it must keep the
// links (all resolve inside) and follow the swap.
func TestConfigMapMountIsPublished(t *testing.T) {
	dir := t.TempDir()
	mount := func(ts, content string) {
		os.MkdirAll(filepath.Join(dir, ts), 0o755)
		os.WriteFile(filepath.Join(dir, ts, "app.yaml"), []byte(content), 0o644)
		os.Remove(filepath.Join(dir, "..data_tmp"))
		os.Symlink(ts, filepath.Join(dir, "..data_tmp"))
		os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data"))
		os.Symlink("..data/app.yaml", filepath.Join(dir, "app.yaml"))
	}
	mount("..2026_11_25_10_00_00.1", "v: 1\n")
	root := t.TempDir()
	store, err := sync.OpenStore(root, fetch.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	src := (&dirOrigin{dir: dir}).Source(t, "")
	publish := func() string {
		publishTo(t, store, "cm", src)
		data, err := os.ReadFile(filepath.Join(root, "cm", "app.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	if got := publish(); got != "v: 1\n" {
		t.Fatalf("app.yaml = %q", got)
	}
	mount("..2026_11_25_10_05_00.2", "v: 2\n")
	if got := publish(); got != "v: 2\n" {
		t.Fatalf("after the kubelet's swap app.yaml = %q", got)
	}
}

// A file edited between the scan and the copy is not published under the
// revision named after its old content.
func TestFileChangedDuringCopyFailsTheSync(t *testing.T) {
	o := &dirOrigin{dir: t.TempDir()}
	o.Set(t, map[string]string{"a": "old"})
	s := o.Source(t, "")
	w := &editingWriter{path: filepath.Join(o.dir, "a")}
	_, err := s.Fetch(t.Context(), "", w)
	if err == nil || !strings.Contains(err.Error(), "a changed while it was copied") || fetch.IsPermanent(err) {
		t.Fatalf("err = %v, want a transient error naming a", err)
	}
}

// editingWriter edits the origin file just before copying it.
type editingWriter struct {
	discard
	path string
}

func (w *editingWriter) WriteFile(name string, mode os.FileMode, key string, open fetch.Opener) error {
	os.WriteFile(w.path, []byte("new"), 0o644)
	r, err := open()
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.Copy(io.Discard, r)
	return err
}

// TestRootInsideTheSourceIsRefused: publishing into the directory being
// read would copy every publish into the next revision, forever.
func TestRootInsideTheSourceIsRefused(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(dir, link)
	for _, root := range []string{dir, filepath.Join(dir, "out"), filepath.Join(link, "a", "b")} {
		u := &fetch.URL{Kind: "file", URL: &url.URL{Scheme: "file", Path: dir}}
		_, err := file.New(u, fetch.Env{Root: root})
		if err == nil || !strings.Contains(err.Error(), "inside the source directory") {
			t.Errorf("root %s: err = %v, want a refusal", root, err)
		}
	}
	u := &fetch.URL{Kind: "file", URL: &url.URL{Scheme: "file", Path: filepath.Join(dir, "src")}}
	if _, err := file.New(u, fetch.Env{Root: filepath.Join(dir, "root")}); err != nil {
		t.Errorf("a sibling root is refused: %v", err)
	}
}

// TestASingleFileIsPublishedUnderItsName: a path to one file (here a
// ConfigMap key, a symlink the kubelet swaps) publishes that file under
// its name, as an HTTP object or an S3 key is, and follows its changes;
// it must not publish an empty tree.
func TestASingleFileIsPublishedUnderItsName(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "..v1"), 0o755)
	os.WriteFile(filepath.Join(dir, "..v1", "app.yaml"), []byte("v: 1\n"), 0o644)
	os.Symlink("..v1", filepath.Join(dir, "..data"))
	os.Symlink("..data/app.yaml", filepath.Join(dir, "app.yaml"))
	store, err := sync.OpenStore(t.TempDir(), fetch.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	src := (&dirOrigin{dir: filepath.Join(dir, "app.yaml")}).Source(t, "")
	publish := func() map[string]string {
		publishTo(t, store, "cm", src)
		got := map[string]string{}
		entries, _ := os.ReadDir(store.LinkPath("cm"))
		for _, e := range entries {
			b, _ := os.ReadFile(filepath.Join(store.LinkPath("cm"), e.Name()))
			got[e.Name()] = string(b)
		}
		return got
	}
	if got := publish(); len(got) != 1 || got["app.yaml"] != "v: 1\n" {
		t.Fatalf("published %v, want app.yaml alone", got)
	}
	os.MkdirAll(filepath.Join(dir, "..v2"), 0o755)
	os.WriteFile(filepath.Join(dir, "..v2", "app.yaml"), []byte("v: 2\n"), 0o644)
	os.Symlink("..v2", filepath.Join(dir, "..data_tmp"))
	os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data"))
	if got := publish(); len(got) != 1 || got["app.yaml"] != "v: 2\n" {
		t.Fatalf("after the kubelet's swap: %v", got)
	}
}

// publishTo fetches src and publishes what changed as source name.
func publishTo(t *testing.T, store *sync.Store, name string, src fetch.Source) {
	t.Helper()
	prev, _ := store.Current(name)
	st := store.Begin(name, prev)
	defer st.Discard()
	rev, err := src.Fetch(t.Context(), prev, st)
	if err != nil {
		t.Fatal(err)
	}
	if rev != prev {
		if err := st.Publish(rev); err != nil {
			t.Fatal(err)
		}
	}
}
