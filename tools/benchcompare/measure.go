package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// job is one command to measure.
type job struct {
	Argv []string
	Env  []string
	Log  string // the command's stdout and stderr go here
	// Link, when set, is pointed at LinkTarget after the command succeeds,
	// through a new link renamed over it, and the time counts: the
	// publish step of a git-sync-like clone.
	Link, LinkTarget string
}

// buildMeasurer builds tools/measure into dir: every measured command
// runs under it (see there why).
func buildMeasurer(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "measure")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "github.com/ferrysync/ferry/tools/measure")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building tools/measure (run me from ferry's module): %w: %s", err, out)
	}
	return bin, nil
}

// sample is what one measured command cost, as tools/measure prints it.
type sample struct {
	Wall time.Duration `json:"wall"`
	User time.Duration `json:"user"`
	Sys  time.Duration `json:"sys"`
	// MaxRSS is the peak resident set of the command, in bytes; for a
	// command that starts others (git), of the largest process of the
	// tree. User and Sys count the processes it waited for too.
	MaxRSS int64 `json:"maxrss"`
	// Floor is the measuring process's own peak RSS when it started the
	// command: MaxRSS cannot be lower (see tools/measure).
	Floor int64 `json:"floor"`
	// Origin is the CPU time the origin spent serving the command (see
	// originCPU), and Served what it sent; both set by backToBack.
	Origin time.Duration `json:"-"`
	Served traffic       `json:"-"`
}

// measure runs j under tools/measure and returns its sample; ctx ends
// the measuring process, and the command with it.
func (b *bench) measure(ctx context.Context, j job) (sample, error) {
	args := []string{"-log", j.Log}
	if j.Link != "" {
		args = append(args, "-link", j.Link, "-link-target", j.LinkTarget)
	}
	syscall.Sync() // no run pays for the writeback of the one before
	cmd := exec.CommandContext(ctx, b.measurer, append(append(args, "--"), j.Argv...)...)
	cmd.Env = j.Env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return sample{}, fmt.Errorf("%w: %s (log: %s)", err, bytes.TrimSpace(stderr.Bytes()), tail(j.Log, 5))
	}
	var s sample
	if err := json.Unmarshal(stdout.Bytes(), &s); err != nil {
		return sample{}, fmt.Errorf("measuring %s: %w", j.Argv, err)
	}
	return s, nil
}

// tail is the last n lines of a file, for an error message.
func tail(file string, n int) string {
	data, _ := os.ReadFile(file)
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	return string(bytes.Join(lines[max(0, len(lines)-n):], []byte("\n")))
}
