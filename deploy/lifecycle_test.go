package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/ferrysync/ferry/api"

	"github.com/ferrysync/ferry/internal/demoapp"
	"github.com/ferrysync/ferry/internal/localproc"
	"github.com/ferrysync/ferry/internal/testkit"
)

// origin serves the config as a tar.gz with an ETag, like a real artifact
// server; the test changes it while the "pod" runs.
type origin struct {
	mu    gosync.Mutex
	body  []byte
	etag  string
	gets  int
	srv   *httptest.Server
	files map[string]string
}

func newOrigin(t *testing.T, files map[string]string) *origin {
	o := &origin{}
	o.set(t, files)
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		body, etag := o.body, o.etag
		o.gets++
		o.mu.Unlock()
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Write(body)
	}))
	t.Cleanup(o.srv.Close)
	return o
}

func (o *origin) url() string { return o.srv.URL + "/config.tar.gz" }

func (o *origin) set(t *testing.T, files map[string]string) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, content := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg})
		tw.Write([]byte(content))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	gz.Close()
	sum := sha256.Sum256(buf.Bytes())
	o.mu.Lock()
	o.body, o.etag, o.files = buf.Bytes(), `"`+hex.EncodeToString(sum[:8])+`"`, files
	o.mu.Unlock()
}

// kubelet maps a manifest's pod onto this machine: each volume becomes a
// directory, ports become free loopback ports, containers become processes.
type kubelet struct {
	t       *testing.T
	pod     *corev1.PodSpec
	volumes map[string]string // volume name -> directory
	ports   map[int32]string  // container port -> 127.0.0.1:free
}

func newKubelet(t *testing.T, pod *corev1.PodSpec) *kubelet {
	k := &kubelet{t: t, pod: pod, volumes: map[string]string{}, ports: map[int32]string{}}
	for _, v := range pod.Volumes {
		dir := filepath.Join(t.TempDir(), v.Name)
		os.MkdirAll(dir, 0o755)
		k.volumes[v.Name] = dir
	}
	for _, c := range append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...) {
		for _, p := range c.Ports {
			k.ports[p.ContainerPort] = freeAddr(t)
		}
	}
	return k
}

func freeAddr(t *testing.T) string {
	addr, err := localproc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// path maps a path inside container c to this machine, through c's mounts.
// A file under a Secret mount is created with a test value.
func (k *kubelet) path(c *corev1.Container, p string) string {
	for _, m := range c.VolumeMounts {
		if rest, ok := strings.CutPrefix(p, m.MountPath); ok && (rest == "" || rest[0] == '/') {
			local := k.volumes[m.Name] + rest
			if k.isSecret(m.Name) && rest != "" {
				if err := os.WriteFile(local, []byte("test-secret\n"), 0o600); err != nil {
					k.t.Fatal(err)
				}
			}
			return local
		}
	}
	k.t.Fatalf("container %s: %s is on no volume mount", c.Name, p)
	return ""
}

func (k *kubelet) isSecret(volume string) bool {
	for _, v := range k.pod.Volumes {
		if v.Name == volume {
			return v.Secret != nil
		}
	}
	return false
}

// port resolves a probe or URL port of container c to its local address.
func (k *kubelet) port(c *corev1.Container, p *corev1.Probe) string {
	for _, cp := range c.Ports {
		if cp.Name == p.HTTPGet.Port.StrVal || cp.ContainerPort == p.HTTPGet.Port.IntVal {
			return k.ports[cp.ContainerPort]
		}
	}
	k.t.Fatalf("probe port %v not found", p.HTTPGet.Port)
	return ""
}

// ferryCommand turns ferry's container spec into a local command: the source
// is swapped for the local origin, paths are mapped through the mounts,
// the notify URL and the endpoints move to free loopback ports.
func (k *kubelet) ferryCommand(bin string, c *corev1.Container, sourceURL string, overrides map[string]string) *exec.Cmd {
	args := []string{c.Args[0]}
	for _, a := range c.Args[1:] {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		switch {
		case overrides[name] != "":
			value = overrides[name]
		case name == "source":
			srcName, _, _ := strings.Cut(value, "=")
			value = srcName + "=" + sourceURL
		case name == "root" || strings.HasSuffix(name, "-file"):
			value = k.path(c, value)
		case name == "notify-url":
			for port, addr := range k.ports {
				value = strings.Replace(value, fmt.Sprintf("localhost:%d", port), addr, 1)
			}
		}
		args = append(args, "--"+name+"="+value)
	}
	for _, p := range c.Ports {
		args = append(args, "--http-addr="+k.ports[p.ContainerPort])
	}
	cmd := exec.Command(bin, args...)
	for _, e := range c.Env {
		cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
	}
	return cmd
}

// startSidecar starts ferry's container c as the kubelet starts a native
// sidecar, against sourceURL, and returns once its startupProbe passed;
// the process is killed when the test ends, if it still runs.
func (k *kubelet) startSidecar(bin string, c *corev1.Container, sourceURL string) (*exec.Cmd, *bytes.Buffer) {
	k.t.Helper()
	var log bytes.Buffer
	cmd := k.ferryCommand(bin, c, sourceURL, nil)
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	k.t.Cleanup(func() { cmd.Process.Kill() })
	k.startupProbe(c)
	return cmd, &log
}

// triggerSync asks ferry's container c for a sync now (the manifests poll
// every 30s), from loopback, as a CI hook would.
func (k *kubelet) triggerSync(c *corev1.Container) {
	k.t.Helper()
	resp, err := http.Post("http://"+k.port(c, c.LivenessProbe)+api.SyncPath, "", nil)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		k.t.Fatalf("POST /sync: %v %v", resp, err)
	}
	resp.Body.Close()
}

