package signal

import (
	"crypto/rand"
	"errors"
	"io"
	"os"
	"os/exec"
	ossignal "os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// uniqueName is prefix plus 6 random lower-case letters, so that no other
// process on the machine can match.
func uniqueName(prefix string) string {
	return prefix + strings.ToLower(rand.Text()[:6])
}

// startSleeper copies /bin/sleep to name and runs it, waiting until the
// kernel reports the new program (before exec, the child still has the
// test binary's name). It returns the command and a channel that yields
// its exit state once.
func startSleeper(t *testing.T, name string) (*exec.Cmd, <-chan *os.ProcessState) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	copyFile(t, "/bin/sleep", path)
	cmd := exec.Command(path, "30")
	var err error
	for range 50 {
		// A binary just written may briefly be "text file busy" while
		// another goroutine forks.
		if err = cmd.Start(); !errors.Is(err, syscall.ETXTBSY) {
			break
		}
		cmd = exec.Command(path, "30")
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	done := make(chan *os.ProcessState, 1)
	reaped := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		done <- cmd.ProcessState
		close(reaped)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-reaped
	})
	comm := filepath.Join("/proc", itoa(cmd.Process.Pid), "cmdline")
	waitFor(t, 5*time.Second, "the child to exec", func() bool {
		b, err := os.ReadFile(comm)
		return err == nil && strings.HasPrefix(string(b), path+"\x00")
	})
	return cmd, done
}

