package signal

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ferrysync/ferry/internal/report"
)

// procDir is where processes are listed.
const procDir = "/proc"

// maxSignal is the highest signal number accepted (Linux real-time signals
// end at 64).
const maxSignal = 64

// errNoProcess is wrapped by the error of kill when no process has the
// configured name.
var errNoProcess = errors.New("no process")

// process signals the processes with a given name: the top one of each
// family (a master, not its workers).
type process struct {
	sig     syscall.Signal
	name    string
	target  string // metric label
	log     *slog.Logger
	metrics *metrics
}

// newProcess returns the notifier of o's Name, which o.Validate accepted.
func newProcess(o Options, m *metrics) *process {
	sig, _ := parseSignal(o.Signal)
	p := &process{sig: sig, name: o.Name, target: "process:" + o.Name, log: o.Logger, metrics: m}
	m.initTarget(p.target, resultOK, resultFailed)
	return p
}

// Notify sends the signal now, once for all of cs, and logs the outcome;
// cs only labels the log. It reads /proc once and never waits on the
// application.
func (p *process) Notify(cs Changes) {
	n, err := p.kill()
	attrs := append([]any{"process", p.name, "signal", signalName(p.sig)}, cs.logAttrs()...)
	if err != nil {
		p.log.Error("signal application failed", append(attrs, "signalled", n, "error", err)...)
		p.metrics.outcome(p.target, cs, resultFailed, err)
		return
	}
	p.log.Info("signalled application", append(attrs, "signalled", n)...)
	p.metrics.outcome(p.target, cs, resultOK, nil)
}

// kill sends the signal to every process whose /proc/PID/comm, or the
// base name of whose argv[0], equals the name and whose parent does not,
// except ferry itself and zombies. It returns how many processes were
// signalled. Finding none is an error wrapping errNoProcess; a refusal
// wraps syscall.EPERM.
func (p *process) kill() (int, error) {
	pids, err := p.find()
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, pid := range pids {
		err := syscall.Kill(pid, p.sig)
		switch {
		case err == nil:
			n++
		case errors.Is(err, syscall.ESRCH):
			// Exited since it was listed.
		case errors.Is(err, syscall.EPERM):
			errs = append(errs, fmt.Errorf("send %s to %s (pid %d): %w: ferry must run as the same UID as the application, or have CAP_KILL",
				signalName(p.sig), p.name, pid, err))
		default:
			errs = append(errs, fmt.Errorf("send %s to %s (pid %d): %w", signalName(p.sig), p.name, pid, err))
		}
	}
	if len(errs) > 0 {
		return n, errors.Join(errs...)
	}
	if n == 0 {
		return 0, fmt.Errorf("%w named %s (is shareProcessNamespace: true set?)", errNoProcess, p.name)
	}
	return n, nil
}

// find lists the PIDs whose name matches, keeping only the top process of
// each family: a reload signal is meant for the master (nginx, gunicorn,
// haproxy), and a worker with the same name that does not handle it would
// die of it. Processes come and go while /proc is read, so an unreadable
// entry is skipped, not an error.
func (p *process) find() ([]int, error) {
	parents, err := p.all()
	if err != nil {
		return nil, err
	}
	var pids []int
	for pid, ppid := range parents {
		if _, parentMatches := parents[ppid]; !parentMatches {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids, nil
}

// all maps every live matching process, but ferry, to its parent.
func (p *process) all() (map[int]int, error) {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil, fmt.Errorf("list processes in %s: %w", procDir, err)
	}
	self := os.Getpid()
	parents := map[int]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 || pid == self {
			continue
		}
		dir := filepath.Join(procDir, e.Name())
		if !p.matches(dir) {
			continue
		}
		if state, ppid, ok := readStat(dir); ok && state != 'Z' {
			parents[pid] = ppid
		}
	}
	return parents, nil
}

func (p *process) matches(dir string) bool {
	if comm, err := os.ReadFile(filepath.Join(dir, "comm")); err == nil &&
		strings.TrimSuffix(string(comm), "\n") == p.name {
		return true
	}
	cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil || len(cmdline) == 0 {
		return false // kernel threads have no command line
	}
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	return filepath.Base(string(argv0)) == p.name
}

// readStat returns the process state and parent PID from /proc/PID/stat.
// A zombie ('Z') has exited and waits to be reaped: it can reload nothing,
// and counting it would hide that the app is gone.
func readStat(dir string) (state byte, ppid int, ok bool) {
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return 0, 0, false
	}
	// The fields follow the command name, which may itself hold ") ".
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, false
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 2 || len(fields[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(fields[1])
	return fields[0][0], ppid, err == nil
}

// parseSignal reads Options.Signal: a name, with or without "SIG" and in
// any case ("HUP", "SIGHUP", "hup"), or a number ("1").
func parseSignal(s string) (syscall.Signal, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	n, err := strconv.Atoi(t)
	if err != nil {
		if n = int(unix.SignalNum("SIG" + strings.TrimPrefix(t, "SIG"))); n == 0 {
			return 0, report.Fieldf("{Signal} %q: unknown signal: want a name such as HUP, USR1 or TERM, or a number 1-%d", s, maxSignal)
		}
	}
	if n < 1 || n > maxSignal {
		return 0, report.Fieldf("{Signal} %q: number out of range 1-%d", s, maxSignal)
	}
	return syscall.Signal(n), nil
}

// signalName gives "SIGHUP" rather than syscall's "hangup", to match what
// the user configured.
func signalName(sig syscall.Signal) string {
	if name := unix.SignalName(sig); name != "" {
		return name
	}
	return "signal " + strconv.Itoa(int(sig))
}
