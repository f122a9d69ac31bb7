package e2e

// The harness of the process-level hardening tests: the ferry binary built
// once per test binary, a handle on a running ferry (its logs, /status,
// /metrics, its volume), and origins of every source kind whose content
// changes on demand, one generation at a time, atomically.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
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
	"syscall"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/ferrysync/ferry/internal/testkit"
)

// fsizeEnv makes the test binary a launcher: it sets RLIMIT_FSIZE to the
// value, then execs its arguments. Go has no rlimit in exec.Cmd, and this
// does not depend on util-linux's prlimit being installed.
const fsizeEnv = "FERRY_TEST_EXEC_FSIZE"

func TestMain(m *testing.M) {
	if v := os.Getenv(fsizeEnv); v != "" {
		execWithFileSizeLimit(v, os.Args[1:])
		return
	}
	code := m.Run()
	bins.Close()
	os.Exit(code)
}

// execWithFileSizeLimit replaces the process with args under
// RLIMIT_FSIZE=limit. The limit survives exec; SIGXFSZ does not kill a Go
// program (the runtime ignores it unless notified), so writes past the
// limit fail with EFBIG.
func execWithFileSizeLimit(limit string, args []string) {
	n, err := strconv.ParseUint(limit, 10, 64)
	if err != nil || len(args) == 0 {
		fmt.Fprintf(os.Stderr, "launcher: bad %s=%q or no command\n", fsizeEnv, limit)
		os.Exit(120)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
		fmt.Fprintf(os.Stderr, "launcher: setrlimit: %v\n", err)
		os.Exit(120)
	}
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, fsizeEnv+"=") {
			env = append(env, e)
		}
	}
	err = syscall.Exec(args[0], args, env)
	fmt.Fprintf(os.Stderr, "launcher: exec %s: %v\n", args[0], err)
	os.Exit(120)
}

// bins builds ferry and the demo app once for the whole test binary.
var bins testkit.Binaries

// The packages of the binaries the tests run.
const (
	ferryPkg = "github.com/ferrysync/ferry/cmd/ferry"
	appPkg   = "github.com/ferrysync/ferry/examples/demo-app"
)

// ferryProc is one running 'ferry run' (or 'once') process.
type ferryProc struct {
	t      testing.TB
	cmd    *exec.Cmd
	addr   string // --http-addr, "" when off
	root   string
	stdout *testkit.LogBuffer
	stderr *testkit.LogBuffer
	done   chan struct{}
	err    error // set when done is closed
}

// procOptions say how to start ferry.
type procOptions struct {
	args []string // after "run"/"once"; --root and --http-addr are added
	root string
	once bool
	// fsize, when positive, runs ferry under RLIMIT_FSIZE of that many bytes.
	fsize int64
	env   []string
	// noAddr leaves --http-addr out (the endpoints off).
	noAddr bool
}

