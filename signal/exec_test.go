package signal

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrysync/ferry/internal/testkit"
)

// execOptions are Options for an exec hook with intervals short enough for
// tests.
func execOptions(command string) Options {
	return Options{ExecCommand: command, InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond}
}

// hookDir is a Change.Path for a hook to run in, with the file its runs
// append to.
func hookDir(t *testing.T) (dir, log string) {
	dir = t.TempDir()
	return dir, filepath.Join(dir, "runs")
}

// runs reads what the hook appended to log, one line per run.
func runs(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

func TestExecHookSeesTheChangeInItsEnvironment(t *testing.T) {
	dir, out := hookDir(t)
	// ferry's own FERRY_SOURCE (it configures --source) must not leak in.
	t.Setenv("FERRY_SOURCE", "web=https://example.com/x")
	t.Setenv("FERRY_ROLLBACK_OF", "stale")
	n := newNotifiers(t, execOptions(`/bin/sh -c 'env | grep -E "^FERRY_(SOURCE|REVISION|PREVIOUS_REVISION|PATH|ORIGIN_REVISION|ROLLBACK_OF)=" | sort > `+out+`; echo "pwd=$(pwd)" >> `+out+`; echo reloaded'`))
	n.start(t)
	n.Notify(Change{Source: "web", Revision: "r2", Previous: "r1", OriginRevision: "c0ffee", Path: dir})
	n.waitTotal(t, "exec:/bin/sh", resultOK, 1)
	b, _ := os.ReadFile(out)
	real, _ := filepath.EvalSymlinks(dir)
	want := "FERRY_ORIGIN_REVISION=c0ffee\nFERRY_PATH=" + dir + "\nFERRY_PREVIOUS_REVISION=r1\nFERRY_REVISION=r2\nFERRY_ROLLBACK_OF=\nFERRY_SOURCE=web\npwd=" + real + "\n"
	if string(b) != want {
		t.Errorf("the hook saw\n%s\nwant\n%s", b, want)
	}
	logs := n.logs.String()
	for _, line := range []string{
		`level=INFO msg="notified application" command=/bin/sh source=web revision=r2 attempts=1`,
		`level=DEBUG msg="exec hook done" command=/bin/sh source=web revision=r2 duration=`,
		`output="reloaded\n"`,
	} {
		if !strings.Contains(logs, line) {
			t.Errorf("logs lack %q:\n%s", line, logs)
		}
	}
}

// TestExecHookSeesSeveralChangesAtOnce: changes told together run the hook
// once, in the root above their links, each variable listing every change.
func TestExecHookSeesSeveralChangesAtOnce(t *testing.T) {
	root, out := hookDir(t)
	n := newNotifiers(t, execOptions(`/bin/sh -c 'env | grep -E "^FERRY_(SOURCE|REVISION|PATH|CHANGES)=" | sort > `+out+`; echo "pwd=$(pwd)" >> `+out+`'`))
	n.start(t)
	n.Notify(Change{Source: "web", Revision: "w2", Path: root + "/web"}, Change{Source: "db", Revision: "d2", Path: root + "/db"})
	n.waitTotal(t, "exec:/bin/sh", resultOK, 1)
	b, _ := os.ReadFile(out)
	real, _ := filepath.EvalSymlinks(root)
	want := `FERRY_CHANGES={"changes":[{"source":"db","revision":"d2","path":"` + root + `/db"},{"source":"web","revision":"w2","path":"` + root + `/web"}]}` + "\n" +
		"FERRY_PATH=" + root + "/db," + root + "/web\nFERRY_REVISION=d2,w2\nFERRY_SOURCE=db,web\npwd=" + real + "\n"
	if string(b) != want {
		t.Errorf("the hook saw\n%s\nwant\n%s", b, want)
	}
	if logs := n.logs.String(); !strings.Contains(logs, `msg="notified application" command=/bin/sh sources=db,web revisions=d2,w2 attempts=1`) {
		t.Errorf("logs lack the delivery of both:\n%s", logs)
	}
}

func TestExecHookIsRetriedUntilItExitsZero(t *testing.T) {
	dir, log := hookDir(t)
	n := newNotifiers(t, execOptions(`sh -c 'echo run >> runs; [ $(wc -l < runs) -ge 3 ] || { echo "first line"; echo "not yet"; exit 4; }'`))
	n.start(t)
	n.Notify(Change{Source: "web", Revision: "r2", Path: dir})
	n.waitTotal(t, "exec:sh", resultOK, 1)
	if got := runs(t, log); len(got) != 3 {
		t.Errorf("the hook ran %d times, want 3", len(got))
	}
	if got := n.total(t, "exec:sh", resultRetry); got != 2 {
		t.Errorf("retries = %v, want 2", got)
	}
	want := `level=WARN msg="exec hook failed" command=sh source=web revision=r2 duration=`
	if logs := n.logs.String(); strings.Count(logs, want) != 2 || !strings.Contains(logs, `error="exit status 4" output="first line | not yet"`) {
		t.Errorf("want two WARN lines with the exit status and output:\n%s", logs)
	}
}

func TestExecHookTimeoutKillsItsGroupAndCanRefuse(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	refusals := make(chan Refusal, 1)
	o := execOptions(fmt.Sprintf(`sh -c 'sleep 60 & echo $! > %s; echo waiting; wait'`, pidFile))
	o.ExecTimeout, o.RejectAfter, o.Refused = 300*time.Millisecond, time.Millisecond, func(r Refusal) { refusals <- r }
	n := newNotifiers(t, o)
	n.start(t)
	n.Notify(Change{Source: "web", Revision: "r2", Path: dir})
	select {
	case r := <-refusals:
		if r.Target != "exec:sh" || r.Change.Revision != "r2" || r.Err.Error() != "timed out after 300ms: waiting" {
			t.Errorf("refusal %+v (%v)", r, r.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no refusal after the hook timed out")
	}
	if got := n.total(t, "exec:sh", resultFailed); got != 1 {
		t.Errorf("failed = %v, want 1", got)
	}
	testkit.Killed(t, pidFile)
}

// A slow hook that fails: changes that come while it runs replace each
// other, and only the newest is run and retried.
func TestExecHookRetriesOnlyTheNewestChange(t *testing.T) {
	dir, log := hookDir(t)
	n := newNotifiers(t, execOptions(`sh -c 'echo $FERRY_REVISION >> runs; sleep 0.3; [ $FERRY_REVISION = r3 ] && [ $(grep -c r3 runs) -ge 2 ]'`))
	n.start(t)
	n.Notify(Change{Source: "web", Revision: "r1", Path: dir})
	testkit.Eventually(t, 5*time.Second, "r1 to run", func() bool { return len(runs(t, log)) == 1 })
	n.Notify(Change{Source: "web", Revision: "r2", Path: dir})
	n.Notify(Change{Source: "web", Revision: "r3", Path: dir})
	n.waitTotal(t, "exec:sh", resultOK, 1)
	if got := strings.Join(runs(t, log), " "); got != "r1 r3 r3" {
		t.Errorf("runs %q, want r1 once, then r3 until it succeeds", got)
	}
	// r2 replaced in the mailbox by r3, r1's retry replaced by r3.
	if got := n.total(t, "exec:sh", resultDropped); got != 2 {
		t.Errorf("dropped = %v, want 2", got)
	}
}

func TestExecHookShutdownStopsTheRunningHook(t *testing.T) {
	dir, log := hookDir(t)
	n := newNotifiers(t, execOptions(`sh -c 'echo started >> runs; sleep 60'`))
	stop := n.start(t)
	n.Notify(Change{Source: "web", Revision: "r2", Path: dir})
	testkit.Eventually(t, 5*time.Second, "the hook to start", func() bool { return len(runs(t, log)) == 1 })
	if took := stop(); took > 5*time.Second {
		t.Errorf("Run took %s to return, want the hook killed at once", took)
	}
	if n.total(t, "exec:sh", resultFailed) != 0 || n.total(t, "exec:sh", resultRetry) != 0 {
		t.Errorf("a hook stopped by shutdown counted as a failure or retry")
	}
}

func TestExecHookOutputIsCappedInTheLog(t *testing.T) {
	dir, _ := hookDir(t)
	logs := &testkit.LogBuffer{}
	o := execOptions(`sh -c 'i=0; while [ $i -lt 10000 ]; do echo line $i 0123456789012345678901234567890123456789; i=$((i+1)); done; exit 1'`)
	o.MaxElapsed, o.Logger, o.Registerer = time.Nanosecond, logs.JSONLogger(), prometheus.NewRegistry()
	n, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Background(t, n.Run)
	n.Notify(Change{Source: "web", Revision: "r2", Path: dir})
	var mu sync.Mutex
	outputs := map[string]string{}
	testkit.Eventually(t, 10*time.Second, "the hook's failure and its output logged", func() bool {
		mu.Lock()
		defer mu.Unlock()
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var line struct{ Msg, Output string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Output != "" {
				outputs[line.Msg] = line.Output
			}
		}
		return outputs["exec hook failed"] != "" && outputs["exec hook output"] != ""
	})
	if full := outputs["exec hook output"]; len(full) < execOutputLimit || len(full) > execOutputLimit+100 ||
		!strings.HasPrefix(full, "line 0 ") || !strings.HasSuffix(full, "more bytes not kept]") {
		t.Errorf("DEBUG output: %d bytes, %q...%q; want the first %d and a note", len(full), full[:20], full[len(full)-30:], execOutputLimit)
	}
	if ex := outputs["exec hook failed"]; len(ex) > excerptLimit+10 || !strings.HasPrefix(ex, "line 0 ") || !strings.HasSuffix(ex, "more bytes not kept]") {
		t.Errorf("WARN excerpt: %d bytes: %q", len(ex), ex)
	}
}
