// Package e2e runs the ferry binary as a pod, an init container or an
// operator would, against real origins of every source kind, and attacks
// it: random kills, a full volume, faulty networks, hostile servers and
// leaking secrets. Test files only; the command line's in-process tests
// are package main's.
package e2e

// The harness: the binaries built once per test binary, a handle on a
// running ferry (its logs, /status, /metrics, its volume), and the demo
// app started as the kubelet would.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/demoapp"
	"github.com/ferrysync/ferry/internal/testkit"
)

// fsizeEnv makes the test binary a launcher: it sets RLIMIT_FSIZE to the
// value, then execs its arguments. Go has no rlimit in exec.Cmd, and this
// does not depend on util-linux's prlimit being installed.
const fsizeEnv = "FERRY_TEST_EXEC_FSIZE"

func TestMain(m *testing.M) {
	if v := os.Getenv(fsizeEnv); v != "" {
		execWithFileSizeLimit(v, os.Args[1:])
		return
	}
	code := m.Run()
	bins.Close()
	os.Exit(code)
}

// execWithFileSizeLimit replaces the process with args under
// RLIMIT_FSIZE=limit. The limit survives exec; SIGXFSZ does not kill a Go
// program (the runtime ignores it unless notified), so writes past the
// limit fail with EFBIG.
func execWithFileSizeLimit(limit string, args []string) {
	n, err := strconv.ParseUint(limit, 10, 64)
	if err != nil || len(args) == 0 {
		fmt.Fprintf(os.Stderr, "launcher: bad %s=%q or no command\n", fsizeEnv, limit)
		os.Exit(120)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
		fmt.Fprintf(os.Stderr, "launcher: setrlimit: %v\n", err)
		os.Exit(120)
	}
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, fsizeEnv+"=") {
			env = append(env, e)
		}
	}
	err = syscall.Exec(args[0], args, env)
	fmt.Fprintf(os.Stderr, "launcher: exec %s: %v\n", args[0], err)
	os.Exit(120)
}

// bins builds ferry and the demo app once for the whole test binary.
var bins testkit.Binaries

// The packages of the binaries the tests run.
const (
	ferryPkg = "github.com/ferrysync/ferry/cmd/ferry"
	appPkg   = "github.com/ferrysync/ferry/examples/demo-app"
)

// ferryProc is one running 'ferry run' (or 'once') process.
type ferryProc struct {
	t      testing.TB
	cmd    *exec.Cmd
	addr   string // --http-addr, "" when off
	root   string
	stdout *testkit.LogBuffer
	stderr *testkit.LogBuffer
	done   chan struct{}
	err    error // set when done is closed
}

// procOptions say how to start ferry.
type procOptions struct {
	args []string // after "run"/"once"; --root and --http-addr are added
	root string
	once bool
	// fsize, when positive, runs ferry under RLIMIT_FSIZE of that many bytes.
	fsize int64
}

