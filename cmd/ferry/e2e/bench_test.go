package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/localproc"
)

// BenchmarkIdleRSS reports the resident memory of 'ferry run' with one
// local-dir source, idle after its first publish. Target: under 12 MiB
// (issue 19, at any period).
func BenchmarkIdleRSS(b *testing.B) {
	dir := b.TempDir()
	bin := bins.Path(b, ferryPkg)
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
		mem, err := localproc.Status(cmd.Process.Pid, "VmRSS", "RssAnon", "RssFile")
		cmd.Process.Kill()
		cmd.Wait()
		if err != nil {
			b.Fatal(err)
		}
		// RssFile is the binary's pages: shared, clean, reclaimable page
		// cache. RssAnon is what ferry itself holds.
		b.ReportMetric(float64(mem["VmRSS"])/(1<<20), "MiB-RSS")
		b.ReportMetric(float64(mem["RssAnon"])/(1<<20), "MiB-RssAnon")
		b.ReportMetric(float64(mem["RssFile"])/(1<<20), "MiB-RssFile")
	}
}
