package http_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/pem"
	"io"
	"io/fs"
	"log"
	"log/slog"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/fetch"
	fhttp "github.com/ferrysync/ferry/fetch/http"
	"github.com/ferrysync/ferry/internal/sourcetest"
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
		sum := sha256.Sum256(body)
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:8])+`"`)
	}
	if !lastMod {
		mod = time.Time{}
	}
	cw := &countingWriter{ResponseWriter: w, n: &o.bodyBytes}
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
	p := filepath.Join(t.TempDir(), "ca.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: o.srv.Certificate().Raw})
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

type countingWriter struct {
	nethttp.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// harness is a real store with one source "c" in it.
type harness struct {
	base     string // holds root and nothing else: escapes land here
	root     string
	store    *sync.Store
	stateDir string
	logs     *syncBuffer
	logger   *slog.Logger
}

func newHarness(t testing.TB, limits fetch.Limits) *harness {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	store, err := sync.OpenStore(root, limits)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	return &harness{
		base: base, root: root, store: store,
		stateDir: sync.StateDir(root, "c"),
		logs:     logs,
		logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// source builds an HTTP source for raw in the harness.
func (h *harness) source(t testing.TB, raw string, o fhttp.Options) *fhttp.Source {
	t.Helper()
	u, err := fetch.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if u.Kind != "http" {
		t.Fatalf("%s parsed as kind %q", raw, u.Kind)
	}
	s, err := fhttp.New(u, o, fetch.Env{StateDir: h.stateDir, Logger: h.logger})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// result is one sync: what the loop would see.
type result struct {
	prev, rev string
	wrote     bool // the source wrote to staging
	stats     sync.Stats
	err       error
}

// sync runs one fetch and publish, as the loop does.
func (h *harness) sync(t testing.TB, s fetch.Source) result {
	t.Helper()
	return h.syncTimeout(t, s, 30*time.Second)
}

func (h *harness) syncTimeout(t testing.TB, s fetch.Source, d time.Duration) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	prev, err := h.store.Current("c")
	if err != nil {
		t.Fatal(err)
	}
	st := h.store.Begin("c", prev)
	defer st.Discard()
	rev, err := s.Fetch(ctx, prev, st)
	r := result{prev: prev, rev: rev, err: err, wrote: st.Dir() != "", stats: st.Stats()}
	if err != nil || rev == prev {
		return r
	}
	if err := st.Publish(rev); err != nil {
		t.Fatalf("publish: %v", err)
	}
	return r
}

// mustSync syncs and fails the test on error.
func (h *harness) mustSync(t testing.TB, s fetch.Source) result {
	t.Helper()
	r := h.sync(t, s)
	if r.err != nil {
		t.Fatalf("sync: %v", r.err)
	}
	return r
}

// tree reads the published tree: path -> content, symlinks as "-> target".
func (h *harness) tree(t *testing.T) map[string]string {
	t.Helper()
	return sourcetest.ReadTree(t, h.store.LinkPath("c"))
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// syncBuffer is a log sink safe for the handler's concurrent writes.
type syncBuffer struct {
	mu  gosync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
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
	for _, p := range keys(files) {
		es = append(es, file(p, files[p]))
	}
	return es
}

// tarOf builds a tar archive, gzip-compressed when gz is set.
func tarOf(t testing.TB, gz bool, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		w = zw
	}
	tw := tar.NewWriter(w)
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
		if hdr.Typeflag == tar.TypeReg {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
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

func md5Hex(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

func sha512Hex(b []byte) string {
	sum := sha512.Sum512(b)
	return hex.EncodeToString(sum[:])
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// assertOneLine fails when err is nil or spans lines.
func assertOneLine(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error spans lines: %q", err)
	}
}
