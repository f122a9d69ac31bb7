package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// injectArgs are the flags of the golden files, per mode.
var injectArgs = map[string][]string{
	modeSidecar: {"--source=app=https://example.com/config.tar.gz", "--notify-url=http://localhost:8080/-/reload", "--http-bearer-token-file=/etc/ferry/http/token"},
	modeInit:    {"--mode=init", "--source=app=https://example.com/config.tar.gz", "--once-timeout=2m", "--container=web", "--container=db", "--container=agent", "--container=rs", "--container=report", "--container=nightly", "--container=single", "--container=listed"},
	// Only web's pod: the others are left alone.
	"web-only": {"--source=app=https://example.com/config.tar.gz", "--container=web", "--mount-path=/etc/app"},
}

// inject runs 'ferry inject' on input with args, and returns its output,
// its stderr and its exit code.
func inject(t *testing.T, input []byte, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr strings.Builder
	code := runInject(args, bytes.NewReader(input), &stdout, &stderr)
	return stdout.String(), stderr.String(), code
}

func mustInject(t *testing.T, input []byte, args ...string) string {
	t.Helper()
	out, stderr, code := inject(t, input, args...)
	if code != exitOK || stderr != "" {
		t.Fatalf("ferry inject %v: exit %d\n%s", args, code, stderr)
	}
	return out
}

func readWorkloads(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "inject", "workloads.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestInjectIsGolden: what inject writes for every workload kind, in both
// modes, is reviewed as testdata/inject/*.golden ('go test -run
// TestInjectIsGolden -update' rewrites them).
func TestInjectIsGolden(t *testing.T) {
	for mode, args := range injectArgs {
		t.Run(mode, func(t *testing.T) {
			got := mustInject(t, readWorkloads(t), args...)
			golden := filepath.Join("testdata", "inject", "workloads-"+mode+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s (run with -update if the change is meant):\n%s", golden, lineDiff(string(want), got))
			}
		})
	}
}

func TestInjectTwiceChangesNothing(t *testing.T) {
	for mode, args := range injectArgs {
		t.Run(mode, func(t *testing.T) {
			once := mustInject(t, readWorkloads(t), args...)
			if twice := mustInject(t, []byte(once), args...); twice != once {
				t.Errorf("a second injection changed the output:\n%s", lineDiff(once, twice))
			}
		})
	}
}

// TestInjectUpdatesInPlace: injecting with other flags, or in the other
// mode, gives what injecting those into the original would have: nothing
// of the earlier injection is left behind, and nothing is added twice.
func TestInjectUpdatesInPlace(t *testing.T) {
	input := readWorkloads(t)
	other := []string{"--source=app=git::https://example.com/org/config.git?ref=v2", "--mount-path=/etc/app", "--period=1m"}
	for _, steps := range [][2][]string{
		{injectArgs[modeSidecar], other},
		{injectArgs[modeSidecar], injectArgs[modeInit]},
		{injectArgs[modeInit], injectArgs[modeSidecar]},
	} {
		updated := mustInject(t, []byte(mustInject(t, input, steps[0]...)), steps[1]...)
		if direct := mustInject(t, input, steps[1]...); updated != direct {
			t.Errorf("%v then %v differs from %v alone:\n%s", steps[0], steps[1], steps[1], lineDiff(direct, updated))
		}
	}
	// Narrowed to web, the Deployment's other container loses its mount.
	narrowed := mustInject(t, []byte(mustInject(t, input, injectArgs[modeSidecar]...)), injectArgs["web-only"]...)
	spec := podSpecs(t, narrowed)["Deployment web"]
	if !hasMount(spec.Containers[0], "/etc/app", true) || len(spec.Containers[1].VolumeMounts) != 0 || len(spec.InitContainers) != 2 {
		t.Errorf("--container web after all containers: %+v", spec)
	}
}

// TestInjectKeepsWhatItDoesNotOwn: comments, other documents, unknown
// kinds and a user's changes to ferry's container survive.
func TestInjectKeepsWhatItDoesNotOwn(t *testing.T) {
	out := mustInject(t, readWorkloads(t), injectArgs[modeSidecar]...)
	for _, want := range []string{
		"# Every workload kind inject knows, a List, and two documents it leaves\n# alone. The comments must survive.\napiVersion: apps/v1",
		"app: web # the app's label",
		"# The app itself.",
		"# A custom resource: not a workload, and its fields are no one's business.\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: gadget\nspec:\n  whatever: [1, 2, 3]\n  template:\n    spec:\n      containers: []\n",
		"kind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n  ports:\n    - port: 80\n      targetPort: 8080\n",
		"      initContainers:\n        - name: migrate\n          image: example/migrate:1.0\n        - name: ferry\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lost %q", want)
		}
	}
	tuned := strings.Replace(out, "cpu: 10m", "cpu: 50m # tuned", 1)
	tuned = strings.Replace(tuned, "image: ghcr.io/ferrysync/ferry:latest", "image: ghcr.io/ferrysync/ferry:v1.2.3", 1)
	again := mustInject(t, []byte(tuned), "--source=app=https://example.com/other.tar.gz")
	if !strings.Contains(again, "cpu: 50m # tuned") || !strings.Contains(again, "ferry:v1.2.3") || !strings.Contains(again, "--source=app=https://example.com/other.tar.gz") {
		t.Errorf("a re-injection lost the user's resources or image, or kept the old args:\n%s", again)
	}
	if pinned := mustInject(t, []byte(tuned), "--source=app=https://example.com/other.tar.gz", "--image=example/ferry:v2"); strings.Contains(pinned, "ferry:v1.2.3") {
		t.Error("--image did not replace the image")
	}
}

