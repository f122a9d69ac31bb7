package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/ferrysync/ferry/internal/localproc"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// The key pair every test server accepts.
const (
	testAccess = "ferrytestkey"
	testSecret = "ferrytestsecret/with+symbols"
)

// server is a real S3-protocol server on 127.0.0.1. The source under test
// talks to it through a counter, a plain http.Handler in front of it that
// counts requests by kind (it forwards them untouched); the test's own
// setup goes straight to the server and is not counted.
type server struct {
	name string
	// checksAuth is true when the server verifies signatures (versitygw);
	// gofakes3 accepts any.
	checksAuth bool

	front    *httptest.Server // counted, what sources use
	admin    *s3.Client       // not counted
	counts   *counter
	buckets  atomic.Int64
	fakeData *s3mem.Backend // gofakes3 only: bulk setup without HTTP
}

// endpoint is the counted endpoint for source URLs.
func (s *server) endpoint() string { return s.front.URL }

// url returns the custom-endpoint source URL of bucket/key.
func (s *server) url(bucket, key string) string {
	return s.endpoint() + "/" + bucket + "/" + key
}

// newBucket creates a bucket with a fresh name.
func (s *server) newBucket(t testing.TB, versioned bool) string {
	t.Helper()
	name := fmt.Sprintf("ferry-%d-%d", time.Now().UnixNano()%1e9, s.buckets.Add(1))
	ctx := context.Background()
	if _, err := s.admin.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("%s: create bucket: %v", s.name, err)
	}
	if versioned {
		_, err := s.admin.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
			Bucket:                  aws.String(name),
			VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled},
		})
		if err != nil {
			t.Fatalf("%s: enable versioning: %v", s.name, err)
		}
	}
	return name
}

// put stores one object and returns its version ID ("" when unversioned).
func (s *server) put(t testing.TB, bucket, key, body string) string {
	t.Helper()
	out, err := s.admin.PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(body),
	})
	if err != nil {
		t.Fatalf("%s: put %s: %v", s.name, key, err)
	}
	return aws.ToString(out.VersionId)
}

// putMany stores files in parallel (or straight into gofakes3's backend).
func (s *server) putMany(t testing.TB, bucket string, files map[string][]byte) {
	t.Helper()
	if s.fakeData != nil {
		for k, v := range files {
			if _, err := s.fakeData.PutObject(bucket, k, map[string]string{}, bytes.NewReader(v), int64(len(v)), nil); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	keys := make(chan string)
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				_, err := s.admin.PutObject(context.Background(), &s3.PutObjectInput{
					Bucket: aws.String(bucket), Key: aws.String(k), Body: bytes.NewReader(files[k]),
				})
				if err != nil {
					failed.Store(fmt.Errorf("put %s: %w", k, err))
				}
			}
		}()
	}
	for k := range files {
		keys <- k
	}
	close(keys)
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		t.Fatalf("%s: %v", s.name, err)
	}
}

// del removes one object (the current version's, on a versioned bucket).
func (s *server) del(t testing.TB, bucket, key string) {
	t.Helper()
	if _, err := s.admin.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err != nil {
		t.Fatalf("%s: delete %s: %v", s.name, key, err)
	}
}

// keys lists every key under prefix.
func (s *server) keys(t testing.TB, bucket, prefix string) []string {
	t.Helper()
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.admin, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatalf("%s: list: %v", s.name, err)
		}
		for _, c := range page.Contents {
			keys = append(keys, aws.ToString(c.Key))
		}
	}
	return keys
}

// adminClient is an SDK client with the right keys, straight to endpoint.
func adminClient(endpoint string) *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(endpoint),
		Region:       "us-east-1",
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(testAccess, testSecret, ""),
		// Test setup may race a server's startup; let the SDK retry it.
		RetryMaxAttempts: 3,
	})
}

// counter counts the requests that pass through it, by kind: LIST
// (ListObjectsV2), GET (GetObject), GET-304 (answered Not Modified), HEAD
// and the other methods. It also remembers the last access key ID seen
// and the peak of concurrent GETs. A non-zero getDelay holds each GET
// before forwarding it, so that concurrency can be observed.
type counter struct {
	next     http.Handler
	getDelay time.Duration

	mu        sync.Mutex
	n         map[string]int
	lastKeyID string
	inflight  int
	peak      int
}

func newCounter(next http.Handler) *counter {
	return &counter{next: next, n: map[string]int{}}
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind := r.Method
	if r.Method == http.MethodGet {
		switch q := r.URL.Query(); {
		case q.Has("list-type"):
			kind = "LIST"
		case q.Has("versions"), q.Has("versioning"), q.Has("location"):
			kind = "GET?"
		case strings.Count(strings.TrimPrefix(r.URL.Path, "/"), "/") >= 1:
			kind = "GET"
		default:
			kind = "LIST-V1"
		}
	}
	c.mu.Lock()
	if kid := accessKeyID(r.Header.Get("Authorization")); kid != "" {
		c.lastKeyID = kid
	}
	isGet := kind == "GET"
	if isGet {
		c.inflight++
		c.peak = max(c.peak, c.inflight)
	}
	c.mu.Unlock()
	if isGet && c.getDelay > 0 {
		time.Sleep(c.getDelay)
	}
	rec := &statusRecorder{ResponseWriter: w}
	c.next.ServeHTTP(rec, r)
	c.mu.Lock()
	if isGet {
		c.inflight--
		if rec.status == http.StatusNotModified {
			kind = "GET-304"
		}
	}
	c.n[kind]++
	c.mu.Unlock()
}

