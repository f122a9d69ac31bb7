package deploy

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/ferrysync/ferry/api"
)

// manifest is one decoded Kubernetes manifest file.
type manifest struct {
	path        string
	deployments []*appsv1.Deployment
	accounts    []*corev1.ServiceAccount
	configMaps  []*corev1.ConfigMap
}

// load decodes every document of a manifest file strictly: an unknown or
// misspelt field fails the test, as kubectl's server-side validation would.
func load(t *testing.T, path string) *manifest {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := &manifest{path: path}
	for i, doc := range bytes.Split(data, []byte("\n---\n")) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("%s doc %d: %v", path, i, err)
		}
		switch meta.Kind {
		case "Deployment":
			d := &appsv1.Deployment{}
			if err := yaml.UnmarshalStrict(doc, d); err != nil {
				t.Fatalf("%s doc %d: %v", path, i, err)
			}
			m.deployments = append(m.deployments, d)
		case "ServiceAccount":
			sa := &corev1.ServiceAccount{}
			if err := yaml.UnmarshalStrict(doc, sa); err != nil {
				t.Fatalf("%s doc %d: %v", path, i, err)
			}
			m.accounts = append(m.accounts, sa)
		case "ConfigMap":
			cm := &corev1.ConfigMap{}
			if err := yaml.UnmarshalStrict(doc, cm); err != nil {
				t.Fatalf("%s doc %d: %v", path, i, err)
			}
			m.configMaps = append(m.configMaps, cm)
		default:
			t.Fatalf("%s doc %d: unexpected kind %q", path, i, meta.Kind)
		}
	}
	if len(m.deployments) != 1 {
		t.Fatalf("%s: %d Deployments, want 1", path, len(m.deployments))
	}
	return m
}

// sourceNames returns the names of ferry's sources: that of its --source,
// or those of the --config file it mounts from a ConfigMap.
func (m *manifest) sourceNames(t *testing.T, f *corev1.Container) []string {
	t.Helper()
	if source := flag(f.Args, "source"); source != "" {
		name, _, ok := strings.Cut(source, "=")
		if !ok {
			t.Fatalf("--source=%q has no NAME=", source)
		}
		return []string{name}
	}
	file := flag(f.Args, "config")
	if file == "" {
		t.Fatal("ferry has neither --source nor --config")
	}
	var volume string
	for _, mnt := range f.VolumeMounts {
		if mnt.MountPath == path.Dir(file) {
			volume = mnt.Name
		}
	}
	for _, v := range m.pod().Volumes {
		if v.Name != volume || v.ConfigMap == nil {
			continue
		}
		for _, cm := range m.configMaps {
			data, ok := cm.Data[path.Base(file)]
			if cm.Name != v.ConfigMap.Name || !ok {
				continue
			}
			var c struct {
				Sources []struct{ Name, URL string } `json:"sources"`
			}
			if err := yaml.Unmarshal([]byte(data), &c); err != nil {
				t.Fatalf("ConfigMap %s %s: %v", cm.Name, path.Base(file), err)
			}
			var names []string
			for _, s := range c.Sources {
				if s.Name == "" || s.URL == "" {
					t.Fatalf("ConfigMap %s: a source without name or url: %+v", cm.Name, s)
				}
				names = append(names, s.Name)
			}
			return names
		}
	}
	t.Fatalf("--config=%s is not mounted from a ConfigMap of the manifest", file)
	return nil
}

func (m *manifest) pod() *corev1.PodSpec { return &m.deployments[0].Spec.Template.Spec }

// ferry returns the ferry init container.
func (m *manifest) ferry(t *testing.T) *corev1.Container {
	t.Helper()
	for i, c := range m.pod().InitContainers {
		if c.Name == "ferry" {
			return &m.pod().InitContainers[i]
		}
	}
	t.Fatalf("%s: no ferry init container", m.path)
	return nil
}