// appDir finds the directory the app reads (ROOT/NAME) and maps it.
func (k *kubelet) appDir(app *corev1.Container, root, name string) string {
	return k.path(app, root+"/"+name)
}

// startupProbe polls like the kubelet: every period, up to the failure
// threshold (both scaled from seconds to 50ms steps).
func (k *kubelet) startupProbe(c *corev1.Container) {
	p := c.StartupProbe
	url := "http://" + k.port(c, p) + p.HTTPGet.Path
	period := time.Duration(p.PeriodSeconds) * 50 * time.Millisecond
	for i := int32(0); i < p.FailureThreshold; i++ {
		if status(url) == http.StatusOK {
			return
		}
		time.Sleep(period)
	}
	k.t.Fatalf("startupProbe %s failed %d times: the kubelet would restart ferry", url, p.FailureThreshold)
}

func status(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// bins builds ferry and the demo app once for the package's tests.
var bins testkit.Binaries

func TestMain(m *testing.M) {
	code := m.Run()
	bins.Close()
	os.Exit(code)
}

// build returns ferry and the demo app, as the pod's images would hold them.
func build(t *testing.T) (ferry, app string) {
	return bins.Path(t, "github.com/ferrysync/ferry/cmd/ferry"), bins.Path(t, "github.com/ferrysync/ferry/examples/demo-app")
}

// sigterm stops cmd as the kubelet does and returns its exit code and how
// long it took.
func sigterm(t *testing.T, cmd *exec.Cmd) (int, time.Duration) {
	t.Helper()
	code, took, err := localproc.Terminate(cmd, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return code, took
}

func config(greeting string) map[string]string {
	return map[string]string{
		"app.yaml":        "greeting: " + greeting + "\n",
		"prometheus.yml":  "global:\n  scrape_interval: 15s\n",
		"rules/alert.yml": "groups: []\n",
	}
}

// TestNativeSidecarPodLifecycle plays the kubelet from native-sidecar.yaml:
// ferry starts first; the app starts only after ferry's startupProbe
// passes; a change reaches the app; at shutdown the app gets SIGTERM first,
// then ferry, which must exit 0 promptly.
func TestNativeSidecarPodLifecycle(t *testing.T) {
	m := load(t, "kubernetes/native-sidecar.yaml")
	ferryBin, appBin := build(t)
	k := newKubelet(t, m.pod())
	f := m.ferry(t)
	o := newOrigin(t, config("one"))

	ferry, ferryLog := k.startSidecar(ferryBin, f, o.url())

	app := &m.pod().Containers[0]
	root, name := flag(f.Args, "root"), strings.Split(flag(f.Args, "source"), "=")[0]
	appAddr := k.ports[app.Ports[0].ContainerPort]
	appCmd := exec.Command(appBin, "--addr", appAddr, "--dir", k.appDir(app, root, name))
	appCmd.Stderr = os.Stderr
	if err := appCmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer appCmd.Process.Kill()
	testkit.Eventually(t, 15*time.Second, "the app", func() bool { st, err := demoapp.Get(appAddr); return err == nil && st.Greeting == "one" })

	o.set(t, config("two"))
	// The manifest polls every 30s (the default); ask for a sync now, as a
	// CI hook would, from loopback.
	k.triggerSync(f)
	testkit.Eventually(t, 15*time.Second, "the reload", func() bool { st, _ := demoapp.Get(appAddr); return st.Reloads == 1 && st.Greeting == "two" })
	if lp := f.LivenessProbe; status("http://"+k.port(f, lp)+lp.HTTPGet.Path) != http.StatusOK {
		t.Fatal("livenessProbe fails while syncing")
	}
	st, _ := demoapp.Get(appAddr)
	if st.ReadErrs != 0 {
		t.Fatalf("app saw %d read errors", st.ReadErrs)
	}

	if code, _ := sigterm(t, appCmd); code != 0 {
		t.Fatalf("app exit %d", code)
	}
	if code, took := sigterm(t, ferry); code != 0 || took > 2*time.Second {
		t.Fatalf("ferry exit %d after %s on SIGTERM, want 0 promptly\n%s", code, took, ferryLog.String())
	}
	if leftovers, _ := filepath.Glob(filepath.Join(k.volumes["config"], ".ferry", "*", ".stage-*")); len(leftovers) > 0 {
		t.Fatalf("staging left on the volume: %v", leftovers)
	}
}

// TestOneShotPodLifecycle plays the kubelet from init-oneshot.yaml: the init
// container must exit 0 with the config in place before the app starts,
// and exit 1 when the origin is down, so the pod never starts without it.
func TestOneShotPodLifecycle(t *testing.T) {
	m := load(t, "kubernetes/init-oneshot.yaml")
	ferryBin, appBin := build(t)
	f := m.ferry(t)
	app := &m.pod().Containers[0]
	root, name := flag(f.Args, "root"), strings.Split(flag(f.Args, "source"), "=")[0]

	t.Run("origin up", func(t *testing.T) {
		k := newKubelet(t, m.pod())
		o := newOrigin(t, config("one"))
		out, err := k.ferryCommand(ferryBin, f, o.url(), nil).CombinedOutput()
		if err != nil {
			t.Fatalf("init container failed: %v\n%s", err, out)
		}
		appAddr := k.ports[app.Ports[0].ContainerPort]
		appCmd := exec.Command(appBin, "--addr", appAddr, "--dir", k.appDir(app, root, name))
		if err := appCmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer appCmd.Process.Kill()
		testkit.Eventually(t, 15*time.Second, "the app", func() bool { st, err := demoapp.Get(appAddr); return err == nil && st.Greeting == "one" })
		sigterm(t, appCmd)
	})
	t.Run("origin down", func(t *testing.T) {
		k := newKubelet(t, m.pod())
		o := newOrigin(t, config("one"))
		o.srv.Close()
		// The manifest gives 2m of retries; the test keeps the rest and
		// shortens only that.
		cmd := k.ferryCommand(ferryBin, f, o.url(), map[string]string{"once-timeout": "1s"})
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("init container with the origin down: %v, want exit 1\n%s", err, out)
		}
		if !strings.Contains(string(out), "connection refused") {
			t.Errorf("the error does not name the cause:\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(k.volumes["config"], name)); err == nil {
			t.Fatal("a link was published although the sync failed")
		}
	})
}

// TestQuickstartPodLifecycle plays the kubelet from quickstart.yaml: ferry
// as a native sidecar, its startupProbe passing once the first revision is
// on the volume, where the app (busybox httpd, which reads files per
// request) finds it through the link; a change reaches the same path with
// no reload.
func TestQuickstartPodLifecycle(t *testing.T) {
	m := load(t, "kubernetes/quickstart.yaml")
	ferryBin, _ := build(t)
	k := newKubelet(t, m.pod())
	f := m.ferry(t)
	o := newOrigin(t, config("one"))

	ferry, ferryLog := k.startSidecar(ferryBin, f, o.url())

	// httpd -h DIR serves what the app's mount shows at DIR.
	app := &m.pod().Containers[0]
	served := app.Args[len(app.Args)-1]
	read := func() string {
		b, _ := os.ReadFile(filepath.Join(k.path(app, served), "app.yaml"))
		return string(b)
	}
	if got := read(); got != "greeting: one\n" {
		t.Fatalf("the app's %s/app.yaml = %q once ferry is ready\n%s", served, got, ferryLog.String())
	}
	o.set(t, config("two"))
	k.triggerSync(f)
	testkit.Eventually(t, 15*time.Second, "the new revision at the app's path", func() bool { return read() == "greeting: two\n" })
	if code, took := sigterm(t, ferry); code != 0 || took > 2*time.Second {
		t.Fatalf("ferry exit %d after %s on SIGTERM, want 0 promptly\n%s", code, took, ferryLog.String())
	}
}
