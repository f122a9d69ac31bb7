package e2e

import (
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"path/filepath"
	gosync "sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testkit"
)

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
	o.set(t, 1, nil)
	root := t.TempDir()
	link := filepath.Join(root, "cfg")
	appAddr := testkit.FreeAddr(t) // nothing listens there yet: connection refused
	p := startFerry(t, procOptions{root: root, args: append(o.source("cfg"),
		"--period", "100ms", "--notify-url", "http://"+appAddr+"/-/reload", "--notify-timeout", "1s")})
	testkit.Eventually(t, 20*time.Second, "gen 1", func() bool { g, err := checkGeneration(link); return err == nil && g == 1 })

	down := time.Now()
	for gen := 2; gen <= 4; gen++ {
		o.set(t, gen, nil)
		testkit.Eventually(t, 10*time.Second, "the next generation", func() bool { g, err := checkGeneration(link); return err == nil && g == gen })
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
	o.set(t, 1, nil)
	root := t.TempDir()
	link := filepath.Join(root, "cfg")
	appAddr := testkit.FreeAddr(t)
	p := startFerry(t, procOptions{root: root, args: append(o.source("cfg"),
		"--period", "100ms", "--notify-url", "http://"+appAddr+"/-/reload", "--notify-max-elapsed", "1s")})
	testkit.Eventually(t, 20*time.Second, "gen 1", func() bool { g, err := checkGeneration(link); return err == nil && g == 1 })
	o.set(t, 2, nil)
	testkit.Eventually(t, 10*time.Second, "gen 2", func() bool { g, err := checkGeneration(link); return err == nil && g == 2 })
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
