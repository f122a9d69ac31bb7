package e2e

// Origins of every source kind whose content changes on demand, one
// generation at a time, atomically, and the generations they serve.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/ferrysync/ferry/internal/gittest"
	"github.com/ferrysync/ferry/internal/testkit"
)

// The tree of generation g: tokenFiles files that all hold the token of g
// (a reader that sees two tokens saw a torn tree), stableFiles files that
// never change (reused by hard link from one revision to the next), and
// app.yaml for the demo app.
const (
	tokenFiles  = 24
	stableFiles = 24
	padBytes    = 2 << 10
)

// generation returns the files of generation g, and extra.
func generation(g int, extra map[string]string) map[string]string {
	pad := strings.Repeat("x", padBytes)
	token := fmt.Sprintf("gen %d\n%s\n", g, pad)
	files := map[string]string{"app.yaml": fmt.Sprintf("greeting: revision %d\n", g)}
	for i := range tokenFiles {
		// Nested at different depths, so a tree renamed half-way would show.
		files[fmt.Sprintf("d%d/token-%02d", i%3, i)] = token
	}
	for i := range stableFiles {
		files[fmt.Sprintf("stable/s%02d", i)] = fmt.Sprintf("stable %d\n%s\n", i, pad)
	}
	maps.Copy(files, extra)
	return files
}

// checkGeneration reads a published tree through its link, resolving the
// link once as an app should, and returns its generation. It fails when a
// file is missing, cut short, or the token files disagree.
func checkGeneration(link string) (int, error) {
	dir, err := filepath.EvalSymlinks(link)
	if err != nil {
		return 0, err
	}
	gen := -1
	for i := range tokenFiles {
		name := fmt.Sprintf("d%d/token-%02d", i%3, i)
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return 0, fmt.Errorf("incomplete revision %s: %w", filepath.Base(dir), err)
		}
		var g int
		if _, err := fmt.Sscanf(string(data), "gen %d\n", &g); err != nil || len(data) != len(generation(g, nil)[name]) {
			return 0, fmt.Errorf("revision %s: %s is cut or garbled (%d bytes)", filepath.Base(dir), name, len(data))
		}
		if gen >= 0 && g != gen {
			return 0, fmt.Errorf("torn revision %s: %s holds gen %d, earlier tokens gen %d", filepath.Base(dir), name, g, gen)
		}
		gen = g
	}
	want := generation(gen, nil)
	for p, c := range want {
		if strings.Contains(p, "token-") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			return 0, fmt.Errorf("incomplete revision %s: %w", filepath.Base(dir), err)
		}
		if string(data) != c {
			return 0, fmt.Errorf("revision %s: %s holds %q, want %q", filepath.Base(dir), p, testkit.Clip(string(data), 40), testkit.Clip(c, 40))
		}
	}
	return gen, nil
}

// waitForGen waits until link resolves to the whole generation gen.
func waitForGen(t testing.TB, limit time.Duration, link string, gen int) {
	t.Helper()
	testkit.Eventually(t, limit, fmt.Sprintf("gen %d at %s", gen, link), func() bool {
		g, err := checkGeneration(link)
		return err == nil && g == gen
	})
}

// startAtGen1 sets o to generation 1 and starts 'ferry run' on a fresh
// root with o as source cfg, and args; it returns once ROOT/cfg, the link
// it returns too, is that generation.
func startAtGen1(t testing.TB, o origin, args ...string) (*ferryProc, string) {
	t.Helper()
	o.set(t, 1, nil)
	root := t.TempDir()
	link := filepath.Join(root, "cfg")
	p := startFerry(t, procOptions{root: root, args: append(o.source("cfg"), args...)})
	waitForGen(t, 20*time.Second, link, 1)
	return p, link
}

// origin is a real origin of one source kind whose content is set one
// generation at a time; each change is atomic as the source sees it.
type origin interface {
	// source returns the --source value (with NAME=) and the flags this
	// source needs.
	source(name string) []string
	// set makes gen the origin's content; extra files are added to it.
	set(t testing.TB, gen int, extra map[string]string)
}

// originKinds are the sources every hardening test runs against: a new
// source kind is one more row (and an origin type). The git row fails on
// a machine without the git binary, which its origin runs.
var originKinds = []struct {
	kind string
	new  func(t testing.TB) origin
}{
	{"file", func(t testing.TB) origin { return newFileOrigin(t) }},
	{"http", func(t testing.TB) origin { return newTarOrigin(t) }},
	{"s3", func(t testing.TB) origin { return newS3Origin(t) }},
	{"git", func(t testing.TB) origin { return newGitOrigin(t) }},
}

