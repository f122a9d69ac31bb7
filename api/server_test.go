package api_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	ossignal "os/signal"
	"path/filepath"
	"strconv"
	"strings"
	gosync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/api"
	"github.com/ferrysync/ferry/internal/localproc"
)

// serveEnv turns the test binary into a real endpoint server limited to
// the number of file descriptors it holds (soft and hard limit, which
// the Go runtime cannot raise again), so that a test can hold thousands
// of sockets against a server whose descriptor limit is its own.
const serveEnv = "FERRY_API_TEST_SERVE_NOFILE"

func TestMain(m *testing.M) {
	if v := os.Getenv(serveEnv); v != "" {
		os.Exit(serveUnderLimit(v))
	}
	os.Exit(m.Run())
}

// serveUnderLimit serves the endpoints on 127.0.0.1 under RLIMIT_NOFILE
// nofile, prints the address on stdout and logs JSON on stderr until
// SIGTERM.
func serveUnderLimit(nofile string) int {
	n, err := strconv.ParseUint(nofile, 10, 64)
	if err == nil {
		err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: n, Max: n})
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "RLIMIT_NOFILE %s: %v\n", nofile, err)
		return 2
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println(ln.Addr())
	ctx, stop := ossignal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := api.Serve(ctx, ln, waitingSyncer{}, api.Options{Logger: log}); err != nil {
		log.Error("serve", "error", err)
		return 1
	}
	return 0
}

// serverProc is a test binary serving the endpoints in a process of its own.
type serverProc struct {
	addr    string
	pid     int
	logFile string
}

// logs is what the server has logged so far.
func (p *serverProc) logs() string {
	data, _ := os.ReadFile(p.logFile)
	return string(data)
}

func startServerProc(t *testing.T, nofile int) *serverProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveEnv+"="+strconv.Itoa(nofile))
	logFile := filepath.Join(t.TempDir(), "server.log")
	logs, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close() // the server holds its own copy
	cmd.Stderr = logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serverProc{pid: cmd.Process.Pid, logFile: logFile}
	t.Cleanup(func() {
		code, _, err := localproc.Terminate(cmd, 5*time.Second)
		if err != nil || code != 0 {
			t.Errorf("server exit %d, %v; its log:\n%s", code, err, tail(p.logs(), 2000))
		}
	})
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("server did not say its address: %v\n%s", err, p.logs())
	}
	p.addr = strings.TrimSpace(addr)
	return p
}

// openFDs and rssKiB read the server's use of the two resources idle
// connections cost.
func (p *serverProc) openFDs() int {
	ents, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(p.pid), "fd"))
	return len(ents)
}

