// Package localproc runs ferry's demo and tests the way the kubelet would,
// on this machine: free loopback ports, and SIGTERM with a grace period.
package localproc

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
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