// TestInjectOutputDecodesStrictly decodes every workload of the output
// into its k8s.io/api type, as the API server's strict validation would,
// and checks the pod specs: ferry where the mode puts it, the volume, the
// mounts.
func TestInjectOutputDecodesStrictly(t *testing.T) {
	for _, mode := range []string{modeSidecar, modeInit} {
		t.Run(mode, func(t *testing.T) {
			specs := podSpecs(t, mustInject(t, readWorkloads(t), injectArgs[mode]...))
			if len(specs) != 8 {
				t.Fatalf("%d pod specs, want 8", len(specs))
			}
			for name, spec := range specs {
				f := spec.InitContainers[len(spec.InitContainers)-1]
				if f.Name != ferryName || f.Image != defaultImage {
					t.Fatalf("%s: last init container %s %s", name, f.Name, f.Image)
				}
				sidecar := f.RestartPolicy != nil && *f.RestartPolicy == corev1.ContainerRestartPolicyAlways
				wantCmd := map[string]string{modeSidecar: cmdRun, modeInit: cmdOnce}[mode]
				if sidecar != (mode == modeSidecar) || f.Args[0] != wantCmd || !slices.Contains(f.Args, "--root=/config") {
					t.Errorf("%s: restartPolicy %v, args %v", name, f.RestartPolicy, f.Args)
				}
				if mode == modeSidecar && (f.StartupProbe.HTTPGet.Path != "/readyz" || f.LivenessProbe.HTTPGet.Path != "/healthz" || f.Ports[0].ContainerPort != 8475) {
					t.Errorf("%s: probes or port wrong: %+v", name, f)
				}
				if f.SecurityContext == nil || *f.SecurityContext.ReadOnlyRootFilesystem != true || *f.SecurityContext.AllowPrivilegeEscalation || f.Resources.Limits.Memory().String() != "64Mi" {
					t.Errorf("%s: ferry is not hardened like deploy/: %+v %+v", name, f.SecurityContext, f.Resources)
				}
				if !hasMount(f, "/config", false) {
					t.Errorf("%s: ferry does not mount the volume read-write at its root", name)
				}
				var vol *corev1.Volume
				for i := range spec.Volumes {
					if spec.Volumes[i].Name == ferryName {
						vol = &spec.Volumes[i]
					}
				}
				if vol == nil || vol.EmptyDir == nil {
					t.Errorf("%s: no emptyDir volume %s", name, ferryName)
				}
				for _, c := range spec.Containers {
					want := c.Name != "metrics" || mode == modeSidecar
					if hasMount(c, "/config", true) != want {
						t.Errorf("%s: container %s mounts the volume read-only: %v, want %v", name, c.Name, !want, want)
					}
				}
			}
		})
	}
}

func hasMount(c corev1.Container, path string, readOnly bool) bool {
	for _, m := range c.VolumeMounts {
		if m.Name == ferryName && m.MountPath == path && m.ReadOnly == readOnly {
			return true
		}
	}
	return false
}

