package http_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"io"
	"io/fs"
	"log"
	"maps"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/fetchtest"
	fhttp "github.com/ferrysync/ferry/fetch/http"
	"github.com/ferrysync/ferry/internal/sourcetest"
	"github.com/ferrysync/ferry/internal/testkit"
	"github.com/ferrysync/ferry/sync"
)

// origin is a real HTTP server whose content the test controls. It answers
// conditional requests with net/http's ServeContent, as a static file server
// would, and counts requests and body bytes.
type origin struct {
	srv *httptest.Server

	mu       gosync.Mutex
	body     []byte
	modified time.Time
	etag     bool // send a strong ETag
	lastMod  bool // send Last-Modified
	status   int  // when non-zero, answer with this status and no body
	headers  []nethttp.Header
	queries  []string

	requests  atomic.Int64
	bodyBytes atomic.Int64
}

// newOrigin starts a plain or TLS server with ETag and Last-Modified on.
func newOrigin(t testing.TB, tlsServer bool) *origin {
	o := &origin{etag: true, lastMod: true}
	if tlsServer {
		o.srv = httptest.NewUnstartedServer(o)
		// Refused handshakes are what some tests are about; keep them
		// out of the test output.
		o.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		o.srv.StartTLS()
	} else {
		o.srv = httptest.NewServer(o)
	}
	t.Cleanup(o.srv.Close)
	return o
}

func (o *origin) ServeHTTP(w nethttp.ResponseWriter, r *nethttp.Request) {
	o.requests.Add(1)
	o.mu.Lock()
	body, mod, status := o.body, o.modified, o.status
	etag, lastMod := o.etag, o.lastMod
	o.headers = append(o.headers, r.Header.Clone())
	o.queries = append(o.queries, r.URL.RawQuery)
	o.mu.Unlock()
	if status != 0 {
		nethttp.Error(w, nethttp.StatusText(status), status)
		return
	}
	if etag {
		w.Header().Set("ETag", `"`+sha256Hex(body)[:16]+`"`)
	}
	if !lastMod {
		mod = time.Time{}
	}
	cw := &testkit.CountingWriter{ResponseWriter: w, N: &o.bodyBytes}
	nethttp.ServeContent(cw, r, "", mod, bytes.NewReader(body))
}

// set replaces the content. The modification time moves by a second so
// that Last-Modified (one-second resolution) changes with it.
func (o *origin) set(body []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.body = body
	if o.modified.IsZero() {
		o.modified = time.Now().Add(-time.Hour).Truncate(time.Second)
	}
	o.modified = o.modified.Add(time.Second)
	o.status = 0
}

func (o *origin) setStatus(code int) {
	o.mu.Lock()
	o.status = code
	o.mu.Unlock()
}

// lastHeader is the last request's header.
func (o *origin) lastHeader() nethttp.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.headers) == 0 {
		return nil
	}
	return o.headers[len(o.headers)-1]
}

// lastQuery is the last request's raw query.
func (o *origin) lastQuery() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.queries) == 0 {
		return ""
	}
	return o.queries[len(o.queries)-1]
}

func (o *origin) url(p string) string { return o.srv.URL + p }

