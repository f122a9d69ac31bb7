package oci

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"golang.org/x/crypto/bcrypt"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/sourcetest"
	"github.com/ferrysync/ferry/internal/testkit"
)

// distribution is a real registry, Debian's docker-registry
// (docker/distribution 2.8), on loopback with htpasswd auth.
type distribution struct {
	*testRegistry // host and auth for pushing; the counters are unused
	cmd           *exec.Cmd
	log           *syncBuffer
	passwordFile  string
}

// syncBuffer is the registry's stdout: its access log, a line a request.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// requests returns the request lines logged since the last call.
func (b *syncBuffer) requests() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, l := range strings.Split(b.buf.String(), "\n") {
		if _, req, ok := strings.Cut(l, `"`); ok && strings.Contains(req, " /v2/") {
			req, _, _ = strings.Cut(req, ` HTTP/`)
			out = append(out, req)
		}
	}
	b.buf.Reset()
	return out
}

func startDistribution(t *testing.T) *distribution {
	bin := testkit.Tool(t, "docker-registry", "docker-registry")
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("ci:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	config := fmt.Sprintf(`version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
auth:
  htpasswd:
    realm: ferry-test
    path: %s
`, filepath.Join(dir, "data"), addr, htpasswd)
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &distribution{
		testRegistry: &testRegistry{host: addr, auth: []authn.Authenticator{&authn.Basic{Username: "ci", Password: "s3cret"}}},
		log:          &syncBuffer{},
		passwordFile: secretFile(t, "s3cret\n"),
	}
	var stderr syncBuffer
	d.cmd = exec.Command(bin, "serve", cfg)
	d.cmd.Stdout, d.cmd.Stderr = d.log, &stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.stop)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry did not answer on %s: %v; its log: %s", addr, err, stderr.buf.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.log.requests()
	return d
}

func (d *distribution) stop() {
	if d.cmd.Process != nil && d.cmd.ProcessState == nil {
		d.cmd.Process.Kill()
		d.cmd.Wait()
	}
}

func (d *distribution) options() Options {
	return Options{Username: "ci", PasswordFile: d.passwordFile}
}

// realOrigin is the contract's origin on the real registry.
type realOrigin struct{ d *distribution }

func (o *realOrigin) Source(t *testing.T, stateDir string) fetch.Source {
	return source(t, "oci::http://"+o.d.host+"/team/conf:stable", o.d.options(), stateDir)
}

func (o *realOrigin) Set(t *testing.T, files map[string]string) {
	o.d.pushFiles(t, "team/conf:stable", files)
}

func (o *realOrigin) Break(t *testing.T) { o.d.stop() }

func (o *realOrigin) SetEscape(t *testing.T) string {
	o.d.pushFiles(t, "team/conf:stable", map[string]string{"ok.yaml": "x\n", "../../etc/cron.d/evil": "* * * * * root true\n"})
	return "../../etc/cron.d/evil"
}

func TestDistributionContract(t *testing.T) {
	sourcetest.Run(t, &realOrigin{d: startDistribution(t)})
}

// TestDistributionIdlePoll counts, in the registry's own access log, the
// requests of idle polls: one HEAD each. A tag moved, and a range over
// tags, are seen too; anonymous access is refused for good.
func TestDistributionIdlePoll(t *testing.T) {
	d := startDistribution(t)
	d.pushFiles(t, "conf:1.0.0", map[string]string{"v": "1.0.0"})
	d.pushFiles(t, "conf:1.1.0", map[string]string{"v": "1.1.0"})
	d.pushFiles(t, "conf:2.0.0", map[string]string{"v": "2.0.0"})
	f := newFixture(t, "oci::http://"+d.host+"/conf:1.0.0", d.options())
	if res := f.sync(t); res.Err != nil {
		t.Fatal(res.Err)
	}
	time.Sleep(200 * time.Millisecond) // the access log is written after the reply
	d.log.requests()
	for range 3 {
		if res := f.sync(t); res.Err != nil || res.Rev != res.Prev {
			t.Fatalf("idle poll: %+v", res)
		}
	}
	waitRequests(t, d, []string{"HEAD /v2/conf/manifests/1.0.0", "HEAD /v2/conf/manifests/1.0.0", "HEAD /v2/conf/manifests/1.0.0"})

	f = newFixture(t, "oci::http://"+d.host+"/conf?tag=semver:^1", d.options())
	if res := f.sync(t); res.Err != nil {
		t.Fatal(res.Err)
	}
	sourcetest.AssertTree(t, f.tree(t), map[string]string{"v": "1.1.0"})
	d.pushFiles(t, "conf:1.2.0", map[string]string{"v": "1.2.0"})
	if res := f.sync(t); res.Err != nil || res.Rev == res.Prev {
		t.Fatalf("a new tag in range: %+v", res)
	}
	sourcetest.AssertTree(t, f.tree(t), map[string]string{"v": "1.2.0"})

	f = newFixture(t, "oci::http://"+d.host+"/conf:1.0.0", Options{})
	if res := f.sync(t); res.Err == nil || !fetch.IsPermanent(res.Err) {
		t.Fatalf("anonymous pull from an htpasswd registry: %v", res.Err)
	}
}

// waitRequests waits for the access log to hold want, and only that.
func waitRequests(t *testing.T, d *distribution, want []string) {
	t.Helper()
	var got []string
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		got = append(got, d.log.requests()...)
		if len(got) >= len(want) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	got = append(got, d.log.requests()...)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the registry logged %q, want %q", got, want)
	}
}