// podSpecs decodes out strictly and returns its pod specs by workload.
func podSpecs(t *testing.T, out string) map[string]*corev1.PodSpec {
	t.Helper()
	specs := map[string]*corev1.PodSpec{}
	var add func(doc []byte)
	strict := func(doc []byte, v any) {
		if err := yaml.UnmarshalStrict(doc, v); err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
	}
	add = func(doc []byte) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.Kind {
		case "Deployment":
			var o appsv1.Deployment
			strict(doc, &o)
			specs["Deployment "+o.Name] = &o.Spec.Template.Spec
		case "StatefulSet":
			var o appsv1.StatefulSet
			strict(doc, &o)
			specs["StatefulSet "+o.Name] = &o.Spec.Template.Spec
		case "DaemonSet":
			var o appsv1.DaemonSet
			strict(doc, &o)
			specs["DaemonSet "+o.Name] = &o.Spec.Template.Spec
		case "ReplicaSet":
			var o appsv1.ReplicaSet
			strict(doc, &o)
			specs["ReplicaSet "+o.Name] = &o.Spec.Template.Spec
		case "Job":
			var o batchv1.Job
			strict(doc, &o)
			specs["Job "+o.Name] = &o.Spec.Template.Spec
		case "CronJob":
			var o batchv1.CronJob
			strict(doc, &o)
			specs["CronJob "+o.Name] = &o.Spec.JobTemplate.Spec.Template.Spec
		case "Pod":
			var o corev1.Pod
			strict(doc, &o)
			specs["Pod "+o.Name] = &o.Spec
		case "List":
			var l corev1.List
			strict(doc, &l)
			for _, item := range l.Items {
				add(item.Raw)
			}
		case "Service":
			strict(doc, &corev1.Service{})
		case "ConfigMap":
			strict(doc, &corev1.ConfigMap{})
		}
	}
	for _, doc := range strings.Split(out, "\n---\n") {
		add([]byte(doc))
	}
	return specs
}

// TestInjectRefuses: what inject cannot do safely exits 2 with one line
// that names the document and the reason, and writes nothing.
func TestInjectRefuses(t *testing.T) {
	taken := []byte("apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n    - name: app\n      image: x\n      volumeMounts:\n        - name: secrets\n          mountPath: /config\n")
	for _, tc := range []struct {
		name  string
		input []byte
		args  []string
		want  string
	}{
		{"mount path taken", taken, []string{"--source=https://example.com/c.json"}, "ferry: document 2 (Pod p): container app already mounts volume secrets at /config"},
		{"no native sidecars", taken, []string{"--source=https://example.com/c.json", "--kube-version=1.28"}, "ferry: --kube-version 1.28 has no native sidecars (1.29 or later): use --mode init, or a newer cluster"},
		{"unknown container", readWorkloads(t), []string{"--source=https://example.com/c.json", "--container=nope"}, "ferry: --container nope: no workload has a container of that name"},
		{"bad setting", nil, []string{"--source=https://example.com/c.json", "--keep=0"}, "ferry: --keep must be at least 1"},
		{"no source", nil, nil, "ferry: --source is required (or sources in a --config file)"},
		{"run's flag in init mode", nil, []string{"--mode=init", "--source=https://example.com/c.json", "--notify-url=http://localhost/"}, "ferry: --notify-url is not used by 'ferry once' (--mode init)"},
		{"config without root", nil, []string{"--config=/etc/ferry/ferry.yaml"}, "ferry: --config needs --root too: where ferry mounts the volume, the file's root if it sets one"},
		{"bad mode", nil, []string{"--mode=daemon", "--source=https://example.com/c.json"}, `ferry: --mode "daemon": want sidecar or init`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, code := inject(t, tc.input, tc.args...)
			if code != exitUsage || out != "" || stderr != tc.want+"\n" {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2 and %q", code, out, stderr, tc.want)
			}
		})
	}
	// The same pod, told where else to mount, is fine; init mode needs no
	// native sidecars.
	mustInject(t, taken, "--source=https://example.com/c.json", "--mount-path=/ferry")
	mustInject(t, taken, "--source=https://example.com/c.json", "--mount-path=/ferry", "--mode=init", "--kube-version=v1.27.3")
	// A --config file is a path in the pod: passed on, not read.
	if out := mustInject(t, taken, "--config=/etc/ferry/ferry.yaml", "--root=/srv", "--mount-path=/ferry"); !strings.Contains(out, "- run\n        - --config=/etc/ferry/ferry.yaml\n        - --root=/srv\n") {
		t.Errorf("--config not passed on:\n%s", out)
	}
}

