package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/internal/testkit"
)

func TestOnceExits1WithTheReasonWhenARevisionIsRejected(t *testing.T) {
	schema := filepath.Join(t.TempDir(), "app.schema.json")
	os.WriteFile(schema, []byte(`{"type": "object", "required": ["port"], "properties": {"port": {"type": "integer"}}}`), 0o644)
	for _, tc := range []struct {
		name  string
		files map[string]string
		args  []string
		want  string
	}{
		{"yaml tab indent", map[string]string{"conf/app.yaml": "a: 1\nb:\n\tc: 2\n"}, []string{"--validate", "syntax"},
			"rejected: syntax: conf/app.yaml:3:1: found character"},
		{"schema violation", map[string]string{"conf/app.yaml": "port: http\n"}, []string{"--validate-schema", "conf/*.yaml=" + schema},
			"rejected: schema: conf/app.yaml: at /port: got string, want integer"},
		{"command", map[string]string{"app.conf": "x"}, []string{"--validate-command", `sh -c 'echo "$FERRY_SOURCE is wrong" >&2; exit 4'`},
			`rejected: command: sh -c echo \"$FERRY_SOURCE is wrong\" >&2; exit 4: exit status 4: cfg is wrong`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			args := append([]string{"once", "--source", "cfg=" + testkit.Tree(t, tc.files), "--root", root}, tc.args...)
			code, _, stderr := runFerry(t, nil, args...)
			if code != exitFailed {
				t.Fatalf("exit %d, want 1:\n%s", code, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, stderr)
			}
			if _, err := os.Lstat(filepath.Join(root, "cfg")); err == nil {
				t.Error("a rejected revision was published")
			}
		})
	}
}

func TestOncePublishesWhatPromtoolAccepts(t *testing.T) {
	testkit.Tool(t, "promtool", "prometheus")
	good := "global:\n  scrape_interval: 15s\n"
	root := t.TempDir()
	env := map[string]string{
		"FERRY_VALIDATE":         "syntax",
		"FERRY_VALIDATE_COMMAND": "promtool check config prometheus.yml",
	}
	code, _, stderr := runFerry(t, env, "once", "--source", testkit.Tree(t, map[string]string{"prometheus.yml": good}), "--root", root)
	if code != exitOK {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "current", "prometheus.yml")); string(b) != good {
		t.Fatalf("published %q", b)
	}
	// Valid YAML that Prometheus refuses: only the command catches it.
	code, _, stderr = runFerry(t, env, "once", "--source", testkit.Tree(t, map[string]string{"prometheus.yml": "global:\n  scrape_interval: 15x\n"}), "--root", t.TempDir())
	if code != exitFailed || !strings.Contains(stderr, `not a valid duration string: \"15x\"`) {
		t.Fatalf("exit %d, want 1 with promtool's reason:\n%s", code, stderr)
	}
}
