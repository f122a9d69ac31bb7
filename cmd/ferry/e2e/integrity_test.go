package e2e

// The published tree as others see it, and what neither a volume nor an
// origin may make ferry publish or lose.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	gosync "sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testkit"
)

// nobody is the UID and GID the app runs as in these tests: not ferry's.
const nobody = 65534

// sharedDir returns a fresh directory that every user can traverse (the
// test's own temporary directories are 0700), for a root the app reads
// as another user.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ferry-shared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestEverySourceKindIsReadableByAnotherUser: the app may run as another
// UID (the systemd unit's, a pod's runAsUser): every directory from ROOT
// down and every published file must be readable by it, whatever the
// source kind.
func TestEverySourceKindIsReadableByAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("reading as another user needs root to switch to it")
	}
	kinds := append(originKinds[:len(originKinds):len(originKinds)], struct {
		kind string
		new  func(t testing.TB) origin
	}{"http-file", func(t testing.TB) origin { return newFileOverHTTP(t) }})
	for _, k := range kinds {
		t.Run(k.kind, func(t *testing.T) {
			o := k.new(t)
			o.set(t, 1, nil)
			root := filepath.Join(sharedDir(t), "root")
			p := startFerry(t, procOptions{root: root, once: true, args: o.source("cfg")})
			if code := p.wait(60 * time.Second); code != 0 {
				t.Fatalf("once exited %d:\n%s", code, tail(p.stderr.String(), 10))
			}
			// find exits non-zero when it cannot enter a directory, cat when
			// it cannot read a file.
			cmd := exec.Command("sh", "-c", `cd "$1" && find . -type f | grep -q . && find . \( -type f -exec cat {} + \) >/dev/null`, "sh", filepath.Join(root, "cfg")+"/")
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("uid %d cannot read the published tree: %v\n%s", nobody, err, out)
			}
		})
	}
}

// TestASecondFerryOnTheSameRootExitsOne: it would remove the first one's
// staging at start; it exits 1 instead, naming the lock and its holder.
func TestASecondFerryOnTheSameRootExitsOne(t *testing.T) {
	o := newFileOrigin(t)
	o.set(t, 1, nil)
	root := t.TempDir()
	first := startFerry(t, procOptions{root: root, args: append(o.source("cfg"), "--period", "1h")})
	testkit.Eventually(t, 20*time.Second, "the first ferry to publish", func() bool { return testkit.HTTPStatus("http://"+first.addr+"/readyz") == 200 })
	second := startFerry(t, procOptions{root: root, once: true, args: o.source("cfg")})
	if code := second.wait(20 * time.Second); code != 1 {
		t.Fatalf("second ferry exited %d, want 1:\n%s", code, second.stderr.String())
	}
	msg := second.stderr.String()
	for _, want := range []string{filepath.Join(root, ".ferry", "lock"), "pid " + strconv.Itoa(first.cmd.Process.Pid)} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if first.exited() {
		t.Fatal("the first ferry died")
	}
	if testkit.HTTPStatus("http://"+first.addr+"/readyz") != 200 {
		t.Fatal("the first ferry lost its revision")
	}
}

// TestDamageIsRepairedWithinAPeriod: under run, a deleted link and a
// deleted revision come back within a couple of periods, each with one
// warning and one count in ferry_repairs_total.
func TestDamageIsRepairedWithinAPeriod(t *testing.T) {
	for _, k := range originKinds {
		t.Run(k.kind, func(t *testing.T) {
			o := k.new(t)
			o.set(t, 1, nil)
			root := t.TempDir()
			period := 400 * time.Millisecond
			p := startFerry(t, procOptions{root: root, args: append(o.source("cfg"), "--period", period.String())})
			testkit.Eventually(t, 30*time.Second, "the first publish", func() bool { return testkit.HTTPStatus("http://"+p.addr+"/readyz") == 200 })
			link := filepath.Join(root, "cfg")
			rev := p.status()["cfg"].Revision
			for i, damage := range []func(){
				func() { os.Remove(link) },
				func() { os.RemoveAll(filepath.Join(root, ".ferry", "cfg", rev)) },
			} {
				damage()
				start := time.Now()
				testkit.Eventually(t, 10*time.Second, "the repair", func() bool {
					_, err := checkGeneration(link)
					return err == nil
				})
				// Two periods with their jitter, and the fetch itself.
				if took := time.Since(start); took > 2*period+2*time.Second {
					t.Errorf("damage %d repaired after %s", i, took)
				}
				if gen, err := checkGeneration(link); err != nil || gen != 1 {
					t.Fatalf("after repair: generation %d, %v", gen, err)
				}
				want := float64(i + 1)
				testkit.Eventually(t, 5*time.Second, "the repair counted", func() bool { return p.metric("ferry_repairs_total", "source", "cfg") == want })
			}
			warnings := 0
			for _, r := range p.logs() {
				if r.str("level") == "WARN" && (strings.Contains(r.str("msg"), "damaged") || strings.Contains(r.str("msg"), "linked again")) {
					warnings++
				}
			}
			if warnings != 2 {
				t.Errorf("%d damage warnings, want 2:\n%s", warnings, tail(p.stderr.String(), 20))
			}
		})
	}
}