// TestInjectReadsAFileOrStdin: -f names the file; without it, stdin; and
// the command is reached from the top.
func TestInjectReadsAFileOrStdin(t *testing.T) {
	file := filepath.Join("testdata", "inject", "workloads.yaml")
	fromStdin := mustInject(t, readWorkloads(t), "--source=https://example.com/c.json")
	var stdout, stderr strings.Builder
	code := run(context.Background(), []string{cmdInject, "-f", file, "--source=https://example.com/c.json"}, func(string) (string, bool) { return "", false }, &stdout, &stderr)
	if code != exitOK || stdout.String() != fromStdin {
		t.Errorf("-f %s: exit %d, %s\n%s", file, code, stderr.String(), lineDiff(fromStdin, stdout.String()))
	}
}

// TestInjectIntoFlowStyle: a pod spec written in flow style gets ferry in
// block style (flow around it would force it into flow too), and what
// ferry does not touch keeps its style.
func TestInjectIntoFlowStyle(t *testing.T) {
	input := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: flow}\nspec: {selector: {matchLabels: {app: a}}, template: {metadata: {labels: {app: a}}, spec: {containers: [{name: a, image: x, ports: [{containerPort: 80}]}]}}}\n")
	out := mustInject(t, input, "--source=https://example.com/c.json")
	if !strings.Contains(out, "metadata: {name: flow}") || !strings.Contains(out, "selector: {matchLabels: {app: a}}") || !strings.Contains(out, "\n        - name: ferry\n") {
		t.Errorf("styles:\n%s", out)
	}
	if spec := podSpecs(t, out)["Deployment flow"]; !hasMount(spec.Containers[0], "/config", true) {
		t.Errorf("no mount in the app:\n%s", out)
	}
	if again := mustInject(t, []byte(out), "--source=https://example.com/c.json"); again != out {
		t.Errorf("not idempotent:\n%s", lineDiff(out, again))
	}
}

var injectPod = []byte("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n    - name: app\n      image: x\n")

// TestInjectRefusesCredentialsInTheSourceURL: a source URL that carries
// credentials, which run refuses at start, is refused by inject too,
// rather than written into the ferry container's args: into the
// workload's manifest, etcd and whatever repository holds the output,
// where secrets stay paths of files.
func TestInjectRefusesCredentialsInTheSourceURL(t *testing.T) {
	for _, src := range []string{
		"git::https://ferry:s3cret@git.example.com/app.git?ref=main",
		"https://ferry:s3cret@example.com/c.json",
		"s3::https://AKID:s3cret@s3.example.com/bucket/prefix/",
	} {
		t.Run(src, func(t *testing.T) {
			if code, _, _ := runFerry(t, nil, "check", "--source="+src, "--root=/config"); code != exitUsage {
				t.Fatalf("ferry check exit %d, want 2 (the premise: run refuses it)", code)
			}
			out, stderr, code := inject(t, injectPod, "--source="+src)
			if code != exitUsage || strings.Contains(out, "s3cret") {
				t.Errorf("inject exit %d, stderr %q; want 2, as check and run refuse it. The manifest holds the password:\n%s", code, stderr, out)
			}
		})
	}
}

// TestInjectRefusesALoopbackAddressForTheSidecar: the kubelet probes the
// pod's IP, so a sidecar whose endpoints listen on loopback never passes
// its startupProbe, and the app never starts.
func TestInjectRefusesALoopbackAddressForTheSidecar(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:8475", "localhost:8475", "[::1]:8475"} {
		_, stderr, code := inject(t, injectPod, "--source=https://example.com/c.json", "--http-addr="+addr)
		if code != exitUsage || !strings.Contains(stderr, "kubelet probes the pod's IP") {
			t.Errorf("--http-addr=%s: exit %d, stderr %q; want 2 and the cause", addr, code, stderr)
		}
	}
	if _, stderr, code := inject(t, injectPod, "--source=https://example.com/c.json", "--http-addr=:8475"); code != exitOK {
		t.Errorf("--http-addr=:8475: exit %d, stderr %q", code, stderr)
	}
}
