package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/demoapp"
	"github.com/ferrysync/ferry/internal/localproc"
	"github.com/ferrysync/ferry/internal/testkit"
)

// terminate sends SIGTERM and returns the exit code and how long it took.
func terminate(t *testing.T, cmd *exec.Cmd) (int, time.Duration) {
	t.Helper()
	code, took, err := localproc.Terminate(cmd, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return code, took
}

// publishedRevision reads the one source's revision from /status.
func publishedRevision(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Sources []struct{ Revision string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || len(st.Sources) != 1 || st.Sources[0].Revision == "" {
		t.Fatalf("/status: %+v, %v", st, err)
	}
	return st.Sources[0].Revision
}

func writeRevision(t *testing.T, dir string, i int) {
	t.Helper()
	token := fmt.Sprintf("token %d", i)
	files := map[string]string{
		"app.yaml":         fmt.Sprintf("greeting: revision %d\n", i),
		"token-a":          token,
		"nested/token-b":   token,
		"nested/x/token-c": token,
	}
	for p, c := range files {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		// Write beside and rename, as an editor or a ConfigMap update does.
		tmp := full + ".tmp"
		if err := os.WriteFile(tmp, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, full); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEndToEndPlayingTheKubelet starts ferry as a native sidecar would be,
// gates the app on /readyz like a startupProbe, then changes the source
// several times while the app reads the volume continuously.
func TestEndToEndPlayingTheKubelet(t *testing.T) {
	ferryBin, appBin := bins.Path(t, ferryPkg), bins.Path(t, appPkg)
	source, root := t.TempDir(), t.TempDir()
	writeRevision(t, source, 1)
	ferryAddr, appAddr := testkit.FreeAddr(t), testkit.FreeAddr(t)

	var ferryLog strings.Builder
	ferry := exec.Command(ferryBin, "run", "--source", "config="+source, "--root", root,
		"--period", "100ms", "--http-addr", ferryAddr, "--notify-url", "http://"+appAddr+"/-/reload")
	ferry.Stderr = &ferryLog
	if err := ferry.Start(); err != nil {
		t.Fatal(err)
	}
	defer ferry.Process.Kill()
	testkit.Eventually(t, 10*time.Second, "/readyz 200", func() bool { return testkit.HTTPStatus("http://"+ferryAddr+"/readyz") == 200 })

	first := publishedRevision(t, ferryAddr)

	// Only now does the kubelet start the app.
	app := exec.Command(appBin, "--addr", appAddr, "--dir", filepath.Join(root, "config"), "--read-interval", "1ms")
	app.Stderr = os.Stderr
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	defer app.Process.Kill()
	testkit.Eventually(t, 10*time.Second, "the app", func() bool { _, err := demoapp.Get(appAddr); return err == nil })

	const changes = 5
	for i := 2; i <= changes+1; i++ {
		writeRevision(t, source, i)
		want := fmt.Sprintf("revision %d", i)
		testkit.Eventually(t, 10*time.Second, "the app to read "+want, func() bool {
			st, err := demoapp.Get(appAddr)
			return err == nil && st.Greeting == want
		})
	}
	st, _ := demoapp.Get(appAddr)
	// Each change was seen through a reload; a poll that caught the source
	// half-edited may add one more.
	if st.Reloads < changes || st.Reloads > 2*changes {
		t.Fatalf("app reloaded %d times for %d changes", st.Reloads, changes)
	}
	for _, rev := range st.Revisions {
		if rev == first {
			t.Fatalf("the first publish (%s) was notified: the app had not started yet", first)
		}
	}
	if st.ReadErrs != 0 {
		t.Fatalf("app saw %d read errors in %d reads; first: %s", st.ReadErrs, st.Reads, st.FirstErr)
	}
	if testkit.HTTPStatus("http://"+ferryAddr+"/healthz") != 200 {
		t.Fatal("/healthz not 200 while syncing")
	}

	// Pod shutdown: the app first, then the sidecar.
	if code, _ := terminate(t, app); code != 0 {
		t.Fatalf("app exit %d", code)
	}
	code, took := terminate(t, ferry)
	if code != 0 || took > 2*time.Second {
		t.Fatalf("ferry exit %d after %s on SIGTERM, want 0 within 2s\n%s", code, took, ferryLog.String())
	}
	if strings.Contains(ferryLog.String(), `"level":"ERROR"`) {
		t.Errorf("errors logged:\n%s", ferryLog.String())
	}
	t.Logf("%d changes, %d reloads, %d full-tree reads, 0 errors", changes, st.Reloads, st.Reads)
}

// TestOnceAsInitContainer: exit 0 with the revision on disk, or 1 when the
// source is missing, before the app would start.
func TestOnceAsInitContainer(t *testing.T) {
	ferryBin := bins.Path(t, ferryPkg)
	source, root := t.TempDir(), t.TempDir()
	writeRevision(t, source, 1)
	out, err := exec.Command(ferryBin, "once", "--source", source, "--root", root).CombinedOutput()
	if err != nil {
		t.Fatalf("ferry once: %v\n%s", err, out)
	}
	if data, err := os.ReadFile(filepath.Join(root, "current", "app.yaml")); err != nil || !strings.Contains(string(data), "revision 1") {
		t.Fatalf("after once: %q, %v", data, err)
	}
	cmd := exec.Command(ferryBin, "once", "--source", filepath.Join(source, "missing"), "--root", t.TempDir(), "--once-timeout", "200ms")
	out, err = cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("once on a missing source: %v, want exit 1\n%s", err, out)
	}
}