// flag returns the value of --name=value in args, or "".
func flag(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

// mountOf returns c's mount of volume, or nil.
func mountOf(c *corev1.Container, volume string) *corev1.VolumeMount {
	for i, m := range c.VolumeMounts {
		if m.Name == volume {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func ferryPort(t *testing.T) int {
	_, port, err := net.SplitHostPort(api.DefaultAddr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	return n
}

// probePort resolves a probe's port, by number or by container port name.
func probePort(t *testing.T, c *corev1.Container, p *corev1.Probe) int {
	t.Helper()
	port := p.HTTPGet.Port
	if port.IntVal != 0 {
		return int(port.IntVal)
	}
	for _, cp := range c.Ports {
		if cp.Name == port.StrVal {
			return int(cp.ContainerPort)
		}
	}
	t.Fatalf("probe port %q names no container port", port.StrVal)
	return 0
}

var manifests = []string{
	"kubernetes/quickstart.yaml",
	"kubernetes/native-sidecar.yaml",
	"kubernetes/init-oneshot.yaml",
	"kubernetes/sighup.yaml",
	"kubernetes/examples/git-ssh.yaml",
	"kubernetes/examples/s3-irsa.yaml",
	"kubernetes/examples/http.yaml",
	"kubernetes/examples/safe-rollouts.yaml",
	"kubernetes/examples/config-file.yaml",
	"kubernetes/examples/oci.yaml",
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	data, err := os.ReadFile("kubernetes/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, m := range manifests {
		want = append(want, strings.TrimPrefix(m, "kubernetes/"))
	}
	if k.Kind != "Kustomization" || strings.Join(k.Resources, ",") != strings.Join(want, ",") {
		t.Fatalf("kustomization resources = %v, want %v", k.Resources, want)
	}
	found, _ := filepath.Glob("kubernetes/*.yaml")
	more, _ := filepath.Glob("kubernetes/examples/*.yaml")
	if len(found)+len(more)-1 != len(manifests) {
		t.Fatalf("manifests on disk %v %v are not all tested and listed", found, more)
	}
}

// Every manifest: ferry hardened, sized, probed where it runs as a sidecar,
// writing to the volume the app mounts read-only.
func TestManifestsAreHardenedAndConsistent(t *testing.T) {
	for _, path := range manifests {
		t.Run(filepath.Base(path), func(t *testing.T) {
			m := load(t, path)
			pod := m.pod()
			sc := pod.SecurityContext
			if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.FSGroup == nil ||
				sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("pod securityContext %+v: want runAsNonRoot, fsGroup and seccomp RuntimeDefault", sc)
			}
			f := m.ferry(t)
			csc := f.SecurityContext
			if csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
				csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
				csc.Capabilities == nil || len(csc.Capabilities.Drop) != 1 || csc.Capabilities.Drop[0] != "ALL" {
				t.Errorf("ferry securityContext %+v: want no privilege escalation, read-only root, drop ALL", csc)
			}
			if f.Resources.Requests.Memory().IsZero() || f.Resources.Limits.Memory().IsZero() || f.Resources.Requests.Cpu().IsZero() {
				t.Errorf("ferry resources %+v: want cpu and memory requests and a memory limit", f.Resources)
			}
			gomem := ""
			for _, e := range f.Env {
				if e.Name == "GOMEMLIMIT" {
					gomem = e.Value
				}
			}
			if gomem == "" {
				t.Error("ferry has no GOMEMLIMIT")
			}

			root := flag(f.Args, "root")
			own := mountOf(f, "config")
			if own == nil || own.MountPath != root || own.ReadOnly {
				t.Fatalf("ferry --root=%s but mounts the config volume as %+v", root, own)
			}
			names := m.sourceNames(t, f)
			for _, c := range pod.Containers {
				mnt := mountOf(&c, "config")
				if mnt == nil || !mnt.ReadOnly || mnt.MountPath != root {
					t.Errorf("app %s mounts the config volume as %+v, want read-only at %s", c.Name, mnt, root)
				}
				// The app reads what ferry publishes: ROOT/NAME/...
				reads := strings.Join(append(append([]string{}, c.Command...), c.Args...), " ")
				if !slices.ContainsFunc(names, func(name string) bool {
					return strings.Contains(reads, root+"/"+name+"/") || strings.Contains(reads, root+"/"+name+" ") ||
						strings.HasSuffix(reads, root+"/"+name)
				}) {
					t.Errorf("app %s reads none of %s/%v: %q", c.Name, root, names, reads)
				}
			}
			for _, arg := range f.Args {
				if strings.Contains(arg, "password=") || strings.Contains(arg, "token=") {
					t.Errorf("secret given inline: %s", arg)
				}
			}
		})
	}
}

// The sidecar manifests: restartPolicy Always, probes on ferry's own
// paths and port, a startup budget for a slow first fetch.
func TestNativeSidecarsProbeFerryEndpoints(t *testing.T) {
	for _, path := range manifests {
		m := load(t, path)
		f := m.ferry(t)
		if f.Args[0] != "run" {
			continue
		}
		t.Run(filepath.Base(path), func(t *testing.T) {
			if f.RestartPolicy == nil || *f.RestartPolicy != corev1.ContainerRestartPolicyAlways {
				t.Fatal("ferry 'run' is not a native sidecar (initContainers entry with restartPolicy: Always)")
			}
			sp, lp := f.StartupProbe, f.LivenessProbe
			if sp == nil || sp.HTTPGet == nil || sp.HTTPGet.Path != api.ReadyPath || probePort(t, f, sp) != ferryPort(t) {
				t.Fatalf("startupProbe %+v: want GET %s on port %d", sp, api.ReadyPath, ferryPort(t))
			}
			if budget := sp.PeriodSeconds * sp.FailureThreshold; budget < 300 {
				t.Errorf("startupProbe allows %ds for the first fetch, want >= 300", budget)
			}
			if lp == nil || lp.HTTPGet == nil || lp.HTTPGet.Path != api.HealthPath || probePort(t, f, lp) != ferryPort(t) {
				t.Fatalf("livenessProbe %+v: want GET %s on port %d", lp, api.HealthPath, ferryPort(t))
			}
			if f.ReadinessProbe != nil {
				t.Error("a readinessProbe on the sidecar would pull the pod out of its Service during origin outages")
			}
			if u := flag(f.Args, "notify-url"); u != "" {
				port := strings.Split(strings.TrimPrefix(u, "http://localhost:"), "/")[0]
				found := false
				for _, c := range m.pod().Containers {
					for _, p := range c.Ports {
						if strconv.Itoa(int(p.ContainerPort)) == port {
							found = true
						}
					}
				}
				if !strings.HasPrefix(u, "http://localhost:") || !found {
					t.Errorf("--notify-url=%s is not an app container port on localhost", u)
				}
			}
		})
	}
}

func TestOneShotRunsOnceAsClassicInitContainer(t *testing.T) {
	m := load(t, "kubernetes/init-oneshot.yaml")
	f := m.ferry(t)
	if f.Args[0] != "once" || f.RestartPolicy != nil {
		t.Fatalf("one-shot ferry: args %v, restartPolicy %v; want 'once' and no restartPolicy", f.Args, f.RestartPolicy)
	}
	if f.StartupProbe != nil || f.LivenessProbe != nil || flag(f.Args, "notify-url") != "" {
		t.Fatal("a classic init container takes no probes and has no app to notify")
	}
}

func TestSighupSharesTheProcessNamespace(t *testing.T) {
	m := load(t, "kubernetes/sighup.yaml")
	pod, f := m.pod(), m.ferry(t)
	if pod.ShareProcessNamespace == nil || !*pod.ShareProcessNamespace {
		t.Fatal("shareProcessNamespace is not true: ferry cannot see the app's processes")
	}
	if flag(f.Args, "notify-signal") != "HUP" || flag(f.Args, "notify-process") != "nginx" {
		t.Fatalf("args %v: want --notify-signal=HUP --notify-process=nginx", f.Args)
	}
	// Same UID as the app, or the kernel refuses the signal.
	if pod.SecurityContext.RunAsUser == nil || (f.SecurityContext.RunAsUser != nil && *f.SecurityContext.RunAsUser != *pod.SecurityContext.RunAsUser) {
		t.Fatal("ferry and nginx must run as the same user")
	}
}

func TestS3ExampleUsesIRSA(t *testing.T) {
	m := load(t, "kubernetes/examples/s3-irsa.yaml")
	if len(m.accounts) != 1 || m.accounts[0].Annotations["eks.amazonaws.com/role-arn"] == "" {
		t.Fatal("no ServiceAccount with the eks.amazonaws.com/role-arn annotation")
	}
	if m.pod().ServiceAccountName != m.accounts[0].Name {
		t.Fatalf("pod uses service account %q, not %q", m.pod().ServiceAccountName, m.accounts[0].Name)
	}
}

func TestComposeSharesVolumeAndNetwork(t *testing.T) {
	data, err := os.ReadFile("compose/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type service struct {
		Image       string   `json:"image"`
		Command     []string `json:"command"`
		Volumes     []string `json:"volumes"`
		NetworkMode string   `json:"network_mode"`
		DependsOn   any      `json:"depends_on"` // a list or a map
		Environment map[string]string
	}
	var c struct {
		Services map[string]service `json:"services"`
		Volumes  map[string]any     `json:"volumes"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	app, ferry, initc := c.Services["app"], c.Services["ferry"], c.Services["ferry-init"]
	if _, ok := c.Volumes["config"]; !ok {
		t.Fatal("no named volume config")
	}
	if !contains(app.Volumes, "config:/config:ro") || !contains(ferry.Volumes, "config:/config") || !contains(initc.Volumes, "config:/config") {
		t.Fatalf("volumes: app %v, ferry %v, init %v", app.Volumes, ferry.Volumes, initc.Volumes)
	}
	if ferry.NetworkMode != "service:app" {
		t.Fatalf("ferry network_mode = %q, want service:app", ferry.NetworkMode)
	}
	if len(initc.Command) == 0 || initc.Command[0] != "once" || len(ferry.Command) == 0 || ferry.Command[0] != "run" {
		t.Fatalf("commands: init %v, ferry %v", initc.Command, ferry.Command)
	}
	deps, _ := app.DependsOn.(map[string]any)
	dep, _ := deps["ferry-init"].(map[string]any)
	if dep["condition"] != "service_completed_successfully" {
		t.Fatalf("app depends_on %v: want ferry-init completed successfully", app.DependsOn)
	}
	if ferry.Environment["FERRY_ROOT"] != "/config" || !strings.Contains(ferry.Environment["FERRY_SOURCE"], "prometheus=") {
		t.Fatalf("ferry environment %v", ferry.Environment)
	}
}

func TestSystemdUnitConfinesFerryToItsRoot(t *testing.T) {
	data, err := os.ReadFile("systemd/ferry.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(data)
	root := ""
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			root = flag(strings.Fields(v), "root")
		}
	}
	for _, want := range []string{"ProtectSystem=strict", "DynamicUser=yes", "NoNewPrivileges=yes", "ReadWritePaths=" + root + "\n"} {
		if root == "" || !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q (root %q)", want, root)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// The config-file example's ConfigMap holds a file that 'ferry check'
// accepts with the pod's arguments, its Secret mounts pointed at files.
func TestConfigFileExampleChecks(t *testing.T) {
	m := load(t, "kubernetes/examples/config-file.yaml")
	f := m.ferry(t)
	if len(m.configMaps) != 1 {
		t.Fatalf("%d ConfigMaps, want 1", len(m.configMaps))
	}
	dir := t.TempDir()
	data := strings.ReplaceAll(m.configMaps[0].Data["ferry.yaml"], "/etc/ferry/", dir+"/")
	for _, sub := range []string{"app", "prometheus"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o755)
		os.WriteFile(filepath.Join(dir, sub, "token"), []byte("token\n"), 0o600)
	}
	file := filepath.Join(dir, "ferry.yaml")
	os.WriteFile(file, []byte(data), 0o644)
	ferry, _ := build(t)
	args := []string{"check", "--config=" + file, "--log-level=error"}
	for _, a := range f.Args[1:] {
		if !strings.HasPrefix(a, "--config=") {
			args = append(args, a)
		}
	}
	out, err := exec.Command(ferry, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ferry %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if !strings.Contains(string(out), `name: "prometheus"`) {
		t.Fatalf("check does not show the prometheus source:\n%s", out)
	}
}
