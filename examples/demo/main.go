// Command demo is 'make demo': ferry's main job on the bundled example. It
// builds ferry and the demo app, plays the kubelet (start ferry, wait for
// /readyz like a startupProbe, only then start the app), changes the
// source once, shows the reload reach the app, and shuts both down.
// Nothing leaves 127.0.0.1.
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ferrysync/ferry/internal/demoapp"
	"github.com/ferrysync/ferry/internal/localproc"
)

func main() {
	if err := demo(); err != nil {
		fmt.Fprintf(os.Stderr, "[demo]  FAILED: %v\n", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) { fmt.Printf("[demo]  "+format+"\n", args...) }

func demo() error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	work, err := os.MkdirTemp("", "ferry-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "bin")
	say("building ferry and the demo app")
	for _, pkg := range []string{"./cmd/ferry", "./examples/demo-app"} {
		out, err := exec.CommandContext(ctx, "go", "build", "-o", bin+"/", pkg).CombinedOutput()
		if err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}

	source, root := filepath.Join(work, "source"), filepath.Join(work, "root")
	if err := os.CopyFS(source, os.DirFS("examples/config")); err != nil {
		return fmt.Errorf("copy examples/config: %w", err)
	}
	ferryAddr, err := localproc.FreeAddr()
	if err != nil {
		return err
	}
	appAddr, err := localproc.FreeAddr()
	if err != nil {
		return err
	}

	say("starting ferry: local source %s, root %s", source, root)
	ferry := exec.CommandContext(ctx, filepath.Join(bin, "ferry"), "run",
		"--source", source, "--root", root, "--period", "1s",
		"--http-addr", ferryAddr, "--notify-url", "http://"+appAddr+"/-/reload", "--log-format", "text")
	if err := startPrefixed(ferry, "[ferry] "); err != nil {
		return err
	}
	defer stop(ferry)

	t0 := time.Now()
	if err := poll(ctx, "ferry /readyz", func() (bool, error) {
		resp, err := http.Get("http://" + ferryAddr + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == 200, nil
	}); err != nil {
		return err
	}
	say("startupProbe passed after %s: %s/current is published", time.Since(t0).Round(time.Millisecond), root)
	target, _ := os.Readlink(filepath.Join(root, "current"))
	say("%s/current -> %s", root, target)

	app := exec.CommandContext(ctx, filepath.Join(bin, "demo-app"), "--addr", appAddr, "--dir", filepath.Join(root, "current"))
	if err := startPrefixed(app, ""); err != nil {
		return err
	}
	defer stop(app)
	if err := poll(ctx, "demo app", func() (bool, error) { _, err := demoapp.Get(appAddr); return err == nil, nil }); err != nil {
		return err
	}

	say("editing the source: new greeting in app.yaml")
	newGreeting := "hello from revision two"
	if err := os.WriteFile(filepath.Join(source, "app.yaml"), []byte("greeting: "+newGreeting+"\n"), 0o644); err != nil {
		return err
	}
	t1 := time.Now()
	var st demoapp.State
	if err := poll(ctx, "the reload", func() (bool, error) {
		st, err = demoapp.Get(appAddr)
		return err == nil && st.Reloads >= 1, nil
	}); err != nil {
		return err
	}
	say("reload reached the app %s after the edit", time.Since(t1).Round(time.Millisecond))
	if st.Greeting != newGreeting {
		return fmt.Errorf("app reads %q after the reload, want %q", st.Greeting, newGreeting)
	}
	if st.ReadErrs > 0 {
		return fmt.Errorf("app saw %d read errors (first: %s)", st.ReadErrs, st.FirstErr)
	}

	if err := stop(app); err != nil {
		return fmt.Errorf("app: %w", err)
	}
	if err := stop(ferry); err != nil {
		return fmt.Errorf("ferry did not exit cleanly on SIGTERM: %w", err)
	}
	fmt.Println()
	say("summary: ferry published the example, gated the app's start on /readyz,")
	say("picked up one edit, swapped the link atomically and notified the app once.")
	say("app: %d reload(s), now reads %q; %d full-tree reads, %d errors.", st.Reloads, st.Greeting, st.Reads, st.ReadErrs)
	say("done in %s", time.Since(start).Round(100*time.Millisecond))
	return nil
}

func poll(ctx context.Context, what string, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startPrefixed starts cmd with its output copied to ours, line by line.
func startPrefixed(cmd *exec.Cmd, prefix string) error {
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			fmt.Println(prefix + strings.TrimSpace(sc.Text()))
		}
	}()
	return cmd.Start()
}

// stop sends SIGTERM, as the kubelet does, and waits for a clean exit.
func stop(cmd *exec.Cmd) error {
	if cmd.Process == nil || cmd.ProcessState != nil {
		return nil
	}
	code, _, err := localproc.Terminate(cmd, 5*time.Second)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit status %d", code)
	}
	return err
}
