package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testkit"
)

// A file:// source drives the exec hook and the touch file of the real
// binary: the first publish touches the file and runs nothing; each change
// runs the hook with the change in its environment and touches the file.
func TestRunExecHookAndTouchFileFollowEachChange(t *testing.T) {
	o := newFileOrigin(t)
	o.set(t, 1, nil)
	root := t.TempDir()
	link := filepath.Join(root, "cfg")
	work := t.TempDir()
	touch, runs := filepath.Join(work, "reload"), filepath.Join(work, "runs")
	p := startFerry(t, procOptions{root: root, args: append(o.source("cfg"), "--period", "100ms",
		"--touch-file", touch,
		"--exec-command", `/bin/sh -c 'echo "$FERRY_SOURCE $FERRY_PREVIOUS_REVISION $FERRY_REVISION $FERRY_PATH $(cat app.yaml)" >> `+runs+`'`)})
	waitForGen(t, 20*time.Second, link, 1)
	testkit.Eventually(t, 10*time.Second, "the touch file after the first publish", func() bool {
		_, err := os.Stat(touch)
		return err == nil
	})
	first := p.status()["cfg"].Revision
	if _, err := os.Stat(runs); !os.IsNotExist(err) {
		t.Errorf("the exec hook ran for the first publish: %v", err)
	}
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(touch, past, past); err != nil {
		t.Fatal(err)
	}

	o.set(t, 2, nil)
	waitForGen(t, 20*time.Second, link, 2)
	testkit.Eventually(t, 10*time.Second, "the exec hook told of generation 2", func() bool {
		return p.metric("ferry_notify_total", "target", "exec:/bin/sh", "result", "ok") == 1
	})
	second := p.status()["cfg"].Revision
	b, _ := os.ReadFile(runs)
	if want := fmt.Sprintf("cfg %s %s %s greeting: revision 2\n", first, second, link); string(b) != want {
		t.Errorf("the hook saw %q, want %q", b, want)
	}
	testkit.Eventually(t, 10*time.Second, "the touch file touched again", func() bool {
		fi, err := os.Stat(touch)
		return err == nil && fi.ModTime().After(past.Add(time.Minute))
	})
	if v := p.metric("ferry_notify_total", "target", "touch:"+touch, "result", "ok"); v != 2 {
		t.Errorf("touches = %v, want 2 (the first publish and the change)", v)
	}
}

// nginxConf is an nginx configuration that answers "gen N" on addr, with
// extra directives in its server block.
func nginxConf(addr, pidFile string, gen int, extra string) map[string]string {
	return map[string]string{"nginx.conf": fmt.Sprintf(`daemon off;
pid %s;
error_log stderr;
events {}
http {
  access_log off;
  server {
    listen %s;
    %s
    location / { return 200 "gen %d\n"; }
  }
}
`, pidFile, addr, extra, gen)}
}

