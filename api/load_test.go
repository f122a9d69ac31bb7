package api_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/api"
	"github.com/ferrysync/ferry/fetch"
	fhttp "github.com/ferrysync/ferry/fetch/http"
	"github.com/ferrysync/ferry/internal/testkit"
	"github.com/ferrysync/ferry/sync"
)

// TestSyncTriggerStormCoalescesAndLeaksNothing fires 1,000 concurrent
// POST /sync from loopback at a real Syncer whose HTTP source is in the
// middle of a sync (its origin holds the request), as a webhook storm
// would. Triggers that arrive during a sync coalesce into one more: the
// origin must see at most two requests for the whole storm. Afterwards the
// goroutines must come back to what they were, and to the starting count
// once everything is shut down.
func TestSyncTriggerStormCoalescesAndLeaksNothing(t *testing.T) {
	const storm = 1000
	baseline := runtime.NumGoroutine()

	var (
		requests atomic.Int64
		gateMu   gosync.Mutex
		gate     chan struct{} // non-nil: requests wait for it to close
	)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		gateMu.Lock()
		g := gate
		gateMu.Unlock()
		if g != nil {
			<-g
		}
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, "greeting: hi\n")
	}))

	root := t.TempDir()
	store, err := sync.OpenStore(root, fetch.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := fetch.Parse(origin.URL + "/app.yaml")
	src, err := fhttp.New(u, fhttp.Options{}, fetch.Env{StateDir: sync.StateDir(root, "cfg")})
	if err != nil {
		t.Fatal(err)
	}
	s, err := sync.New(sync.Config{Store: store, Sources: []sync.Source{{Name: "cfg", URL: u.String(), Kind: u.Kind, Backend: src}},
		Period: time.Hour, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	srv := httptest.NewServer(api.Handler(s, api.Options{}))
	testkit.Eventually(t, 10*time.Second, "the first sync", func() bool { ok, _ := s.Ready(); return ok })
	testkit.Eventually(t, 10*time.Second, "the first sync to settle", func() bool { return s.Status()[0].LastSuccess != nil })
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: storm}}
	post := func() int {
		resp, err := client.Post(srv.URL+"/sync", "text/plain", nil)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(); code != http.StatusAccepted { // warm the client, and one sync
		t.Fatalf("POST /sync: %d", code)
	}
	testkit.Eventually(t, 10*time.Second, "the warm-up sync", func() bool { return requests.Load() == 2 })
	client.CloseIdleConnections()
	settle(t, "before the storm", func() int { return runtime.NumGoroutine() }, -1)
	before := runtime.NumGoroutine()

	// The storm: the first trigger starts a sync that the origin holds
	// until every trigger has been answered.
	start := requests.Load()
	g := make(chan struct{})
	gateMu.Lock()
	gate = g
	gateMu.Unlock()
	var (
		wg       gosync.WaitGroup
		accepted atomic.Int64
		ready    = make(chan struct{})
	)
	for range storm {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-ready
			if post() == http.StatusAccepted {
				accepted.Add(1)
			}
		}()
	}
	t0 := time.Now()
	close(ready)
	wg.Wait()
	took := time.Since(t0)
	gateMu.Lock()
	gate = nil
	gateMu.Unlock()
	close(g)
	if accepted.Load() != storm {
		t.Fatalf("%d of %d POST /sync accepted", accepted.Load(), storm)
	}
	// Let the held sync and the one queued behind it finish, and check that
	// nothing more comes.
	testkit.Eventually(t, 10*time.Second, "the storm's syncs", func() bool { return requests.Load()-start >= 1 })
	time.Sleep(500 * time.Millisecond)
	syncs := requests.Load() - start
	if syncs > 2 {
		t.Fatalf("%d POST /sync caused %d origin requests; want at most 2", storm, syncs)
	}
	client.CloseIdleConnections()
	after := settle(t, "after the storm", func() int { return runtime.NumGoroutine() }, before)
	if after > before {
		t.Fatalf("goroutines: %d before the storm, %d after", before, after)
	}

	// Shut everything down: back to the count before anything started.
	srv.Close()
	cancel()
	<-done
	origin.Close()
	final := settle(t, "after shutdown", func() int { return runtime.NumGoroutine() }, baseline)
	if final > baseline {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d at the start, %d after shutdown\n%s", baseline, final, buf[:runtime.Stack(buf, true)])
	}
	t.Logf("%d concurrent POST /sync in %s: %d origin requests; goroutines %d before, %d after the storm; %d at start, %d after shutdown",
		storm, took.Round(time.Millisecond), syncs, before, after, baseline, final)
}

// settle waits up to 5s for n() to drop to want (or, with want < 0, to
// stop changing), and returns its last value.
func settle(t *testing.T, what string, n func() int, want int) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	last, stable := n(), 0
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		cur := n()
		if want >= 0 && cur <= want {
			return cur
		}
		if cur == last {
			stable++
		} else {
			stable = 0
		}
		last = cur
		if want < 0 && stable >= 10 {
			return cur
		}
	}
	return last
}
