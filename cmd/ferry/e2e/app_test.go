package e2e

// ferry beside its app: the kubelet's view of a native sidecar and of an
// init container, and notifications while the app is down.

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/demoapp"
	"github.com/ferrysync/ferry/internal/localproc"
	"github.com/ferrysync/ferry/internal/testkit"
)

// writeRevision writes revision i into dir/rev-i and swaps the link
// dir/data to it, as the kubelet updates a ConfigMap volume; it returns
// dir/data, the source. Each revision is whole in the source, so a torn
// read can only be ferry's. (A source edited in place may be caught
// half-written, and ferry would rightly publish what it saw.)
func writeRevision(t *testing.T, dir string, i int) string {
	t.Helper()
	token := fmt.Sprintf("token %d", i)
	files := map[string]string{
		"app.yaml":         fmt.Sprintf("greeting: revision %d\n", i),
		"token-a":          token,
		"nested/token-b":   token,
		"nested/x/token-c": token,
	}
	rev := fmt.Sprintf("rev-%d", i)
	for p, c := range files {
		full := filepath.Join(dir, rev, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "data")
	os.Remove(link + ".tmp")
	if err := os.Symlink(rev, link+".tmp"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(link+".tmp", link); err != nil {
		t.Fatal(err)
	}
	return link
}

// TestEndToEndPlayingTheKubelet starts ferry as a native sidecar would be,
// gates the app on /readyz like a startupProbe, then changes the source
// several times while the app reads the volume continuously.
func TestEndToEndPlayingTheKubelet(t *testing.T) {
	dir, root := t.TempDir(), t.TempDir()
	source := writeRevision(t, dir, 1)
	appAddr := testkit.FreeAddr(t)
	ferry := startFerry(t, procOptions{root: root, args: []string{"--source", "config=" + source,
		"--period", "100ms", "--notify-url", "http://" + appAddr + "/-/reload"}})
	testkit.Eventually(t, 10*time.Second, "/readyz 200", func() bool { return testkit.HTTPStatus("http://"+ferry.addr+"/readyz") == 200 })

	published := ferry.status()
	first := published["config"].Revision
	if len(published) != 1 || first == "" {
		t.Fatalf("/status: %+v", published)
	}

	// Only now does the kubelet start the app.
	app := startApp(t, appAddr, filepath.Join(root, "config"), time.Millisecond)

	const changes = 5
	for i := 2; i <= changes+1; i++ {
		writeRevision(t, dir, i)
		want := fmt.Sprintf("revision %d", i)
		testkit.Eventually(t, 10*time.Second, "the app to read "+want, func() bool {
			st, err := demoapp.Get(appAddr)
			return err == nil && st.Greeting == want
		})
	}
	st, _ := demoapp.Get(appAddr)
	// Each change was seen through one reload.
	if st.Reloads != changes {
		t.Fatalf("app reloaded %d times for %d changes", st.Reloads, changes)
	}
	for _, rev := range st.Revisions {
		if rev == first {
			t.Fatalf("the first publish (%s) was notified: the app had not started yet", first)
		}
	}
	if st.ReadErrs != 0 {
		t.Fatalf("app saw %d read errors in %d reads; first: %s", st.ReadErrs, st.Reads, st.FirstErr)
	}
	if testkit.HTTPStatus("http://"+ferry.addr+"/healthz") != 200 {
		t.Fatal("/healthz not 200 while syncing")
	}

	// Pod shutdown: the app first, then the sidecar.
	if code, _, err := localproc.Terminate(app, 10*time.Second); err != nil || code != 0 {
		t.Fatalf("app exit %d, %v", code, err)
	}
	code, took := ferry.term()
	if code != 0 || took > 2*time.Second {
		t.Fatalf("ferry exit %d after %s on SIGTERM, want 0 within 2s\n%s", code, took, ferry.stderr.String())
	}
	if strings.Contains(ferry.stderr.String(), `"level":"ERROR"`) {
		t.Errorf("errors logged:\n%s", ferry.stderr.String())
	}
	t.Logf("%d changes, %d reloads, %d full-tree reads, 0 errors", changes, st.Reloads, st.Reads)
}

// TestOnceAsInitContainer: exit 0 with the revision on disk, or 1 when the
// source is missing, before the app would start.
func TestOnceAsInitContainer(t *testing.T) {
	dir, root := t.TempDir(), t.TempDir()
	source := writeRevision(t, dir, 1)
	if code, stdout, stderr := runToEnd(t, "once", "--source", "current="+source, "--root", root); code != 0 {
		t.Fatalf("ferry once: exit %d\n%s%s", code, stdout, stderr)
	}
	if data, err := os.ReadFile(filepath.Join(root, "current", "app.yaml")); err != nil || !strings.Contains(string(data), "revision 1") {
		t.Fatalf("after once: %q, %v", data, err)
	}
	code, stdout, stderr := runToEnd(t, "once", "--source", filepath.Join(source, "missing"), "--root", t.TempDir(), "--once-timeout", "200ms")
	if code != 1 {
		t.Fatalf("once on a missing source: exit %d, want 1\n%s%s", code, stdout, stderr)
	}
}

// TestAppDownThenBackGetsExactlyOneNotifyOfTheNewest publishes three
// revisions while the app's reload endpoint refuses connections (the port
// is closed, as while the app restarts), keeps it down a while longer,
// then brings it back: the app must get exactly one notification, of the
// newest revision. The outage is seconds: --notify-max-elapsed (5m by
// default, 0 for never) bounds how long a change is retried, and
// TestNotifyGivesUpAfterNotifyMaxElapsed shows that bound at work.
func TestAppDownThenBackGetsExactlyOneNotifyOfTheNewest(t *testing.T) {
	t.Parallel()
	o := newFileOrigin(t)
	appAddr := testkit.FreeAddr(t) // nothing listens there yet: connection refused
	p, link := startAtGen1(t, o, "--period", "100ms", "--notify-url", "http://"+appAddr+"/-/reload", "--notify-timeout", "1s")

	down := time.Now()
	for gen := 2; gen <= 4; gen++ {
		o.set(t, gen, nil)
		waitForGen(t, 10*time.Second, link, gen)
		time.Sleep(300 * time.Millisecond) // a few refused attempts each
	}
	newest := p.status()["cfg"].Revision
	time.Sleep(4*time.Second - time.Since(down))

	var (
		mu    gosync.Mutex
		got   []map[string]string
		first time.Time
	)
	ln, err := net.Listen("tcp", appAddr)
	if err != nil {
		t.Fatalf("the app cannot take its port back: %v", err)
	}
	app := &http.Server{ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]string
		json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		got = append(got, body)
		if first.IsZero() {
			first = time.Now()
		}
		mu.Unlock()
	})}
	go app.Serve(ln)
	defer app.Close()
	back := time.Now()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	testkit.Eventually(t, 30*time.Second, "a notification once the app is back", func() bool { return count() > 0 })
	// Any second delivery would come within the next backoff steps.
	time.Sleep(3 * time.Second)

	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("the app got %d notifications, want exactly 1: %v", len(got), got)
	}
	if got[0]["revision"] != newest || got[0]["source"] != "cfg" || got[0]["path"] != link {
		t.Fatalf("the app was told %v; want the newest revision %s of cfg at %s", got[0], newest, link)
	}
	target := "http://" + appAddr + "/-/reload"
	dropped := p.metric("ferry_notify_total", "target", target, "result", "dropped")
	retries := p.metric("ferry_notify_total", "target", target, "result", "retry")
	ok := p.metric("ferry_notify_total", "target", target, "result", "ok")
	failed := p.metric("ferry_notify_total", "target", target, "result", "failed")
	if ok != 1 || dropped < 2 || retries < 1 || failed != 0 {
		t.Errorf("ferry_notify_total: ok %v, dropped %v, retry %v, failed %v; want 1, >= 2, >= 1, 0", ok, dropped, retries, failed)
	}
	t.Logf("app down %s, 3 revisions published meanwhile; delivered once, %s after the app came back (%v retries, %v superseded)",
		back.Sub(down).Round(time.Millisecond), first.Sub(back).Round(time.Millisecond), retries, dropped)
}

// With --notify-max-elapsed shorter than the outage, the change is given up
// (counted as failed) and the returning app hears nothing of it.
func TestNotifyGivesUpAfterNotifyMaxElapsed(t *testing.T) {
	t.Parallel()
	o := newFileOrigin(t)
	appAddr := testkit.FreeAddr(t)
	p, link := startAtGen1(t, o, "--period", "100ms", "--notify-url", "http://"+appAddr+"/-/reload", "--notify-max-elapsed", "1s")
	o.set(t, 2, nil)
	waitForGen(t, 10*time.Second, link, 2)
	target := "http://" + appAddr + "/-/reload"
	testkit.Eventually(t, 10*time.Second, "the change given up", func() bool {
		return p.metric("ferry_notify_total", "target", target, "result", "failed") >= 1
	})

	var mu gosync.Mutex
	calls := 0
	ln, err := net.Listen("tcp", appAddr)
	if err != nil {
		t.Fatalf("the app cannot take its port: %v", err)
	}
	app := &http.Server{ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
	})}
	go app.Serve(ln)
	defer app.Close()
	time.Sleep(2 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	if calls != 0 {
		t.Fatalf("the app got %d notifications of a change given up after 1s", calls)
	}
}