func (p *serverProc) rssKiB() int {
	data, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.pid), "status"))
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// probe is a kubelet's httpGet probe: a fresh connection, no keep-alive,
// a one-second timeout.
func probe(addr string) (int, time.Duration, error) {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	resp, err := client.Get("http://" + addr + api.HealthPath)
	if err != nil {
		return 0, time.Since(start), err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(start), nil
}

// roundTrip sends one keep-alive request on c and reads its answer,
// leaving c open and idle: a client's connection pool.
func roundTrip(c net.Conn) error {
	c.SetDeadline(time.Now().Add(time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: ferry\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return err
}

// TestProbesAnswerPastThousandsOfConnections holds 2,000 connections to a
// server process whose descriptor limit is far lower, then probes
// /healthz as the kubelet does: probes must answer within a second, and
// never three in a row fail, or the kubelet would restart a healthy
// sidecar. The connections are
// idle keep-alive ones (a client pool) or ones that sent half a header
// and stopped (a slow-loris).
func TestProbesAnswerPastThousandsOfConnections(t *testing.T) {
	t.Parallel() // beside TestSlowClientsAreCutOff, which mostly waits
	const conns = 2000
	for _, tc := range []struct {
		name      string
		nofile    int
		keepAlive bool
	}{
		{"idle keep-alive, 1024 fds", 1024, true},
		{"idle keep-alive, 128 fds", 128, true},
		{"half a header, 1024 fds", 1024, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startServerProc(t, tc.nofile)
			rssBefore := p.rssKiB()
			held := make([]net.Conn, 0, conns)
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			answered, stalled := 0, false
			for i := range conns {
				c, err := net.DialTimeout("tcp", p.addr, time.Second)
				if err != nil {
					t.Fatalf("connection %d: %v", i, err)
				}
				held = append(held, c)
				switch {
				case !tc.keepAlive:
					io.WriteString(c, "GET /healthz HTTP/1.1\r\nHo")
				case stalled: // the server stopped answering: just hold
				case roundTrip(c) == nil:
					answered++
				default:
					stalled = true
				}
			}
			// The kubelet restarts a container after failureThreshold (3)
			// probes in a row fail; one slow probe on a loaded machine is
			// what the threshold is for.
			failedInARow := 0
			for i := range 5 {
				code, took, err := probe(p.addr)
				if err != nil || code != http.StatusOK {
					failedInARow++
					t.Logf("probe %d failed: %d, %v (after %s)", i, code, err, took.Round(time.Millisecond))
					if failedInARow == 3 {
						t.Fatalf("3 probes in a row failed with %d connections held (%d answered): %d, %v (after %s); server fds %d, log:\n%s",
							conns, answered, code, err, took.Round(time.Millisecond), p.openFDs(), tail(p.logs(), 2000))
					}
					continue
				}
				failedInARow = 0
				t.Logf("probe %d: %s", i, took.Round(time.Microsecond))
			}
			if strings.Contains(p.logs(), "too many open files") {
				t.Errorf("the server ran out of descriptors:\n%s", tail(p.logs(), 2000))
			}
			t.Logf("%d connections (%d answered): server holds %d fds, RSS %d KiB (%d before)",
				conns, answered, p.openFDs(), p.rssKiB(), rssBefore)
		})
	}
}

// TestSlowClientsAreCutOff: a client that sends its request a byte a
// second holds a connection and a goroutine for as long as it likes
// unless the server bounds the time a request may take to arrive.
func TestSlowClientsAreCutOff(t *testing.T) {
	t.Parallel() // it mostly waits
	addr := serve(t, fakeSyncer{}, api.Options{})
	for _, tc := range []struct {
		name, head, trickle string
		within              time.Duration
	}{
		{"header a byte a second", "", "GET /healthz HTTP/1.1\r\nHost: ferry\r\n\r\n", 4500 * time.Millisecond},
		{"body a byte a second", "POST /sync HTTP/1.1\r\nHost: ferry\r\nContent-Length: 20\r\n\r\n", strings.Repeat("x", 20), 6500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			io.WriteString(c, tc.head)
			closed := make(chan struct{})
			go func() { io.Copy(io.Discard, c); close(closed) }()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			deadline := time.After(tc.within)
			for sent := 0; ; {
				select {
				case <-closed:
					t.Logf("cut off after %s, %d of %d bytes sent", time.Since(start).Round(time.Millisecond), sent, len(tc.trickle))
					return
				case <-deadline:
					t.Fatalf("still connected after %s, %d of %d bytes sent", tc.within, sent, len(tc.trickle))
				case <-tick.C:
					if sent < len(tc.trickle) {
						io.WriteString(c, tc.trickle[sent:sent+1])
						sent++
					}
				}
			}
		})
	}
}

// serve runs api.Serve on a loopback port for the test's lifetime.
func serve(t *testing.T, s api.Syncer, o api.Options) string {
	t.Helper()
	addr, _ := serveUntil(t, s, o)
	return addr
}

// serveUntil is serve with a stop that returns once Serve has returned.
func serveUntil(t *testing.T, s api.Syncer, o api.Options) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.Serve(ctx, ln, s, o) }()
	stop = gosync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
