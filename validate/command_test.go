package validate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testkit"
)

const (
	goodPrometheus = "global:\n  scrape_interval: 15s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['127.0.0.1:9100']\n"
	badPrometheus  = "global:\n  scrape_interval: 15x\n"
	goodNginx      = "events {}\nhttp {\n  server {\n    listen 127.0.0.1:8080;\n    location / { return 200 ok; }\n  }\n}\n"
	badNginx       = "events {}\nhttp {\n  server {\n    lissten 8080;\n  }\n}\n"
)

func TestCommandPromtoolChecksTheStagedTree(t *testing.T) {
	testkit.Tool(t, "promtool", "prometheus")
	c := newChecker(t, Options{Command: "promtool check config prometheus.yml"})
	good := testkit.Tree(t, map[string]string{"prometheus.yml": goodPrometheus})
	if err := c.Validate(context.Background(), Candidate{Source: "prom", Revision: "r1", Dir: good}); err != nil {
		t.Fatalf("good config refused: %v", err)
	}
	e := refusal(t, c, testkit.Tree(t, map[string]string{"prometheus.yml": badPrometheus}))
	if e.Check != CheckCommand || e.File != "" {
		t.Errorf("refusal %+v, want the command's", e)
	}
	for _, want := range []string{"command: promtool check config prometheus.yml: exit status 1", `not a valid duration string: "15x"`} {
		if !strings.Contains(e.Error(), want) {
			t.Errorf("refusal %q does not hold %q", e, want)
		}
	}
	if !strings.Contains(e.Output(), "FAILED") {
		t.Errorf("output kept for the log = %q, want promtool's FAILED line", e.Output())
	}
}

func TestCommandNginxChecksTheStagedTree(t *testing.T) {
	testkit.Tool(t, "nginx", "nginx")
	// -p . makes -c relative to the working directory, the staged tree;
	// -e and -g keep nginx -t from opening the system's log and pid files.
	pid := filepath.Join(t.TempDir(), "nginx.pid")
	c := newChecker(t, Options{Command: fmt.Sprintf("nginx -t -p . -c nginx.conf -e /dev/stderr -g 'pid %s;'", pid)})
	if err := c.Validate(context.Background(), Candidate{Dir: testkit.Tree(t, map[string]string{"nginx.conf": goodNginx})}); err != nil {
		t.Fatalf("good config refused: %v", err)
	}
	e := refusal(t, c, testkit.Tree(t, map[string]string{"nginx.conf": badNginx}))
	if want := `unknown directive "lissten"`; !strings.Contains(e.Error(), want) {
		t.Errorf("refusal %q does not hold %q", e, want)
	}
}

func TestCommandSeesTheCandidate(t *testing.T) {
	dir := testkit.Tree(t, map[string]string{"a.conf": "x"})
	c := newChecker(t, Options{Command: `sh -c 'echo "dir=$FERRY_STAGED_DIR src=$FERRY_SOURCE rev=$FERRY_REVISION pwd=$(pwd) home=${HOME:+set}"; test -f a.conf && exit 3'`})
	err := c.Validate(context.Background(), Candidate{Source: "web", Revision: "abc123", Dir: dir})
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Validate = %v, want a refusal", err)
	}
	real, _ := filepath.EvalSymlinks(dir)
	for _, want := range []string{"exit status 3", "dir=" + dir + " ", "src=web", "rev=abc123", "pwd=" + real, "home=set"} {
		if !strings.Contains(e.Error(), want) {
			t.Errorf("refusal %q does not hold %q", e, want)
		}
	}
}

func TestCommandTimeoutKillsItsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	c := newChecker(t, Options{Command: fmt.Sprintf(`sh -c 'sleep 60 & echo $! > %s; echo waiting; wait'`, pidFile), Timeout: 300 * time.Millisecond})
	begin := time.Now()
	e := refusal(t, c, t.TempDir())
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("refusal took %s, want about the 300ms timeout", took)
	}
	if want := "timed out after 300ms: waiting"; !strings.Contains(e.Error(), want) {
		t.Errorf("refusal %q does not hold %q", e, want)
	}
	testkit.Killed(t, pidFile)
}

func TestCommandCancelledIsNotARefusal(t *testing.T) {
	c := newChecker(t, Options{Command: "sleep 60"})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := c.Validate(ctx, Candidate{Dir: t.TempDir()})
	var e *Error
	if err == nil || errors.As(err, &e) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Validate = %v, want the context's error and no refusal", err)
	}
}

func TestCommandMissingFromTheTreeIsOneLine(t *testing.T) {
	c := newChecker(t, Options{Command: "./check.sh --strict"})
	e := refusal(t, c, t.TempDir())
	if want := "command: ./check.sh --strict: ./check.sh: no such file or directory"; e.Error() != want {
		t.Errorf("refusal %q, want %q", e, want)
	}
	// A script the revision carries runs from the tree.
	dir := testkit.Tree(t, nil)
	if err := os.WriteFile(filepath.Join(dir, "check.sh"), []byte("#!/bin/sh\n[ \"$1\" = --strict ]\n"), 0o555); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(context.Background(), Candidate{Dir: dir}); err != nil {
		t.Errorf("the tree's own check.sh: %v", err)
	}
}

func TestCommandOutputIsCapped(t *testing.T) {
	c := newChecker(t, Options{Command: `sh -c 'i=0; while [ $i -lt 2000 ]; do echo 0123456789012345678901234567890123456789012345678901234567890123456789; i=$((i+1)); done; exit 1'`})
	e := refusal(t, c, t.TempDir())
	if n := len(e.Output()); n < OutputLimit || n > OutputLimit+100 {
		t.Errorf("output kept: %d bytes, want about %d", n, OutputLimit)
	}
	if !strings.HasSuffix(e.Output(), "more bytes not kept]") {
		t.Errorf("output does not say it was cut: ...%q", e.Output()[len(e.Output())-60:])
	}
	if len(e.Error()) > 2*detailLimit {
		t.Errorf("refusal is %d bytes long, want it short", len(e.Error()))
	}
}