// caFile writes the TLS server's certificate as a PEM bundle.
func (o *origin) caFile(t testing.TB) string {
	t.Helper()
	return writeFile(t, t.TempDir(), "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: o.srv.Certificate().Raw})))
}

// fixture is what the daemon gives a source, for a test: a state
// directory, which the sources a test builds share, and a log.
type fixture struct {
	stateDir string
	logs     testkit.LogBuffer
}

func newFixture(t testing.TB) *fixture {
	return &fixture{stateDir: filepath.Join(t.TempDir(), "state")}
}

// source builds an HTTP source for raw.
func (f *fixture) source(t testing.TB, raw string, o fhttp.Options) *fhttp.Source {
	t.Helper()
	u, err := fetch.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if u.Kind != "http" {
		t.Fatalf("%s parsed as kind %q", raw, u.Kind)
	}
	s, err := fhttp.New(u, o, fetch.Env{StateDir: f.stateDir, Logger: f.logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fetched is what one Fetch returned and wrote.
type fetched struct {
	rev string
	w   *fetchtest.Writer
	err error
}

// fetchFrom runs one Fetch against prev, the revision the loop would hold
// published, into an in-memory Writer.
func fetchFrom(t testing.TB, s fetch.Source, prev string) fetched {
	t.Helper()
	return fetchWithin(t, s, prev, 30*time.Second)
}

func fetchWithin(t testing.TB, s fetch.Source, prev string, d time.Duration) fetched {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	w := fetchtest.NewWriter(fetch.Limits{})
	rev, err := s.Fetch(ctx, prev, w)
	return fetched{rev: rev, w: w, err: err}
}

// mustFetch is fetchFrom that fails the test on an error.
func mustFetch(t testing.TB, s fetch.Source, prev string) fetched {
	t.Helper()
	r := fetchFrom(t, s, prev)
	if r.err != nil {
		t.Fatalf("fetch: %v", r.err)
	}
	return r
}

// volume is a real store with one source "c", for what only a publish
// shows: the tree on disk, and nothing of it outside the root.
type volume struct {
	*fixture
	base  string // holds root and nothing else: escapes land here
	root  string
	store *sync.Store
}

func newVolume(t testing.TB, limits fetch.Limits) *volume {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	store, err := sync.OpenStore(root, limits)
	if err != nil {
		t.Fatal(err)
	}
	return &volume{fixture: &fixture{stateDir: sync.StateDir(root, "c")}, base: base, root: root, store: store}
}

// sync fetches and publishes, as the loop does.
func (v *volume) sync(t testing.TB, s fetch.Source) sourcetest.Result {
	t.Helper()
	return sourcetest.Sync(t, v.store, "c", s)
}

// tree reads the published tree.
func (v *volume) tree(t testing.TB) map[string]string {
	t.Helper()
	return sourcetest.ReadTree(t, v.store.LinkPath("c"))
}

// assertStateDirClean checks that only the state file is left behind.
func assertStateDirClean(t *testing.T, stateDir string) {
	t.Helper()
	ents, err := os.ReadDir(stateDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "http.json" {
			t.Errorf("left in the state directory: %s", e.Name())
		}
	}
}

// entry is one archive member for the builders below.
type entry struct {
	name     string
	body     string
	mode     int64
	typeflag byte   // tar type; 0 means a regular file
	link     string // symlink or hard-link target
	pax      map[string]string
}

func file(name, body string) entry { return entry{name: name, body: body, mode: 0o644} }

// filesOf turns path -> content into sorted regular entries.
func filesOf(files map[string]string) []entry {
	var es []entry
	for _, p := range slices.Sorted(maps.Keys(files)) {
		es = append(es, file(p, files[p]))
	}
	return es
}

// tarOf builds a tar archive, gzip-compressed when gz is set.
func tarOf(t testing.TB, gz bool, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Mode: e.mode, Typeflag: e.typeflag, Linkname: e.link,
			ModTime: time.Unix(1700000000, 0), PAXRecords: e.pax}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
		}
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if e.pax != nil {
			hdr.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if gz {
		return gzipped(buf.Bytes(), gzip.DefaultCompression)
	}
	return buf.Bytes()
}

// gzipped compresses b.
func gzipped(b []byte, level int) []byte {
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, level)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

// zipOf builds a zip archive; mode may carry fs.ModeSymlink (the body is
// then the target) or another type bit.
func zipOf(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		fh := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		mode := fs.FileMode(e.mode)
		if mode == 0 {
			mode = 0o644
		}
		fh.SetMode(mode)
		w, err := zw.CreateHeader(fh)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// assertError fails unless err is one line holding want, and permanent
// (or not) as retrying could (or could not) help.
func assertError(t *testing.T, err error, want string, permanent bool) {
	t.Helper()
	switch {
	case err == nil:
		t.Fatalf("no error, want %q", want)
	case strings.ContainsAny(err.Error(), "\r\n"):
		t.Fatalf("error spans lines: %q", err)
	case !strings.Contains(err.Error(), want):
		t.Fatalf("err = %v\nwant it to contain %s", err, want)
	case fetch.IsPermanent(err) != permanent:
		t.Fatalf("err = %v: permanent = %v, want %v", err, !permanent, permanent)
	}
}
