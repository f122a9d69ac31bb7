package deploy

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/ferrysync/ferry/internal/demoapp"
	"github.com/ferrysync/ferry/internal/testkit"
)

// plainApp is a workload as its authors wrote it, before ferry.
const plainApp = `# The demo app, which reads /etc/demo/app/app.yaml.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: demo
spec:
  selector:
    matchLabels:
      app: demo
  template:
    metadata:
      labels:
        app: demo
    spec:
      containers:
        - name: demo
          image: example/demo-app:1.0
          ports:
            - name: web
              containerPort: 8080
`

// TestInjectedPodLifecycle plays the kubelet from what 'ferry inject'
// makes of a plain Deployment, as TestNativeSidecarPodLifecycle does from
// the hand-written manifest: the sidecar's startupProbe passes once the
// config is on the volume, the app reads it through its read-only mount,
// a change reaches it, and both stop cleanly.
func TestInjectedPodLifecycle(t *testing.T) {
	ferryBin, appBin := build(t)
	in := filepath.Join(t.TempDir(), "demo.yaml")
	if err := os.WriteFile(in, []byte(plainApp), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, stderr bytes.Buffer
	inject := exec.Command(ferryBin, "inject", "-f", in, "--mount-path=/etc/demo",
		"--source=app=https://config.example.com/config.tar.gz", "--notify-url=http://localhost:8080/-/reload")
	inject.Stdout, inject.Stderr = &out, &stderr
	if err := inject.Run(); err != nil {
		t.Fatalf("ferry inject: %v\n%s", err, stderr.String())
	}
	d := &appsv1.Deployment{}
	if err := yaml.UnmarshalStrict(out.Bytes(), d); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	m := &manifest{path: in, deployments: []*appsv1.Deployment{d}}
	pod := m.pod()
	k := newKubelet(t, pod)
	f := m.ferry(t)
	o := newOrigin(t, config("one"))

	ferry, ferryLog := k.startSidecar(ferryBin, f, o.url())

	app := &pod.Containers[0]
	appAddr := k.ports[app.Ports[0].ContainerPort]
	appCmd := exec.Command(appBin, "--addr", appAddr, "--dir", k.appDir(app, "/etc/demo", "app"))
	appCmd.Stderr = os.Stderr
	if err := appCmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer appCmd.Process.Kill()
	testkit.Eventually(t, 15*time.Second, "the app", func() bool { st, err := demoapp.Get(appAddr); return err == nil && st.Greeting == "one" })

	o.set(t, config("two"))
	k.triggerSync(f)
	testkit.Eventually(t, 15*time.Second, "the reload", func() bool { st, _ := demoapp.Get(appAddr); return st.Reloads == 1 && st.Greeting == "two" })
	if lp := f.LivenessProbe; status("http://"+k.port(f, lp)+lp.HTTPGet.Path) != http.StatusOK {
		t.Fatal("livenessProbe fails while syncing")
	}
	if code, _ := sigterm(t, appCmd); code != 0 {
		t.Fatalf("app exit %d", code)
	}
	if code, took := sigterm(t, ferry); code != 0 || took > 2*time.Second {
		t.Fatalf("ferry exit %d after %s on SIGTERM, want 0 promptly\n%s", code, took, ferryLog.String())
	}
	if !strings.HasPrefix(out.String(), "# The demo app") {
		t.Errorf("the leading comment was lost:\n%s", out.String())
	}
}