// The README's standalone example: the exec hook replaces a wrapper around
// 'nginx -s reload'. nginx -s reload parses the new config first and exits
// 1 when it is bad, which --rollback-on-reject takes as a refusal: the
// previous revision goes back, and nginx is reloaded on it.
func TestRunReloadsNginxWithTheExecHookAndRollsBackWhatItRefuses(t *testing.T) {
	testkit.Tool(t, "nginx", "nginx")
	o := newFileOrigin(t)
	prefix := t.TempDir()
	pidFile, addr := filepath.Join(prefix, "nginx.pid"), testkit.FreeAddr(t)
	o.set(t, 1, nginxConf(addr, pidFile, 1, ""))
	root := t.TempDir()
	link := filepath.Join(root, "web")
	conf := filepath.Join(link, "nginx.conf")
	p := startFerry(t, procOptions{root: root, args: append(o.source("web"), "--period", "100ms",
		"--exec-command", fmt.Sprintf("nginx -p %s -e /dev/stderr -c %s -s reload", prefix, conf),
		"--rollback-on-reject", "--reject-after", "1s")})
	waitForGen(t, 20*time.Second, link, 1)

	nginx := exec.Command("nginx", "-p", prefix, "-e", "/dev/stderr", "-c", conf)
	var out testkit.LogBuffer
	nginx.Stdout, nginx.Stderr = &out, &out
	// Its workers hold its output too: the whole group goes at the end.
	nginx.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	nginx.WaitDelay = time.Second
	if err := nginx.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-nginx.Process.Pid, syscall.SIGKILL)
		nginx.Wait()
		if t.Failed() {
			t.Logf("nginx:\n%s", tail(out.String(), 20))
		}
	})
	serves := func(want string) func() bool {
		return func() bool {
			resp, err := http.Get("http://" + addr + "/")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return string(b) == want
		}
	}
	testkit.Eventually(t, 20*time.Second, "nginx on generation 1", serves("gen 1\n"))

	o.set(t, 2, nginxConf(addr, pidFile, 2, ""))
	testkit.Eventually(t, 20*time.Second, "nginx reloaded on generation 2", serves("gen 2\n"))
	good := p.status()["web"].Revision

	o.set(t, 3, nginxConf(addr, pidFile, 3, "lissten 8080;"))
	testkit.Eventually(t, 30*time.Second, "the rejection in /status", func() bool { return p.status()["web"].RejectedRevision != "" })
	st := p.status()["web"]
	if want := "app: exec:nginx: exit status 1: "; !strings.HasPrefix(st.RejectedReason, want) || !strings.Contains(st.RejectedReason, `unknown directive "lissten"`) {
		t.Errorf("/status rejected_reason = %q, want it to start with %q and quote nginx", st.RejectedReason, want)
	}
	if st.Revision != good {
		t.Errorf("/status revision %s after the rollback, want %s back", st.Revision, good)
	}
	testkit.Eventually(t, 10*time.Second, "nginx reloaded on the revision put back", func() bool {
		return p.metric("ferry_notify_total", "target", "exec:nginx", "result", "ok") == 2
	})
	if !serves("gen 2\n")() {
		t.Errorf("nginx does not serve generation 2 after the rollback")
	}
	var warned bool
	for _, r := range p.logs() {
		warned = warned || r.str("msg") == "exec hook failed" && r.str("level") == "WARN" && strings.Contains(r.str("output"), `unknown directive "lissten"`)
	}
	if !warned {
		t.Errorf("no WARN line with nginx's output")
	}
}

// In a --config file each source has its own hook and touch file: a
// change of one runs and touches only its own.
func TestConfigFileGivesEachSourceItsOwnHookAndTouchFile(t *testing.T) {
	a, b := newFileOrigin(t), newFileOrigin(t)
	a.set(t, 1, nil)
	b.set(t, 1, nil)
	root, work := t.TempDir(), t.TempDir()
	touchA, touchB, runs := filepath.Join(work, "a.stamp"), filepath.Join(work, "b.stamp"), filepath.Join(work, "runs")
	config := filepath.Join(work, "ferry.yaml")
	text := fmt.Sprintf(`sources:
  - name: a
    url: %s
    exec-command: "/bin/sh -c 'echo $FERRY_SOURCE >> %s'"
    touch-file: %s
  - name: b
    url: %s
    touch-file: %s
`, a.live, runs, touchA, b.live, touchB)
	if err := os.WriteFile(config, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startFerry(t, procOptions{root: root, args: []string{"--config", config, "--period", "100ms"}})
	waitForGen(t, 20*time.Second, filepath.Join(root, "a"), 1)
	waitForGen(t, 20*time.Second, filepath.Join(root, "b"), 1)
	past := time.Now().Add(-time.Hour)
	for _, f := range []string{touchA, touchB} {
		testkit.Eventually(t, 10*time.Second, f+" after the first publish", func() bool { return os.Chtimes(f, past, past) == nil })
	}
	fresh := func(f string) bool {
		fi, err := os.Stat(f)
		return err == nil && fi.ModTime().After(past.Add(time.Minute))
	}

	a.set(t, 2, nil)
	testkit.Eventually(t, 20*time.Second, "a's hook", func() bool {
		return p.metric("ferry_notify_total", "target", "exec:/bin/sh", "result", "ok") == 1
	})
	testkit.Eventually(t, 10*time.Second, "a's touch file touched", func() bool { return fresh(touchA) })
	if fresh(touchB) {
		t.Errorf("a's change touched b's file")
	}
	b.set(t, 2, nil)
	testkit.Eventually(t, 20*time.Second, "b's touch file touched", func() bool { return fresh(touchB) })
	if got, _ := os.ReadFile(runs); string(got) != "a\n" {
		t.Errorf("hook runs %q, want only a's change", got)
	}
}