// TestAGitTreeHoldingDotGitIsRefused: git refuses to check out such a
// tree; ferry publishes nothing of it, with an error naming the entry.
func TestAGitTreeHoldingDotGitIsRefused(t *testing.T) {
	o := newGitOrigin(t)
	o.set(t, 1, nil)
	// git add refuses a .git path: build the commit by hand, as a hostile
	// server would serve it.
	script := `set -e
cfg=$(printf '[core]\n\tfsmonitor = "touch /tmp/pwned"\n' | git hash-object -w --stdin)
inner=$(printf '100644 blob %s\tconfig\n' "$cfg" | git mktree)
app=$(echo 'greeting: hi' | git hash-object -w --stdin)
top=$(printf '040000 tree %s\t.GIT\n100644 blob %s\tapp.yaml\n' "$inner" "$app" | git mktree)
git update-ref refs/heads/main $(git commit-tree -p HEAD -m hostile "$top")`
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = o.dir
	cmd.Env = append(os.Environ(), o.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the hostile commit: %v\n%s", err, out)
	}
	root := t.TempDir()
	p := startFerry(t, procOptions{root: root, once: true, args: o.source("cfg")})
	if code := p.wait(30 * time.Second); code != 1 {
		t.Fatalf("once exited %d, want 1:\n%s", code, p.stderr.String())
	}
	if msg := p.stderr.String(); !strings.Contains(msg, `.GIT`) || !strings.Contains(msg, "never published") {
		t.Errorf("the error does not name the entry:\n%s", msg)
	}
	if _, err := os.Lstat(filepath.Join(root, "cfg")); err == nil {
		t.Error("a link was published")
	}
}

// TestNotModifiedWithoutValidatorNeverPassesForSuccess: an origin that
// answers 304 to a GET that carried no validator (a broken cache, a
// misbehaving S3-compatible store) makes 'once' exit 1 with no link, for
// an S3 object as for an HTTP file.
func TestNotModifiedWithoutValidatorNeverPassesForSuccess(t *testing.T) {
	notModified := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.Header.Get("If-None-Match") == "" && r.Header.Get("If-Modified-Since") == "" {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		http.Error(w, "unexpected", http.StatusTeapot)
	})
	s3o := newS3Origin(t)
	s3o.set(t, 1, nil)
	s3o.setFront(notModified)
	httpo := httptest.NewServer(notModified)
	t.Cleanup(httpo.Close)
	for name, args := range map[string][]string{
		"s3 object": append([]string{"--source", "cfg=s3::" + s3o.srv.URL + "/" + s3o.bucket + "/" + s3o.prefix + "app.yaml"}, s3o.keys...),
		"http file": {"--source", "cfg=" + httpo.URL + "/app.yaml"},
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			p := startFerry(t, procOptions{root: root, once: true, args: append(args, "--once-timeout", "2s")})
			if code := p.wait(30 * time.Second); code != 1 {
				t.Fatalf("once exited %d, want 1:\n%s", code, tail(p.stderr.String(), 10))
			}
			if !strings.Contains(p.stderr.String(), "304") {
				t.Errorf("the error does not say what happened:\n%s", tail(p.stderr.String(), 5))
			}
			if _, err := os.Lstat(filepath.Join(root, "cfg")); err == nil {
				t.Error("a link was published")
			}
		})
	}
}

