package signal

import (
	"crypto/rand"
	"errors"
	"io"
	"os"
	"os/exec"
	ossignal "os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/report"
	"github.com/ferrysync/ferry/internal/testkit"
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
	comm := filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "cmdline")
	testkit.Eventually(t, wait, "the child to exec", func() bool {
		b, err := os.ReadFile(comm)
		return err == nil && strings.HasPrefix(string(b), path+"\x00")
	})
	return cmd, done
}

// processFor returns the notifier of a process name, built by New.
func processFor(t *testing.T, sig, name string) *process {
	return newNotifiers(t, Options{Signal: sig, Name: name}).ways[0].(*process)
}

func TestProcessSignalsProcessByName(t *testing.T) {
	for what, prefix := range map[string]string{
		"comm":  "ferrytst",           // 14 characters: comm is cut at 15
		"argv0": "ferrytst-longname-", // longer than comm's 15 bytes
	} {
		t.Run(what, func(t *testing.T) {
			name := uniqueName(prefix)
			_, done := startSleeper(t, name)
			if n, err := processFor(t, "TERM", name).kill(); err != nil || n != 1 {
				t.Fatalf("kill() = %d, %v; want 1, nil", n, err)
			}
			assertKilledBy(t, done, syscall.SIGTERM)
		})
	}
}

func TestProcessNotifyCountsOutcome(t *testing.T) {
	name := uniqueName("ferrytst")
	_, done := startSleeper(t, name)
	n := newNotifiers(t, Options{Signal: "USR1", Name: name})
	n.Notify(Change{Source: "app", Revision: "r1", Path: "/config/app"})
	assertKilledBy(t, done, syscall.SIGUSR1) // sleep does not catch USR1
	n.Notify(Change{Source: "app", Revision: "r2", Path: "/config/app"})

	target := "process:" + name
	for result, want := range map[string]float64{resultOK: 1, resultFailed: 1} {
		if got := n.total(t, target, result); got != want {
			t.Errorf("%s = %v, want %v", result, got, want)
		}
	}
	if s := n.logs.String(); !strings.Contains(s, "signalled application") || !strings.Contains(s, "level=ERROR") {
		t.Errorf("want an info line and an error line, got:\n%s", s)
	}
}

func TestProcessWithoutMatchSaysSo(t *testing.T) {
	name := uniqueName("ferry-none-")
	n, err := processFor(t, "HUP", name).kill()
	if n != 0 || !errors.Is(err, errNoProcess) {
		t.Fatalf("kill() = %d, %v; want 0 and errNoProcess", n, err)
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
	_, _ = processFor(t, "WINCH", strings.TrimSpace(string(self))).kill() // another process may share the name; only ours matters
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
	p := processFor(t, "TERM", name)
	testkit.Eventually(t, wait, "master and worker", func() bool {
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
	testkit.Eventually(t, wait, "the child to become a zombie", func() bool {
		state, _, ok := readStat(filepath.Join("/proc", strconv.Itoa(pid)))
		return ok && state == 'Z'
	})
	if n, err := processFor(t, "TERM", name).kill(); n != 0 || !errors.Is(err, errNoProcess) {
		t.Errorf("kill() = %d, %v; want 0 and errNoProcess for a zombie", n, err)
	}
}

func TestParseSignal(t *testing.T) {
	for want, ins := range map[syscall.Signal][]string{
		syscall.SIGHUP:     {"HUP", "SIGHUP", "hup", "sighup", " HUP\n", "1"},
		syscall.SIGUSR1:    {"USR1"},
		syscall.SIGUSR2:    {"SIGUSR2"},
		syscall.SIGTERM:    {"term", "15"},
		syscall.SIGWINCH:   {"WINCH"},
		syscall.SIGQUIT:    {"QUIT"},
		syscall.Signal(64): {"64"},
	} {
		for _, in := range ins {
			if got, err := parseSignal(in); err != nil || got != want {
				t.Errorf("parseSignal(%q) = %v, %v; want %v", in, got, err, want)
			}
		}
	}
	for _, in := range []string{"", "SIG", "FOO", "SIGFOO", "SIGSIGHUP", "0", "65", "-1", "1.5", "HUP1"} {
		var fe *report.FieldError
		if got, err := parseSignal(in); !errors.As(err, &fe) || !slices.Equal(fe.Fields(), []string{"Signal"}) {
			t.Errorf("parseSignal(%q) = %v, %v; want an error naming the field Signal", in, got, err)
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
