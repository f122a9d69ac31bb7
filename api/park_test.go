package api_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/api"
	"github.com/ferrysync/ferry/internal/testkit"
	"github.com/ferrysync/ferry/sync"
)

// waitingSyncer is fakeSyncer whose long polls and event streams wait
// for their request to end, as the sync loop's do when nothing changes.
type waitingSyncer struct{ fakeSyncer }

func (waitingSyncer) WaitChange(ctx context.Context, name, rev string) (sync.SourceStatus, bool, error) {
	<-ctx.Done()
	return sync.SourceStatus{Name: name, Revision: rev}, false, nil
}

func (waitingSyncer) Events(ctx context.Context, _ uint64) []sync.Event {
	<-ctx.Done()
	return nil
}

// parkPoll opens a connection and sends a long poll on it for anything
// but revision r1, waiting up to a minute.
func parkPoll(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(c, "GET /v1/sources/cfg?wait=60s HTTP/1.1\r\nHost: ferry\r\nIf-None-Match: \"r1\"\r\n\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// parkPolls parks n long polls, a hundred at a time: a burst of fresh
// connections larger than the cap on connections would see its oldest
// closed before the server has read them.
func parkPolls(t testing.TB, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for len(conns) < n {
		for range min(100, n-len(conns)) {
			c, err := parkPoll(addr)
			if err != nil {
				t.Fatalf("long poll %d: %v", len(conns), err)
			}
			conns = append(conns, c)
		}
		waitParked(t, addr, len(conns))
	}
	return conns
}

// parkedNow reads the count of parked requests from the server's /metrics.
func parkedNow(addr string) float64 {
	resp, err := http.Get("http://" + addr + api.MetricsPath)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "ferry_api_parked_requests "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return n
		}
	}
	return -1
}

// waitParked waits up to 10s until the server at addr holds n parked
// requests.
func waitParked(t testing.TB, addr string, n int) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, fmt.Sprintf("%d parked requests", n), func() bool { return parkedNow(addr) == float64(n) })
}

// TestParkedRequestsHaveACapOfTheirOwn fills a server process limited to
// 1,024 descriptors (256 connections, 256 parked requests) with parked
// long polls, then floods it with idle keep-alive connections. Past the
// parked cap a long poll or an event stream is refused with 503 and
// Retry-After, while a plain request is served; probes still answer; and
// no parked long poll is closed to make room.
func TestParkedRequestsHaveACapOfTheirOwn(t *testing.T) {
	t.Parallel() // beside TestSlowClientsAreCutOff, which mostly waits
	const (
		nofile    = 1024
		maxParked = nofile / 4
		idle      = 1000
	)
	p := startServerProc(t, nofile)
	polls := parkPolls(t, p.addr, maxParked)

	for _, path := range []string{"/v1/sources/cfg?wait=60s", api.EventsPath} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+p.addr+path, nil)
		req.Header.Set("If-None-Match", `"r1"`)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s past the parked cap: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("GET %s past the parked cap: %d, Retry-After %q; want 503 with Retry-After", path, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	if code, _, err := probe(p.addr); err != nil || code != http.StatusOK {
		t.Fatalf("a probe beside %d parked long polls: %d, %v", maxParked, code, err)
	}
	resp, err := http.Get("http://" + p.addr + "/v1/sources/cfg")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/sources/cfg without a wait beside %d parked long polls: %d", maxParked, resp.StatusCode)
	}

	held := make([]net.Conn, 0, idle)
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range idle {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		held = append(held, c)
		roundTrip(c) // once the cap is reached, the older ones are closed
	}
	failedInARow := 0
	for i := range 5 {
		code, took, err := probe(p.addr)
		if err == nil && code == http.StatusOK {
			failedInARow = 0
			continue
		}
		failedInARow++
		t.Logf("probe %d failed: %d, %v (after %s)", i, code, err, took.Round(time.Millisecond))
		if failedInARow == 3 {
			t.Fatalf("3 probes in a row failed beside %d parked long polls and %d idle connections; log:\n%s", maxParked, idle, tail(p.logs(), 2000))
		}
	}
	if n := parkedNow(p.addr); n != maxParked {
		t.Fatalf("%v parked after the flood of idle connections, want %d", n, maxParked)
	}

	for i, c := range polls {
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("parked long poll %d after the flood: %v; want it still waiting", i, err)
		}
	}
	if logs := p.logs(); !strings.Contains(logs, "too many long polls and event streams") || strings.Contains(logs, "too many open files") {
		t.Errorf("want one refusal logged, and never a lack of descriptors:\n%s", tail(logs, 2000))
	}
}

// BenchmarkParkedLongPoll reports what one parked long poll holds in the
// server: heap and goroutine stacks, measured in-process against 250 (the client's sockets add a few hundred bytes).
func BenchmarkParkedLongPoll(b *testing.B) {
	const polls = 250 // within the parked cap of a 1,024-descriptor limit
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.Serve(ctx, ln, waitingSyncer{}, api.Options{}) }()
	defer func() { cancel(); <-done }()
	addr := ln.Addr().String()
	var ms runtime.MemStats
	measure := func() (heap, stack uint64) {
		// Twice: what closed connections gave back to net/http's pools
		// survives one collection.
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse, ms.StackInuse
	}
	for b.Loop() {
		waitParked(b, addr, 0)
		h0, s0 := measure()
		g0 := runtime.NumGoroutine()
		conns := parkPolls(b, addr, polls)
		h1, s1 := measure()
		b.ReportMetric(float64(h1-h0)/polls, "heap-B/poll")
		b.ReportMetric(float64(s1-s0)/polls, "stack-B/poll")
		b.ReportMetric(float64(runtime.NumGoroutine()-g0)/polls, "goroutines/poll")
		for _, c := range conns {
			c.Close()
		}
	}
}
