package runcmd

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testkit"
)

func TestSplitRefusesWhatNeedsAShell(t *testing.T) {
	for _, line := range []string{"nginx -s reload && echo ok", "a | b", "a > out", "a; b", "a &"} {
		if _, err := Split(line); err == nil || !strings.Contains(err.Error(), "needs a shell") {
			t.Errorf("Split(%q) = %v, want it refused as needing a shell", line, err)
		}
	}
	argv, err := Split(`sh -c 'echo "a b" > /dev/null'`)
	if err != nil || len(argv) != 3 || argv[2] != `echo "a b" > /dev/null` {
		t.Errorf("quoted operators: %q, %v; want them inside the third word", argv, err)
	}
	if argv, err := Split("  "); argv != nil || err != nil {
		t.Errorf("blank line: %q, %v; want nothing", argv, err)
	}
}

func TestParseLooksUpThePATHAtOnce(t *testing.T) {
	if _, err := Parse("no-such-program-ferry --x"); err == nil || err.Error() != "no-such-program-ferry: not found on PATH" {
		t.Errorf("Parse = %v, want not found on PATH", err)
	}
	c, err := Parse("sh -c true")
	if err != nil || !filepath.IsAbs(c.Path) || c.Argv[0] != "sh" {
		t.Errorf("Parse = %+v, %v; want sh found on PATH", c, err)
	}
}

func TestRunAddsTheEnvironmentAndReportsTheExit(t *testing.T) {
	c, _ := Parse(`sh -c 'echo "x=$FERRY_X home=${HOME:+set} pwd=$(pwd)"; exit 3'`)
	dir := t.TempDir()
	t.Setenv("FERRY_X", "from ferry")
	out, err := c.Run(context.Background(), Run{Dir: dir, Env: []string{"FERRY_X=given"}, Timeout: 5 * time.Second, OutputLimit: 1 << 10})
	if err == nil || err.Error() != "exit status 3" {
		t.Errorf("err = %v, want exit status 3", err)
	}
	real, _ := filepath.EvalSymlinks(dir)
	if want := "x=given home=set pwd=" + real + "\n"; out != want {
		t.Errorf("output %q, want %q", out, want)
	}
}

func TestRunTimeoutKillsTheGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	c, _ := Parse(fmt.Sprintf(`sh -c 'sleep 60 & echo $! > %s; echo waiting; wait'`, pidFile))
	start := time.Now()
	out, err := c.Run(context.Background(), Run{Timeout: 300 * time.Millisecond, OutputLimit: 1 << 10})
	if !errors.Is(err, ErrTimeout) || err.Error() != "timed out after 300ms" || out != "waiting\n" {
		t.Errorf("Run = %q, %v; want the timeout and what it printed", out, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %s, want about the timeout", took)
	}
	testkit.Killed(t, pidFile)
}

func TestRunCancelledReturnsTheContextsError(t *testing.T) {
	c, _ := Parse("sleep 60")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Run(ctx, Run{Timeout: time.Minute})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrTimeout) {
		t.Errorf("Run = %v, want the context's error, not a timeout", err)
	}
}

func TestRunOutputIsCapped(t *testing.T) {
	c, _ := Parse(`sh -c 'i=0; while [ $i -lt 1000 ]; do echo 0123456789; i=$((i+1)); done'`)
	out, err := c.Run(context.Background(), Run{Timeout: 5 * time.Second, OutputLimit: 100})
	if err != nil || out != strings.Repeat("0123456789\n", 9)+"0\n[10900 more bytes not kept]" {
		t.Errorf("Run = %q, %v", out, err)
	}
}

func TestExcerptKeepsTheFirstAndLastLines(t *testing.T) {
	var b strings.Builder
	for i := range 100 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	if got, want := Excerpt(b.String(), 60), "line 0 | … | line 96 | line 97 | line 98 | line 99"; got != want {
		t.Errorf("Excerpt = %q, want %q", got, want)
	}
	if got := Excerpt("one\n\ntwo\n", 60); got != "one | two" {
		t.Errorf("short output: %q", got)
	}
	if got := Excerpt("first\n"+strings.Repeat("x", 500), 60); len(got) > 80 || !strings.HasPrefix(got, "first | … | xxx") {
		t.Errorf("one long last line: %q", got)
	}
}