// TestEndlessListingStopsAtMaxFiles: an S3 endpoint that pages forever
// costs one failed sync, stopped by --max-files, not memory until the
// timeout.
func TestEndlessListingStopsAtMaxFiles(t *testing.T) {
	var pages atomic.Int64
	endless := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page := pages.Add(1)
		w.Header().Set("Content-Type", "application/xml")
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name><Prefix>p/</Prefix><KeyCount>1000</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated><NextContinuationToken>t%d</NextContinuationToken>`, page)
		for i := range 1000 {
			fmt.Fprintf(w, `<Contents><Key>p/%d-%d</Key><ETag>"e"</ETag><Size>1</Size></Contents>`, page, i)
		}
		fmt.Fprint(w, `</ListBucketResult>`)
	}))
	t.Cleanup(endless.Close)
	root := t.TempDir()
	p := startFerry(t, procOptions{root: root, once: true, args: []string{"--source", "cfg=s3::" + endless.URL + "/b/p/",
		"--s3-anonymous", "--max-files", "5000", "--once-timeout", "20s", "--timeout", "20s"}})
	if code := p.wait(60 * time.Second); code != 1 {
		t.Fatalf("once exited %d, want 1:\n%s", code, tail(p.stderr.String(), 10))
	}
	if !strings.Contains(p.stderr.String(), "(max-files)") {
		t.Errorf("the error does not name the limit:\n%s", tail(p.stderr.String(), 5))
	}
	if n := pages.Load(); n > 10 {
		t.Errorf("%d pages listed past a limit of 5 pages' worth of keys", n)
	}
}

// TestSubdirIgnoresCommitsElsewhere: the shipped Prometheus manifest syncs
// git //prod; a commit that changes only other directories must not swap
// the link or reload the app, and one inside it must, once, naming the
// commit.
func TestSubdirIgnoresCommitsElsewhere(t *testing.T) {
	o := newGitOrigin(t)
	o.set(t, 1, map[string]string{"prod/app.yaml": "v: 1\n", "staging/app.yaml": "v: 1\n"})
	var (
		mu     gosync.Mutex
		bodies []map[string]string
	)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]string
		json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		bodies = append(bodies, body)
		mu.Unlock()
	}))
	t.Cleanup(app.Close)
	notified := func() []map[string]string {
		mu.Lock()
		defer mu.Unlock()
		return append([]map[string]string(nil), bodies...)
	}
	root := t.TempDir()
	p := startFerry(t, procOptions{root: root, args: []string{"--source", "cfg=git::" + o.srv.URL + "/config.git//prod?ref=main",
		"--period", "100ms", "--notify-url", app.URL + "/-/reload"}})
	link := filepath.Join(root, "cfg")
	testkit.Eventually(t, 20*time.Second, "the first publish", func() bool { _, err := os.Stat(filepath.Join(link, "app.yaml")); return err == nil })
	first, _ := os.Readlink(link)
	head := func() string {
		out, err := exec.Command("git", "-C", o.dir, "rev-parse", "HEAD").Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}

	o.set(t, 2, map[string]string{"prod/app.yaml": "v: 1\n", "staging/app.yaml": "v: 2\n"})
	elsewhere := head()
	testkit.Eventually(t, 10*time.Second, "the commit elsewhere to be seen", func() bool {
		var st struct {
			Sources []struct {
				OriginRevision string `json:"origin_revision"`
			}
		}
		json.Unmarshal([]byte(p.get("/status")), &st)
		return len(st.Sources) == 1 && st.Sources[0].OriginRevision == elsewhere
	})
	time.Sleep(500 * time.Millisecond) // a few more polls
	if now, _ := os.Readlink(link); now != first {
		t.Fatalf("a commit outside //prod swapped the link: %s -> %s", first, now)
	}
	if n := notified(); len(n) != 0 {
		t.Fatalf("a commit outside //prod notified the app: %v", n)
	}

	o.set(t, 3, map[string]string{"prod/app.yaml": "v: 3\n", "staging/app.yaml": "v: 2\n"})
	inside := head()
	testkit.Eventually(t, 10*time.Second, "one notify", func() bool { return len(notified()) == 1 })
	time.Sleep(300 * time.Millisecond)
	n := notified()
	if len(n) != 1 || n[0]["origin_revision"] != inside || n[0]["revision"] == "" || n[0]["revision"] == inside {
		t.Fatalf("notified %v, want one change naming the tree as revision and commit %s as origin_revision", n, inside)
	}
	if data, _ := os.ReadFile(filepath.Join(link, "app.yaml")); string(data) != "v: 3\n" {
		t.Fatalf("published %q", data)
	}
}