// accessKeyID reads the key ID from a SigV4 Authorization header.
func accessKeyID(auth string) string {
	_, cred, ok := strings.Cut(auth, "Credential=")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(cred, "/")
	return id
}

// take returns the counts so far and starts again from zero.
func (c *counter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = map[string]int{}
	c.peak = 0
	return n
}

func (c *counter) keyID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastKeyID
}

func (c *counter) peakGets() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peak
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(p)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// newGofakes3 starts gofakes3 (in memory) on two httptest listeners: one
// counted for the source, one direct for setup.
func newGofakes3(t testing.TB) *server {
	t.Helper()
	backend := s3mem.New()
	faker := gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog()))
	h := faker.Server()
	direct := httptest.NewServer(h)
	t.Cleanup(direct.Close)
	s := &server{name: "gofakes3", fakeData: backend, admin: adminClient(direct.URL)}
	s.counts = newCounter(h)
	s.front = httptest.NewServer(s.counts)
	t.Cleanup(s.front.Close)
	return s
}

// versitygwEnv names the versitygw binary; `make test` builds it into a
// cache directory and sets it.
const versitygwEnv = "FERRY_TEST_VERSITYGW"

// One versitygw process serves the whole test binary; each test gets its
// own buckets and its own counting front.
var vgw struct {
	once     sync.Once
	endpoint string
	dir      string
	cmd      *exec.Cmd
	err      error
}

// newVersitygw returns a server backed by the real versitygw binary.
func newVersitygw(t testing.TB) *server {
	t.Helper()
	bin := os.Getenv(versitygwEnv)
	if bin == "" {
		t.Skip(versitygwEnv + " is unset: `make test` builds versitygw v1.8.0 and sets it")
	}
	vgw.once.Do(func() { vgw.err = startVersitygw(bin) })
	if vgw.err != nil {
		t.Fatalf("versitygw: %v", vgw.err)
	}
	target, _ := url.Parse(vgw.endpoint)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			// The signature covers the Host header: keep the client's.
			r.Out.Host = r.In.Host
		},
	}
	s := &server{name: "versitygw", checksAuth: true, admin: adminClient(vgw.endpoint)}
	s.counts = newCounter(proxy)
	s.front = httptest.NewServer(s.counts)
	t.Cleanup(s.front.Close)
	return s
}

// startVersitygw runs `versitygw --access A --secret S --port 127.0.0.1:P
// posix DIR` with bucket versioning available, and waits for its port.
func startVersitygw(bin string) error {
	dir, err := os.MkdirTemp("", "ferry-versitygw-")
	if err != nil {
		return err
	}
	vgw.dir = dir
	root, versions := filepath.Join(dir, "root"), filepath.Join(dir, "versions")
	for _, d := range []string{root, versions} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	var lastErr error
	for range 3 { // a port picked free may be taken before versitygw binds it
		addr, err := localproc.FreeAddr()
		if err != nil {
			return err
		}
		logf, err := os.Create(filepath.Join(dir, "versitygw.log"))
		if err != nil {
			return err
		}
		cmd := exec.Command(bin, "--access", testAccess, "--secret", testSecret,
			"--port", addr, "--keep-alive", "--quiet",
			"posix", "--versioning-dir", versions, root)
		// Its own environment only: versitygw reads many VGW_* and
		// ROOT_* variables.
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
		cmd.Stdout, cmd.Stderr = logf, logf
		// Do not outlive a test binary that is killed (a -timeout panic).
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			logf.Close()
			return fmt.Errorf("start %s: %w", bin, err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait(); logf.Close() }()
		if err := waitPort(addr, exited, 30*time.Second); err != nil {
			cmd.Process.Kill()
			log, _ := os.ReadFile(filepath.Join(dir, "versitygw.log"))
			lastErr = fmt.Errorf("%w; log: %s", err, bytes.TrimSpace(log))
			continue
		}
		vgw.cmd, vgw.endpoint = cmd, "http://"+addr
		return nil
	}
	return lastErr
}

// stopVersitygw ends the process started for the tests and removes its data.
func stopVersitygw() {
	if vgw.cmd != nil {
		vgw.cmd.Process.Kill()
	}
	if vgw.dir != "" {
		os.RemoveAll(vgw.dir)
	}
}

// waitPort polls addr until it accepts a connection, the process exits or
// the deadline passes.
func waitPort(addr string, exited <-chan error, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("exited before listening: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("not listening after " + limit.String())
		}
	}
}

// serverKinds are the servers every contract runs against.
var serverKinds = []struct {
	name  string
	start func(testing.TB) *server
}{
	{"gofakes3", newGofakes3},
	{"versitygw", newVersitygw},
}

// forEachServer runs f as a subtest against each server.
func forEachServer(t *testing.T, f func(t *testing.T, s *server)) {
	for _, k := range serverKinds {
		t.Run(k.name, func(t *testing.T) { f(t, k.start(t)) })
	}
}

// keyFiles writes the key pair into files and returns their paths.
func keyFiles(t testing.TB, access, secret string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	a, s := filepath.Join(dir, "access"), filepath.Join(dir, "secret")
	writeFile(t, a, access+"\n")
	writeFile(t, s, secret+"\n")
	return a, s
}

func writeFile(t testing.TB, p, content string) {
	t.Helper()
	// Replace by rename, as the kubelet does when a Secret rotates.
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}