// startFerry starts the ferry binary and returns once it is running; with
// endpoints, once /healthz answers.
func startFerry(t testing.TB, o procOptions) *ferryProc {
	t.Helper()
	bin := bins.Path(t, ferryPkg)
	cmdName := "run"
	if o.once {
		cmdName = "once"
	}
	args := append([]string{cmdName, "--root", o.root, "--log-format", "json"}, o.args...)
	p := &ferryProc{t: t, root: o.root, stdout: &testkit.LogBuffer{}, stderr: &testkit.LogBuffer{}, done: make(chan struct{})}
	if !o.once {
		p.addr = testkit.FreeAddr(t)
		args = append(args, "--http-addr", p.addr)
	}
	if o.fsize > 0 {
		p.cmd = exec.Command(os.Args[0], append([]string{bin}, args...)...)
		p.cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", fsizeEnv, o.fsize))
	} else {
		p.cmd = exec.Command(bin, args...)
		p.cmd.Env = os.Environ()
	}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	if p.addr != "" {
		deadline := time.Now().Add(20 * time.Second)
		for testkit.HTTPStatus("http://"+p.addr+"/healthz") == 0 {
			select {
			case <-p.done:
				t.Fatalf("ferry exited at start: %v\n%s", p.err, p.stderr.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("ferry endpoints not up within 20s\n%s", p.stderr.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return p
}

// runToEnd runs the ferry binary with args until it exits and returns its
// exit code and output. It is bounded by 20s: a configuration accepted by
// mistake must fail the test, not hang it.
func runToEnd(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	bin := bins.Path(t, ferryPkg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errs strings.Builder
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errs
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("ferry still running after 20s\n%s", testkit.Clip(errs.String(), 2000))
	}
	if code = exitCode(err); code < 0 {
		t.Fatal(err)
	}
	return code, out.String(), errs.String()
}

// exited reports whether the process has ended.
func (p *ferryProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits; it fails the test when the process had
// ended by itself.
func (p *ferryProc) kill() {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	var exit *exec.ExitError
	if !errors.As(p.err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		p.t.Fatalf("ferry ended on its own before SIGKILL: %v\n%s", p.err, tail(p.stderr.String(), 20))
	}
}

// term sends SIGTERM and returns the exit code and how long the exit
// took; it fails the test when ferry is still running 10s later.
func (p *ferryProc) term() (int, time.Duration) {
	p.t.Helper()
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	code := p.wait(10 * time.Second)
	return code, time.Since(start)
}

// wait waits for the process to end by itself and returns its exit code.
func (p *ferryProc) wait(limit time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(limit):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("ferry still running after %s\n%s", limit, tail(p.stderr.String(), 20))
	}
	return exitCode(p.err)
}

// exitCode is the exit code of a process that Wait returned err for, or
// -1 when err is not an exit.
func exitCode(err error) int {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// sourceStatus is one source of /status.
type sourceStatus struct {
	Name                string     `json:"name"`
	URL                 string     `json:"url"`
	Revision            string     `json:"revision"`
	LastError           string     `json:"last_error"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
	RejectedRevision    string     `json:"rejected_revision"`
	RejectedReason      string     `json:"rejected_reason"`
	PendingRevision     string     `json:"pending_revision"`
	AdoptAt             *time.Time `json:"adopt_at"`
}

// status returns /status by source name; nil when it cannot be read.
func (p *ferryProc) status() map[string]sourceStatus {
	resp, err := http.Get("http://" + p.addr + "/status")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var st struct{ Sources []sourceStatus }
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil
	}
	out := map[string]sourceStatus{}
	for _, s := range st.Sources {
		out[s.Name] = s
	}
	return out
}

// get returns the body of an endpoint, "" when it cannot be read.
func (p *ferryProc) get(path string) string {
	resp, err := http.Get("http://" + p.addr + path)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metric returns the value of the series name{labels...} in /metrics (the
// labels given must all match; others may be present), or -1.
func (p *ferryProc) metric(name string, labels ...string) float64 {
	return metricValue(p.get("/metrics"), name, labels...)
}

// metricValue finds a series in Prometheus text. labels are "k", "v" pairs.
func metricValue(text, name string, labels ...string) float64 {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(rest, labels[i]+`="`+labels[i+1]+`"`) {
				continue next
			}
		}
		f := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err == nil {
			return v
		}
	}
	return -1
}

// logRecord is one JSON log line of ferry.
type logRecord map[string]any

// logs returns ferry's JSON log records so far; lines that are not JSON
// (there must be none) are returned as {"msg": line, "nonjson": true}.
func (p *ferryProc) logs() []logRecord {
	var out []logRecord
	for _, line := range strings.Split(p.stderr.String(), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var r logRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			r = logRecord{"msg": line, "nonjson": true}
		}
		out = append(out, r)
	}
	return out
}

func (r logRecord) str(k string) string { s, _ := r[k].(string); return s }

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// leftovers lists what a killed or interrupted ferry may leave in the
// volume: staging trees, temporary links, manifest temporaries and HTTP
// download spools.
func leftovers(root string) []string {
	var out []string
	for _, pattern := range []string{
		".ferry/*/.stage-*", ".ferry/*/.link-*", ".ferry/*/.meta/.tmp-*",
		".ferry/*/.state/.http-spool-*", ".ferry/*/.state/.*.tmp",
		// go-git's temporary pack and object files.
		".ferry/*/.state/*/objects/pack/tmp_*", ".ferry/*/.state/*/objects/*/tmp_*",
		".ferry/*/.state/*/objects/tmp_*",
	} {
		m, _ := filepath.Glob(filepath.Join(root, pattern))
		out = append(out, m...)
	}
	return out
}

// walkOutsideRevisions calls fn for every regular file under ROOT/.ferry
// that is not inside a published revision or staging tree: manifests,
// source state, anything else ferry writes.
func walkOutsideRevisions(t testing.TB, root string, fn func(path string, data []byte)) {
	t.Helper()
	meta := filepath.Join(root, ".ferry")
	filepath.WalkDir(meta, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(meta, p)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		if d.IsDir() && len(parts) == 2 && !strings.HasPrefix(parts[1], ".") {
			return filepath.SkipDir // a revision
		}
		if d.Type().IsRegular() {
			data, _ := os.ReadFile(p)
			fn(p, data)
		}
		return nil
	})
}

// httpPost posts nothing to url from loopback and returns the status.
func httpPost(url string) int {
	resp, err := http.Post(url, "text/plain", nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// startApp starts the demo app as the kubelet does once ferry is ready:
// serving addr, reading dir every interval and checking each read. It
// returns once the app answers; the test's end kills it if it still runs.
func startApp(t testing.TB, addr, dir string, every time.Duration) *exec.Cmd {
	t.Helper()
	app := exec.Command(bins.Path(t, appPkg), "--addr", addr, "--dir", dir, "--read-interval", every.String())
	app.Stderr = os.Stderr
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Process.Kill(); app.Wait() })
	testkit.Eventually(t, 10*time.Second, "the app at "+addr, func() bool { _, err := demoapp.Get(addr); return err == nil })
	return app
}