// fileOrigin is a local directory changed the way Kubernetes changes a
// ConfigMap volume: each generation is a complete directory, and a symlink
// is renamed over the live one.
type fileOrigin struct {
	base string
	live string
	n    int
	dirs []string
}

func newFileOrigin(t testing.TB) *fileOrigin {
	base := t.TempDir()
	return &fileOrigin{base: base, live: filepath.Join(base, "live")}
}

func (o *fileOrigin) source(name string) []string { return []string{"--source", name + "=" + o.live} }

func (o *fileOrigin) set(t testing.TB, gen int, extra map[string]string) {
	t.Helper()
	o.n++
	dir := filepath.Join(o.base, fmt.Sprintf("..%d-%d", gen, o.n))
	files := generation(gen, extra)
	if err := writeTree(dir, files); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(o.base, fmt.Sprintf(".live-%d", o.n))
	if err := os.Symlink(filepath.Base(dir), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, o.live); err != nil {
		t.Fatal(err)
	}
	// A sync may still read a recent generation; older ones can go.
	o.dirs = append(o.dirs, dir)
	if len(o.dirs) > 50 {
		os.RemoveAll(o.dirs[0])
		o.dirs = o.dirs[1:]
	}
}

func writeTree(dir string, files map[string]string) error {
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// tarOrigin is an HTTP server serving a tar.gz of the current generation,
// with an ETag and If-None-Match, as a CI artifact store would.
type tarOrigin struct {
	srv *httptest.Server

	mu       gosync.Mutex
	body     []byte
	etag     string
	requests int
	// A fault injector may stand in front, calling serve for what it lets
	// through.
	frontable
}

func newTarOrigin(t testing.TB) *tarOrigin {
	o := &tarOrigin{}
	o.srv = quietServer(o.frontOr(http.HandlerFunc(o.serve)))
	t.Cleanup(o.srv.Close)
	return o
}

// serve answers one GET of the bundle.
func (o *tarOrigin) serve(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	body, etag := o.body, o.etag
	o.requests++
	o.mu.Unlock()
	if body == nil {
		http.Error(w, "no content yet", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// quietServer is httptest.NewServer without the server's error log: a
// client killed mid-response makes net/http complain, which is the point.
func quietServer(h http.Handler) *httptest.Server {
	s := httptest.NewUnstartedServer(h)
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.Start()
	return s
}

func (o *tarOrigin) url() string { return o.srv.URL + "/bundle.tar.gz" }

func (o *tarOrigin) source(name string) []string { return []string{"--source", name + "=" + o.url()} }

func (o *tarOrigin) set(t testing.TB, gen int, extra map[string]string) {
	t.Helper()
	files := generation(gen, extra)
	body := tarGz(t, files)
	o.mu.Lock()
	o.body, o.etag = body, fmt.Sprintf(`"g%d-%d"`, gen, len(body))
	o.mu.Unlock()
}

// frontable lets a test put a handler (a fault injector) in front of an
// origin's server at any moment, and take it away again.
type frontable struct {
	front atomic.Pointer[http.Handler]
}

// setFront puts h in front of the server (nil removes it).
func (f *frontable) setFront(h http.Handler) {
	if h == nil {
		f.front.Store(nil)
		return
	}
	f.front.Store(&h)
}

// frontOr serves through the front when one is set, else through direct.
func (f *frontable) frontOr(direct http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := f.front.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		direct.ServeHTTP(w, r)
	})
}

func tarGz(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	names := make([]string, 0, len(files))
	for p := range files {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		if err := tw.WriteHeader(&tar.Header{Name: p, Mode: 0o644, Size: int64(len(files[p])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[p]))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	gz.Close()
	return buf.Bytes()
}

// s3Origin is gofakes3, a real S3-protocol server, whose prefix changes
// atomically: a listing or GET never sees half a generation, as with a
// single-object bundle on real S3. (Key by key updates would make every
// listing a legitimate mix, and a torn publish undetectable.)
type s3Origin struct {
	srv     *httptest.Server
	backend *atomicBackend
	bucket  string
	prefix  string
	keys    []string     // access and secret key files
	direct  http.Handler // the server itself; a front reaches it through this
	frontable
}

// atomicBackend makes a set of PUTs one atomic change for readers.
type atomicBackend struct {
	*s3mem.Backend
	mu gosync.RWMutex
}

func (b *atomicBackend) ListBucket(name string, prefix *gofakes3.Prefix, page gofakes3.ListBucketPage) (*gofakes3.ObjectList, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.Backend.ListBucket(name, prefix, page)
}

func (b *atomicBackend) GetObject(bucket, key string, rng *gofakes3.ObjectRangeRequest) (*gofakes3.Object, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.Backend.GetObject(bucket, key, rng)
}

func (b *atomicBackend) HeadObject(bucket, key string) (*gofakes3.Object, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.Backend.HeadObject(bucket, key)
}

func newS3Origin(t testing.TB) *s3Origin {
	t.Helper()
	o := &s3Origin{backend: &atomicBackend{Backend: s3mem.New()}, bucket: "ferry", prefix: "conf/"}
	h := gofakes3.New(o.backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server()
	o.srv = quietServer(o.frontOr(h))
	t.Cleanup(o.srv.Close)
	o.direct = h
	if err := o.backend.CreateBucket(o.bucket); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	access, secret := filepath.Join(dir, "access"), filepath.Join(dir, "secret")
	os.WriteFile(access, []byte("ferrytestkey\n"), 0o600)
	os.WriteFile(secret, []byte("ferrytestsecret\n"), 0o600)
	o.keys = []string{"--s3-access-key-file", access, "--s3-secret-key-file", secret}
	return o
}

func (o *s3Origin) source(name string) []string {
	return append([]string{"--source", name + "=s3::" + o.srv.URL + "/" + o.bucket + "/" + o.prefix}, o.keys...)
}

func (o *s3Origin) set(t testing.TB, gen int, extra map[string]string) {
	t.Helper()
	files := generation(gen, extra)
	o.backend.mu.Lock()
	defer o.backend.mu.Unlock()
	list, err := o.backend.Backend.ListBucket(o.bucket, &gofakes3.Prefix{Prefix: o.prefix, HasPrefix: true}, gofakes3.ListBucketPage{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list.Contents {
		if _, ok := files[strings.TrimPrefix(c.Key, o.prefix)]; !ok {
			o.backend.Backend.DeleteObject(o.bucket, c.Key)
		}
	}
	for p, c := range files {
		if _, err := o.backend.Backend.PutObject(o.bucket, o.prefix+p, map[string]string{}, strings.NewReader(c), int64(len(c)), nil); err != nil {
			t.Fatal(err)
		}
	}
}

// gitOrigin is a repository served over git's smart HTTP protocol by the
// real git http-backend; each generation is one commit on main, which git
// makes atomic. With user set, it asks for basic auth.
type gitOrigin struct {
	srv *httptest.Server
	dir string
	env []string
	// handler is git http-backend behind the auth check; a fault injector
	// in front calls it for what it lets through.
	handler http.Handler
	frontable
}

func newGitOrigin(t testing.TB) *gitOrigin {
	return newGitOriginAuth(t, "", "")
}

func newGitOriginAuth(t testing.TB, user, pass string) *gitOrigin {
	t.Helper()
	base := t.TempDir()
	o := &gitOrigin{dir: filepath.Join(base, "config.git"), env: gittest.Env(filepath.Join(base, ".home"))}
	o.handler = gittest.BasicAuth(user, pass, gittest.HTTPBackend(t, base))
	os.MkdirAll(o.dir, 0o755)
	o.git(t, "init", "-q", "-b", "main")
	o.srv = quietServer(o.frontOr(o.handler))
	t.Cleanup(o.srv.Close)
	return o
}

func (o *gitOrigin) git(t testing.TB, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir, cmd.Env = o.dir, o.env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (o *gitOrigin) url() string { return "git::" + o.srv.URL + "/config.git?ref=main" }

func (o *gitOrigin) source(name string) []string { return []string{"--source", name + "=" + o.url()} }

func (o *gitOrigin) set(t testing.TB, gen int, extra map[string]string) {
	t.Helper()
	entries, _ := os.ReadDir(o.dir)
	for _, e := range entries {
		if e.Name() != ".git" {
			os.RemoveAll(filepath.Join(o.dir, e.Name()))
		}
	}
	files := generation(gen, extra)
	if err := writeTree(o.dir, files); err != nil {
		t.Fatal(err)
	}
	o.git(t, "add", "-A")
	o.git(t, "commit", "-q", "--allow-empty", "-m", fmt.Sprintf("gen %d", gen))
}

// fileOverHTTP is an origin serving one file, published under its name.
type fileOverHTTP struct{ srv *httptest.Server }

func newFileOverHTTP(t testing.TB) *fileOverHTTP {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "greeting: hello\n")
	}))
	t.Cleanup(srv.Close)
	return &fileOverHTTP{srv}
}

func (o *fileOverHTTP) source(name string) []string {
	return []string{"--source", name + "=" + o.srv.URL + "/app.yaml"}
}
func (o *fileOverHTTP) set(testing.TB, int, map[string]string) {}
