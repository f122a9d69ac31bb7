package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferrysync/ferry/internal/localproc"
)

// daemon is one running `ferry run`. It dies with this program (the
// kernel sends it SIGKILL when its parent ends), and stop ends it sooner.
type daemon struct {
	cmd     *exec.Cmd
	root    string
	addr    string // --http-addr, "" when off
	started time.Time
	done    chan struct{} // closed once the process is reaped
	err     error         // how it ended, set before done is closed
	log     *os.File
}

// startDaemon starts `ferry run --root root` with args and, unless
// endpoints is false, its endpoints on a free loopback port.
func (b *bench) startDaemon(root, logFile string, endpoints bool, args ...string) (*daemon, error) {
	d := &daemon{root: root, done: make(chan struct{})}
	args = append([]string{"run", "--root", root, "--log-format", "json"}, args...)
	if endpoints {
		addr, err := localproc.FreeAddr()
		if err != nil {
			return nil, err
		}
		d.addr = addr
	}
	args = append(args, "--http-addr", d.addr)
	log, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	d.log = log
	// The root exists before ferry starts, for waitLink to watch.
	if err := os.MkdirAll(root, 0o755); err != nil {
		log.Close()
		return nil, err
	}
	d.cmd = exec.Command(b.ferry, args...)
	d.cmd.Env, d.cmd.Stdout, d.cmd.Stderr = b.ferryEnv(), log, log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	d.started = time.Now()
	if err := d.cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	go func() {
		d.err = d.cmd.Wait()
		d.log.Close()
		close(d.done)
	}()
	return d, nil
}

// stop kills the process and waits for it to be reaped; it may be called
// again.
func (d *daemon) stop() {
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// waitReady waits for the first publish and returns the time from start
// to the first 200 of /readyz. /readyz is asked, every millisecond, only
// once the link ROOT/current exists: probing all through the sync would
// cost ferry CPU that a kubelet, probing once a second, does not.
func (d *daemon) waitReady(ctx context.Context, limit time.Duration) (time.Duration, error) {
	deadline := d.started.Add(limit)
	if err := d.waitLink(ctx, deadline); err != nil {
		return 0, err
	}
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://" + d.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(d.started), nil
			}
		}
		if err := d.check(ctx, deadline); err != nil {
			return 0, err
		}
		time.Sleep(time.Millisecond)
	}
}

// waitLink waits until the link ROOT/current exists. It does not poll,
// which on two cores cost as much CPU as the origin: inotify says when
// something is created or renamed in the root, and only then is the link
// looked for.
func (d *daemon) waitLink(ctx context.Context, deadline time.Time) error {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return err
	}
	events := os.NewFile(uintptr(fd), "inotify") // read through the runtime's poller
	defer events.Close()
	if _, err := unix.InotifyAddWatch(fd, d.root, unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	for {
		if _, err := os.Lstat(filepath.Join(d.root, "current")); err == nil {
			return nil
		}
		if err := d.check(ctx, deadline); err != nil {
			return err
		}
		events.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := events.Read(buf); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
	}
}

// check says why waiting for the daemon is over: ctx ended, the process
// exited, or deadline passed; nil while none of these.
func (d *daemon) check(ctx context.Context, deadline time.Time) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-d.done:
		return fmt.Errorf("ferry run exited: %v (log: %s)", d.err, tail(d.log.Name(), 5))
	default:
	}
	if time.Now().After(deadline) {
		return fmt.Errorf("ferry run not ready by %s (log: %s)", deadline.Format(time.TimeOnly), tail(d.log.Name(), 5))
	}
	return nil
}

// metric is the sum of the values of every series of a counter or gauge
// at /metrics.
func (d *daemon) metric(name string) (float64, error) {
	resp, err := http.Get("http://" + d.addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return sumMetric(resp.Body, name)
}
