package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testkit"
)

const promtoolCheck = "promtool check config prometheus.yml"

// promConfig is a generation's extra file: a Prometheus configuration
// with the scrape interval given, which promtool refuses unless it is a
// duration.
func promConfig(interval string) map[string]string {
	return map[string]string{"prometheus.yml": "global:\n  scrape_interval: " + interval + "\n"}
}

// An init container running 'ferry once' must fail on a revision its
// check refuses, saying why, and publish nothing.
func TestOnceExits1OnARevisionTheValidateCommandRejects(t *testing.T) {
	testkit.Tool(t, "promtool", "prometheus")
	o := newGitOrigin(t)
	o.set(t, 1, promConfig("15x"))
	root := t.TempDir()
	code, _, stderr := runToEnd(t, append([]string{"once", "--root", root, "--validate-command", promtoolCheck}, o.source("cfg")...)...)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, stderr)
	}
	for _, want := range []string{"rejected: command: " + promtoolCheck + ": exit status 1", `not a valid duration string`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "cfg")); err == nil {
		t.Error("the rejected revision was published")
	}

	o.set(t, 2, promConfig("15s"))
	code, _, stderr = runToEnd(t, append([]string{"once", "--root", root, "--validate", "syntax", "--validate-command", promtoolCheck}, o.source("cfg")...)...)
	if code != 0 {
		t.Fatalf("exit %d on a good revision\n%s", code, stderr)
	}
	if g, err := checkGeneration(filepath.Join(root, "cfg")); err != nil || g != 2 {
		t.Fatalf("published generation %d (%v), want 2", g, err)
	}
}

// 'ferry run' keeps the last good revision while the origin holds one its
// check refuses, reports it once, does not check it again, and publishes
// the next good one.
func TestRunHoldsBackARejectedRevisionUntilTheOriginMovesOn(t *testing.T) {
	testkit.Tool(t, "promtool", "prometheus")
	o := newGitOrigin(t)
	o.set(t, 1, promConfig("15s"))
	root := t.TempDir()
	link := filepath.Join(root, "cfg")
	p := startFerry(t, procOptions{root: root, args: append(o.source("cfg"),
		"--period", "200ms", "--validate", "syntax", "--validate-command", promtoolCheck)})
	waitForGen(t, 20*time.Second, link, 1)

	// Valid YAML, so only promtool refuses it.
	o.set(t, 2, promConfig("15x"))
	testkit.Eventually(t, 20*time.Second, "a rejection in /status", func() bool { return p.status()["cfg"].RejectedRevision != "" })
	st := p.status()["cfg"]
	if !strings.HasPrefix(st.RejectedReason, "command: "+promtoolCheck+": exit status 1") || !strings.Contains(st.RejectedReason, "15x") {
		t.Errorf("/status rejected_reason = %q", st.RejectedReason)
	}
	if st.RejectedRevision == st.Revision {
		t.Errorf("/status: rejected revision %s is the published one", st.Revision)
	}
	unchanged := p.metric("ferry_syncs_total", "source", "cfg", "result", "unchanged")
	testkit.Eventually(t, 20*time.Second, "polls after the rejection", func() bool {
		return p.metric("ferry_syncs_total", "source", "cfg", "result", "unchanged") >= unchanged+3
	})
	if g, err := checkGeneration(link); err != nil || g != 1 {
		t.Fatalf("ROOT/cfg is generation %d (%v) while generation 2 is rejected, want 1", g, err)
	}
	if v := p.metric("ferry_rejected_total", "source", "cfg", "reason", "command"); v != 1 {
		t.Errorf("ferry_rejected_total{reason=command} = %v, want 1: checked once", v)
	}
	var lines []logRecord
	for _, r := range p.logs() {
		if strings.HasPrefix(r.str("msg"), "revision rejected") {
			lines = append(lines, r)
		}
	}
	if len(lines) != 1 || lines[0].str("level") != "ERROR" || lines[0].str("reason") != "command" || !strings.Contains(lines[0].str("output"), "FAILED") {
		t.Errorf("want one ERROR line with reason command and promtool's output, got %v", lines)
	}

	o.set(t, 3, promConfig("30s"))
	waitForGen(t, 20*time.Second, link, 3)
	testkit.Eventually(t, 10*time.Second, "the rejection cleared from /status", func() bool {
		st := p.status()["cfg"]
		return st.RejectedRevision == "" && st.RejectedReason == ""
	})
}
