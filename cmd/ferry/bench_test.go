package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkIdleRSS reports the resident memory of 'ferry run' with one
// local-dir source, idle after its first publish. Target: under 15 MiB.
func BenchmarkIdleRSS(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "ferry")
	if out, err := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	source := filepath.Join(dir, "source")
	os.MkdirAll(source, 0o755)
	for i := range 50 {
		os.WriteFile(filepath.Join(source, fmt.Sprintf("f%02d.yaml", i)), []byte(strings.Repeat("key: value\n", 100)), 0o644)
	}
	addr := "127.0.0.1:0"
	for b.Loop() {
		cmd := exec.Command(bin, "run", "--source", source, "--root", filepath.Join(dir, "root"), "--period", "1s", "--http-addr", addr)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := os.Stat(filepath.Join(dir, "root", "current", "f00.yaml")); err == nil {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				b.Fatal("no publish within 10s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		// Let a few idle polls go by.
		time.Sleep(3 * time.Second)
		rss, err := vmRSS(cmd.Process.Pid)
		cmd.Process.Kill()
		cmd.Wait()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(rss)/(1<<20), "MiB-RSS")
	}
}

// vmRSS reads VmRSS from /proc/PID/status, in bytes.
func vmRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