func TestProcessSignalsProcessByName(t *testing.T) {
	name := uniqueName("ferrytst") // 14 characters: comm is cut at 15
	_, done := startSleeper(t, name)

	reg := prometheus.NewRegistry()
	p, err := NewProcess(ProcessOptions{Signal: syscall.SIGTERM, Name: name, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	n, err := p.Signal()
	if err != nil || n != 1 {
		t.Fatalf("Signal() = %d, %v; want 1, nil", n, err)
	}
	assertKilledBy(t, done, syscall.SIGTERM)
}

func TestProcessMatchesLongNameByArgv0(t *testing.T) {
	name := uniqueName("ferrytst-longname-") // longer than comm's 15 bytes
	_, done := startSleeper(t, name)
	p, err := NewProcess(ProcessOptions{Signal: syscall.SIGTERM, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := p.Signal(); err != nil || n != 1 {
		t.Fatalf("Signal() = %d, %v; want 1, nil", n, err)
	}
	assertKilledBy(t, done, syscall.SIGTERM)
}

func TestProcessNotifyCountsOutcome(t *testing.T) {
	name := uniqueName("ferrytst")
	_, done := startSleeper(t, name)
	reg := prometheus.NewRegistry()
	var logs syncBuffer
	p, err := NewProcess(ProcessOptions{Signal: syscall.SIGUSR1, Name: name, Registerer: reg,
		Logger: newTextLogger(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	p.Notify(Change{Source: "app", Revision: "r1", Path: "/config/app"})
	assertKilledBy(t, done, syscall.SIGUSR1) // sleep does not catch USR1
	p.Notify(Change{Source: "app", Revision: "r2", Path: "/config/app"})

	target := "process:" + name
	if got := testutil.ToFloat64(p.metrics.total.WithLabelValues(target, "ok")); got != 1 {
		t.Errorf("ok = %v, want 1", got)
	}
	if got := testutil.ToFloat64(p.metrics.total.WithLabelValues(target, "failed")); got != 1 {
		t.Errorf("failed = %v, want 1", got)
	}
	if s := logs.String(); !strings.Contains(s, "signalled application") || !strings.Contains(s, "level=ERROR") {
		t.Errorf("want an info line and an error line, got:\n%s", s)
	}
}

func TestProcessWithoutMatchSaysSo(t *testing.T) {
	name := uniqueName("ferry-none-")
	p, err := NewProcess(ProcessOptions{Signal: syscall.SIGHUP, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	n, err := p.Signal()
	if n != 0 || !errors.Is(err, ErrNoProcess) {
		t.Fatalf("Signal() = %d, %v; want 0 and ErrNoProcess", n, err)
	}
	for _, want := range []string{"no process named " + name, "shareProcessNamespace: true"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestProcessNeverSignalsItself(t *testing.T) {
	// SIGWINCH is harmless if it does arrive; catching it shows whether it did.
	got := make(chan os.Signal, 1)
	ossignal.Notify(got, syscall.SIGWINCH)
	defer ossignal.Stop(got)

	self, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewProcess(ProcessOptions{Signal: syscall.SIGWINCH, Name: strings.TrimSpace(string(self))})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = p.Signal() // another process may share the name; only ours matters
	select {
	case <-got:
		t.Errorf("the current process signalled itself")
	case <-time.After(100 * time.Millisecond):
	}
}

// A master and a worker of the same name (nginx, gunicorn): only the master
// gets the signal, since a worker that does not handle it would die of it.
func TestProcessSignalsOnlyTheTopOfAFamily(t *testing.T) {
	name := uniqueName("ferrytst")
	sh := filepath.Join(t.TempDir(), name)
	copyFile(t, "/bin/sh", sh)
	// The master runs a worker of the same name, which loops until killed.
	master := exec.Command(sh, "-c", sh+` -c 'while :; do sleep 1; done' & wait`)
	if err := master.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		master.Process.Kill()
		master.Wait()
		exec.Command("pkill", "-KILL", "-f", sh).Run()
	})
	p, err := NewProcess(ProcessOptions{Signal: syscall.SIGTERM, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "master and worker", func() bool {
		all, _ := p.all()
		return len(all) == 2
	})
	pids, err := p.find()
	if err != nil || len(pids) != 1 || pids[0] != master.Process.Pid {
		t.Fatalf("find() = %v, %v; want only the master %d", pids, err, master.Process.Pid)
	}
}

func TestProcessSkipsZombies(t *testing.T) {
	name := uniqueName("ferrytst")
	path := filepath.Join(t.TempDir(), name)
	copyFile(t, "/bin/sleep", path)
	// Run it through a raw fork so that nobody reaps it until we say so.
	pid, err := syscall.ForkExec(path, []string{path, "0"}, &syscall.ProcAttr{})
	if err != nil {
		t.Fatalf("fork %s: %v", path, err)
	}
	t.Cleanup(func() {
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, 0, nil)
	})
	waitFor(t, 5*time.Second, "the child to become a zombie", func() bool {
		state, _, ok := readStat(filepath.Join("/proc", itoa(pid)))
		return ok && state == 'Z'
	})
	p, err := NewProcess(ProcessOptions{Signal: syscall.SIGTERM, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := p.Signal(); n != 0 || !errors.Is(err, ErrNoProcess) {
		t.Errorf("Signal() = %d, %v; want 0 and ErrNoProcess for a zombie", n, err)
	}
}

func TestNewProcessRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    ProcessOptions
		want string
	}{
		{"no name", ProcessOptions{}, "no process name"},
		{"path", ProcessOptions{Name: "/usr/sbin/nginx"}, "base name"},
		{"signal", ProcessOptions{Name: "nginx", Signal: 99}, "out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewProcess(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewProcess error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	p, err := NewProcess(ProcessOptions{Name: "nginx"})
	if err != nil {
		t.Fatal(err)
	}
	if p.sig != syscall.SIGHUP || p.procDir != "/proc" {
		t.Errorf("defaults: signal %v, proc dir %q; want SIGHUP and /proc", p.sig, p.procDir)
	}
}

func TestHTTPAndProcessShareARegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewHTTP(HTTPOptions{URLs: []string{"http://127.0.0.1:1/"}, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewProcess(ProcessOptions{Name: "nginx", Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewHTTP(HTTPOptions{URLs: []string{"http://127.0.0.2:1/"}, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	// Two HTTP targets with 4 results each, one process with ok and failed.
	if n := testutil.CollectAndCount(reg, "ferry_notify_total"); n != 10 {
		t.Errorf("ferry_notify_total has %d series, want 10", n)
	}
}

func TestParseSignal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want syscall.Signal
	}{
		{"HUP", syscall.SIGHUP},
		{"SIGHUP", syscall.SIGHUP},
		{"hup", syscall.SIGHUP},
		{"sighup", syscall.SIGHUP},
		{" HUP\n", syscall.SIGHUP},
		{"1", syscall.SIGHUP},
		{"USR1", syscall.SIGUSR1},
		{"SIGUSR2", syscall.SIGUSR2},
		{"term", syscall.SIGTERM},
		{"15", syscall.SIGTERM},
		{"WINCH", syscall.SIGWINCH},
		{"QUIT", syscall.SIGQUIT},
		{"64", syscall.Signal(64)},
	} {
		got, err := ParseSignal(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "SIG", "FOO", "SIGFOO", "SIGSIGHUP", "0", "65", "-1", "1.5", "HUP1"} {
		if got, err := ParseSignal(in); err == nil {
			t.Errorf("ParseSignal(%q) = %v, want an error", in, got)
		} else if !strings.Contains(err.Error(), "signal") {
			t.Errorf("ParseSignal(%q) error %q does not say what was wrong", in, err)
		}
	}
}

func assertKilledBy(t *testing.T, done <-chan *os.ProcessState, sig syscall.Signal) {
	t.Helper()
	select {
	case st := <-done:
		ws, ok := st.Sys().(syscall.WaitStatus)
		if !ok || !ws.Signaled() || ws.Signal() != sig {
			t.Errorf("child ended with %v, want killed by %v", st, sig)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("child still running 10s after the signal")
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatalf("no %s to copy: %v", from, err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestMetricsWithoutRegistererStillCount(t *testing.T) {
	p, err := NewProcess(ProcessOptions{Name: uniqueName("ferry-none-")})
	if err != nil {
		t.Fatal(err)
	}
	p.Notify(Change{Source: "app", Revision: "r1"})
	if got := testutil.ToFloat64(p.metrics.total.WithLabelValues(p.target, resultFailed)); got != 1 {
		t.Errorf("failed = %v, want 1", got)
	}
}