// startFerry starts the ferry binary and returns once it is running; with
// endpoints, once /healthz answers.
func startFerry(t testing.TB, o procOptions) *ferryProc {
	t.Helper()
	bin := bins.Path(t, ferryPkg)
	cmdName := "run"
	if o.once {
		cmdName = "once"
	}
	args := append([]string{cmdName, "--root", o.root, "--log-format", "json"}, o.args...)
	p := &ferryProc{t: t, root: o.root, stdout: &testkit.LogBuffer{}, stderr: &testkit.LogBuffer{}, done: make(chan struct{})}
	if !o.noAddr && !o.once {
		p.addr = testkit.FreeAddr(t)
		args = append(args, "--http-addr", p.addr)
	}
	if o.fsize > 0 {
		p.cmd = exec.Command(os.Args[0], append([]string{bin}, args...)...)
		p.cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", fsizeEnv, o.fsize))
	} else {
		p.cmd = exec.Command(bin, args...)
		p.cmd.Env = os.Environ()
	}
	p.cmd.Env = append(p.cmd.Env, o.env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	if p.addr != "" {
		deadline := time.Now().Add(20 * time.Second)
		for testkit.HTTPStatus("http://"+p.addr+"/healthz") == 0 {
			select {
			case <-p.done:
				t.Fatalf("ferry exited at start: %v\n%s", p.err, p.stderr.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("ferry endpoints not up within 20s\n%s", p.stderr.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return p
}

// runToEnd runs the ferry binary with args until it exits and returns its
// exit code and output. It is bounded by 20s: a configuration accepted by
// mistake must fail the test, not hang it.
func runToEnd(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	bin := bins.Path(t, ferryPkg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errs strings.Builder
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errs
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("still running after 20s: the input was accepted\n%s", testkit.Clip(errs.String(), 2000))
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errs.String()
}

// exited reports whether the process has ended.
func (p *ferryProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits; it fails the test when the process had
// ended by itself.
func (p *ferryProc) kill() {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	var exit *exec.ExitError
	if !errors.As(p.err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		p.t.Fatalf("ferry ended on its own before SIGKILL: %v\n%s", p.err, tail(p.stderr.String(), 20))
	}
}

// term sends SIGTERM and returns the exit code and how long the exit took.
func (p *ferryProc) term() (int, time.Duration) {
	p.t.Helper()
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("ferry still running 10s after SIGTERM\n%s", tail(p.stderr.String(), 20))
	}
	return p.exitCode(), time.Since(start)
}

// wait waits for the process to end by itself and returns its exit code.
func (p *ferryProc) wait(limit time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(limit):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("ferry still running after %s\n%s", limit, tail(p.stderr.String(), 20))
	}
	return p.exitCode()
}

func (p *ferryProc) exitCode() int {
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		return exit.ExitCode()
	}
	if p.err != nil {
		return -1
	}
	return 0
}

// sourceStatus is one source of /status.
type sourceStatus struct {
	Name                string `json:"name"`
	URL                 string `json:"url"`
	Revision            string `json:"revision"`
	LastError           string `json:"last_error"`
	ConsecutiveFailures int    `json:"consecutive_failures"`
}

// status returns /status by source name; nil when it cannot be read.
func (p *ferryProc) status() map[string]sourceStatus {
	resp, err := http.Get("http://" + p.addr + "/status")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var st struct{ Sources []sourceStatus }
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil
	}
	out := map[string]sourceStatus{}
	for _, s := range st.Sources {
		out[s.Name] = s
	}
	return out
}

// get returns the body of an endpoint, "" when it cannot be read.
func (p *ferryProc) get(path string) string {
	resp, err := http.Get("http://" + p.addr + path)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metric returns the value of the series name{labels...} in /metrics (the
// labels given must all match; others may be present), or -1.
func (p *ferryProc) metric(name string, labels ...string) float64 {
	return metricValue(p.get("/metrics"), name, labels...)
}

// metricValue finds a series in Prometheus text. labels are "k", "v" pairs.
func metricValue(text, name string, labels ...string) float64 {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(rest, labels[i]+`="`+labels[i+1]+`"`) {
				continue next
			}
		}
		f := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err == nil {
			return v
		}
	}
	return -1
}

// logRecord is one JSON log line of ferry.
type logRecord map[string]any

// logs returns ferry's JSON log records so far; lines that are not JSON
// (there must be none) are returned as {"msg": line, "nonjson": true}.
func (p *ferryProc) logs() []logRecord {
	var out []logRecord
	for _, line := range strings.Split(p.stderr.String(), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var r logRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			r = logRecord{"msg": line, "nonjson": true}
		}
		out = append(out, r)
	}
	return out
}

func (r logRecord) str(k string) string { s, _ := r[k].(string); return s }

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// leftovers lists what a killed or interrupted ferry may leave in the
// volume: staging trees, temporary links, manifest temporaries and HTTP
// download spools.
func leftovers(root string) []string {
	var out []string
	for _, pattern := range []string{
		".ferry/*/.stage-*", ".ferry/*/.link-*", ".ferry/*/.meta/.tmp-*",
		".ferry/*/.state/.http-spool-*", ".ferry/*/.state/.*.tmp",
		// go-git's temporary pack and object files.
		".ferry/*/.state/*/objects/pack/tmp_*", ".ferry/*/.state/*/objects/*/tmp_*",
		".ferry/*/.state/*/objects/tmp_*",
	} {
		m, _ := filepath.Glob(filepath.Join(root, pattern))
		out = append(out, m...)
	}
	return out
}

// volumeLeftovers lists what a run must not leave on the volume.
func volumeLeftovers(t testing.TB, root string) []string {
	return leftovers(root)
}

// --- generations: the content every origin serves ---

// The tree of generation g: tokenFiles files that all hold the token of g
// (a reader that sees two tokens saw a torn tree), stableFiles files that
// never change (reused by hard link from one revision to the next), and
// app.yaml for the demo app.
const (
	tokenFiles  = 24
	stableFiles = 24
	padBytes    = 2 << 10
)

// generation returns the files of generation g; extra files are added.
func generation(g int) map[string]string {
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
		if _, err := fmt.Sscanf(string(data), "gen %d\n", &g); err != nil || len(data) != len(generation(g)[name]) {
			return 0, fmt.Errorf("revision %s: %s is cut or garbled (%d bytes)", filepath.Base(dir), name, len(data))
		}
		if gen >= 0 && g != gen {
			return 0, fmt.Errorf("torn revision %s: %s holds gen %d, earlier tokens gen %d", filepath.Base(dir), name, g, gen)
		}
		gen = g
	}
	want := generation(gen)
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

// --- origins ---

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
	files := generation(gen)
	for p, c := range extra {
		files[p] = c
	}
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
	files := generation(gen)
	for p, c := range extra {
		files[p] = c
	}
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
	files := generation(gen)
	for p, c := range extra {
		files[p] = c
	}
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

// walkOutsideRevisions calls fn for every regular file under ROOT/.ferry
// that is not inside a published revision or staging tree: manifests,
// source state, anything else ferry writes.
func walkOutsideRevisions(t testing.TB, root string, fn func(path string, data []byte)) {
	t.Helper()
	meta := filepath.Join(root, ".ferry")
	filepath.WalkDir(meta, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(meta, p)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		if d.IsDir() && len(parts) == 2 && !strings.HasPrefix(parts[1], ".") {
			return filepath.SkipDir // a revision
		}
		if d.Type().IsRegular() {
			data, _ := os.ReadFile(p)
			fn(p, data)
		}
		return nil
	})
}
