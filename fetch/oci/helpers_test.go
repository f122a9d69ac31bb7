package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/sourcetest"
	fsync "github.com/ferrysync/ferry/sync"
)

// testRegistry is go-containerregistry's in-process registry behind a
// middleware that counts requests and can misbehave on purpose.
type testRegistry struct {
	host     string
	requests atomic.Int64
	mu       sync.Mutex
	methods  []string
	broken   atomic.Bool // answer 503
	noDigest atomic.Bool // HEAD without Docker-Content-Digest
	flipBlob atomic.Bool // corrupt every blob's content
	user     string      // require basic auth when set
	pass     string
	auth     []authn.Authenticator
}

func newRegistry(t *testing.T, user, pass string) *testRegistry {
	r := &testRegistry{user: user, pass: pass}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		r.mu.Lock()
		r.methods = append(r.methods, req.Method+" "+req.URL.Path)
		r.mu.Unlock()
		if r.broken.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if r.user != "" {
			if u, p, ok := req.BasicAuth(); !ok || u != r.user || p != r.pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
		}
		if req.Method == http.MethodHead && r.noDigest.Load() {
			w = &dropDigest{ResponseWriter: w}
		}
		if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/") && r.flipBlob.Load() {
			w = &flipWriter{ResponseWriter: w}
		}
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	if user != "" {
		r.auth = []authn.Authenticator{&authn.Basic{Username: user, Password: pass}}
	}
	return r
}

// calls returns the requests since the last call.
func (r *testRegistry) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.methods
	r.methods = nil
	return out
}

type dropDigest struct{ http.ResponseWriter }

func (d *dropDigest) WriteHeader(code int) {
	d.Header().Del("Docker-Content-Digest")
	d.ResponseWriter.WriteHeader(code)
}

// flipWriter changes the first byte of a body: same length, other digest.
type flipWriter struct {
	http.ResponseWriter
	done bool
}

func (f *flipWriter) Write(p []byte) (int, error) {
	if !f.done && len(p) > 0 {
		f.done = true
		q := append([]byte(nil), p...)
		q[0] ^= 0xff
		return f.ResponseWriter.Write(q)
	}
	return f.ResponseWriter.Write(p)
}

// tgz packs files (path -> content) as a tar.gz, in path order.
func tgz(t testing.TB, files map[string]string) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		hdr := &tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}
		if target, ok := strings.CutPrefix(files[n], "-> "); ok {
			hdr = &tar.Header{Name: n, Mode: 0o777, Typeflag: tar.TypeSymlink, Linkname: target}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			io.WriteString(tw, files[n])
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	gz.Close()
	return buf.Bytes()
}

// layerSpec is one layer of an artifact.
type layerSpec struct {
	data  []byte
	mt    types.MediaType
	title string
}

// artifact builds an OCI image manifest holding layers, as flux push
// artifact and oras push make them.
func artifact(t testing.TB, layers ...layerSpec) v1.Image {
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), "application/vnd.cncf.flux.config.v1+json")
	for _, l := range layers {
		add := mutate.Addendum{Layer: static.NewLayer(l.data, l.mt), MediaType: l.mt}
		if l.title != "" {
			add.Annotations = map[string]string{titleAnnotation: l.title}
		}
		var err error
		if img, err = mutate.Append(img, add); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// push writes img to repo:tag and returns its digest.
func (r *testRegistry) push(t testing.TB, repoTag string, img v1.Image) v1.Hash {
	t.Helper()
	ref, err := name.ParseReference(r.host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	opts := []remote.Option{}
	if len(r.auth) > 0 {
		opts = append(opts, remote.WithAuth(r.auth[0]))
	}
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// pushFiles pushes one tar+gzip layer of files to repo:tag.
func (r *testRegistry) pushFiles(t testing.TB, repoTag string, files map[string]string) v1.Hash {
	t.Helper()
	return r.push(t, repoTag, artifact(t, layerSpec{data: tgz(t, files), mt: types.OCILayer}))
}

// source builds a source for raw, with its state under the test.
func source(t testing.TB, raw string, o Options, stateDir string) *Source {
	t.Helper()
	u, err := fetch.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(u, o, fetch.Env{StateDir: stateDir})
	if err != nil {
		t.Fatalf("New(%s): %v", raw, err)
	}
	return s
}

// fixture is a store and one source "c" published into it.
type fixture struct {
	store *fsync.Store
	src   *Source
	root  string
}

func newFixture(t testing.TB, raw string, o Options) *fixture {
	t.Helper()
	root := t.TempDir()
	store, err := fsync.OpenStore(root, fetch.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{store: store, root: root, src: source(t, raw, o, fsync.StateDir(root, "c"))}
}

func (f *fixture) sync(t testing.TB) sourcetest.Result {
	t.Helper()
	return sourcetest.Sync(t, f.store, "c", f.src)
}

func (f *fixture) tree(t testing.TB) map[string]string {
	return sourcetest.ReadTree(t, f.store.LinkPath("c"))
}

// secretFile writes content to a 0600 file under the test.
func secretFile(t testing.TB, content string) string {
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// pushIndex writes idx, and the images it holds, to repo:tag.
func (r *testRegistry) pushIndex(t testing.TB, repoTag string, idx v1.ImageIndex) {
	t.Helper()
	ref, err := name.ParseReference(r.host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
}
