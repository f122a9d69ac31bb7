// Package localproc runs ferry's demo, tests and benchmarks the way the
// kubelet would, on this machine: free loopback ports, SIGTERM with a
// grace period, and the memory a process holds.
package localproc

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// FreeAddr returns a 127.0.0.1 address that nothing listens on right now.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Terminate sends cmd SIGTERM, as the kubelet does, and waits up to grace
// for it to exit. It returns the exit code and how long the exit took; a
// process still running after grace is killed and reported as an error.
func Terminate(cmd *exec.Cmd, grace time.Duration) (code int, took time.Duration, err error) {
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode(), time.Since(start), nil
		}
		return 0, time.Since(start), err
	case <-time.After(grace):
		cmd.Process.Kill()
		<-done
		return -1, time.Since(start), fmt.Errorf("%s still running %s after SIGTERM", cmd.Path, grace)
	}
}

// Status reads memory fields of /proc/PID/status (VmRSS, VmHWM, RssAnon,
// any given in kB), in bytes. It fails when one is missing.
func Status(pid int, fields ...string) (map[string]int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || !slices.Contains(fields, name) {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return nil, err
		}
		out[name] = kb << 10
	}
	if len(out) != len(fields) {
		return nil, fmt.Errorf("/proc/%d/status lacks some of %v", pid, fields)
	}
	return out, nil
}
