package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// writeConfig writes a --config file and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ferry.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigMistakesAreUsageErrorsWithFileLineAndColumn(t *testing.T) {
	src := t.TempDir()
	cases := []struct {
		name, text string
		want       []string // each preceded by FILE:
	}{
		{"unknown key", "root: /r\nsources:\n  - url: " + src + "\n    notfy-url: http://x/\n", []string{`4:5: unknown key "notfy-url"`}},
		{"wrong type", "root: /r\nkeep: [1]\nperiod: 30\nsources:\n  - url: " + src + "\n    s3-anonymous: yes please\n",
			[]string{`2:7: keep: want an integer, found a list`, `3:9: period: want a duration such as 30s or 5m`, `6:19: s3-anonymous: want true or false`}},
		{"duplicate name", "root: /r\nsources:\n  - name: a\n    url: " + src + "\n  - name: a\n    url: " + src + "\n", []string{`5:11: duplicate source name "a"`}},
		{"global in a source", "root: /r\nsources:\n  - name: a\n    url: " + src + "\n    period: 5s\n", []string{`5:5: period is a global setting`}},
		{"missing url", "root: /r\nsources:\n  - name: a\n", []string{`3:5: sources[0]: url is required`}},
		{"syntax", "root: /r\nsources: [\n", []string{`:2:`}},
		{"bad value in a source", "root: /r\nsources:\n  - name: a\n    url: " + src + "\n    notify-url: localhost:1\n",
			[]string{`3:5: source a: notify-url "localhost:1": need an http:// or https:// URL`}},
		{"bad duration text", "root: /r\nsources:\n  - name: a\n    url: " + src + "\n    notify-timeout: soon\n", []string{`5:5: notify-timeout: "soon" does not parse (want a value like "10s")`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := writeConfig(t, tc.text)
			code, _, stderr := runFerry(t, nil, "check", "--config", file)
			if code != exitUsage {
				t.Fatalf("exit %d, want 2\n%s", code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, file+":"+strings.TrimPrefix(w, ":")) && !strings.Contains(stderr, file+w) {
					t.Errorf("stderr lacks %s%s:\n%s", file, w, stderr)
				}
			}
		})
	}
}

func TestFlagsThatConflictWithTheFileAreUsageErrorsNamingBoth(t *testing.T) {
	src := t.TempDir()
	file := writeConfig(t, "root: /r\nperiod: 1m\nsources:\n  - name: a\n    url: "+src+"\n")
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string // "" for no conflict
	}{
		{"source flag and file sources", nil, []string{"--source", src}, file + ":3:1: sources conflicts with --source"},
		{"different root", nil, []string{"--root", "/other"}, file + `:1:1: root "/r" conflicts with --root "/other"`},
		{"different root from the environment", map[string]string{"FERRY_ROOT": "/other"}, nil, `conflicts with FERRY_ROOT "/other"`},
		{"same period spelled otherwise", nil, []string{"--period", "60s"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runFerry(t, tc.env, append([]string{"check", "--config", file}, tc.args...)...)
			if tc.want == "" {
				if code != exitOK {
					t.Fatalf("exit %d, want 0\n%s", code, stderr)
				}
				return
			}
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, want 2 with %q\n%s", code, tc.want, stderr)
			}
		})
	}
}

// check shows every setting of every source with its origin; a source's
// list replaces the one it inherits; secrets show as their paths; and
// what check prints is itself a valid configuration file.
func TestCheckPrintsTheEffectiveConfigurationWithOrigins(t *testing.T) {
	src, secrets := t.TempDir(), t.TempDir()
	token := filepath.Join(secrets, "token")
	os.WriteFile(token, []byte("hunter2-secret\n"), 0o600)
	file := writeConfig(t, `root: /r
notify-url: http://127.0.0.1:8080/-/reload
sources:
  - name: a
    url: git::https://git.example.com/org/a.git?ref=main
    git-password-file: `+token+`
  - name: b
    url: `+src+`
    notify-url: [http://127.0.0.1:9090/reload]
`)
	env := map[string]string{"FERRY_KEEP": "5"}
	code, stdout, stderr := runFerry(t, env, "check", "--config", file, "--period", "10s", "--log-level", "error")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	for _, want := range []string{
		`root: "/r"  # file ` + file + `:1:1`,
		`period: "10s"  # flag --period`,
		`keep: 5  # env FERRY_KEEP`,
		`timeout: "2m0s"  # default`,
		`  - name: "a"  # file ` + file + `:4:5`,
		`    git-password-file: "` + token + `"  # file ` + file + `:6:5`,
		`    notify-url: ["http://127.0.0.1:8080/-/reload"]  # file ` + file + `:2:1`,
		`    notify-url: ["http://127.0.0.1:9090/reload"]  # file ` + file + `:9:5`,
	} {
		if !strings.Contains(stdout, want+"\n") {
			t.Errorf("check output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "hunter2") {
		t.Fatal("check shows a secret")
	}
	// Every source shows every per-source setting.
	if n, want := len(regexp.MustCompile(`(?m)^    allow-empty: `).FindAllString(stdout, -1)), 2; n != want {
		t.Errorf("allow-empty shown %d times, want %d", n, want)
	}
	again := writeConfig(t, stdout)
	code, stdout2, stderr := runFerry(t, nil, "check", "--config", again, "--log-level", "error")
	if code != exitOK {
		t.Fatalf("check's output does not check: exit %d\n%s", code, stderr)
	}
	strip := regexp.MustCompile(`(?m)  # .*$|^# .*\n`)
	if a, b := strip.ReplaceAllString(stdout, ""), strip.ReplaceAllString(stdout2, ""); a != b {
		t.Errorf("check's output read back differs:\n%s", lineDiff(a, b))
	}
}

// once tells the app nothing; its help does not list run's flags, and
// given on its command line they are ignored with a warning.
func TestOnceWarnsAboutRunsFlags(t *testing.T) {
	code, _, stderr := runFerry(t, nil, "once", "--source", t.TempDir(), "--root", t.TempDir(),
		"--notify-url", "http://127.0.0.1:1/reload", "--period", "1s", "--log-format", "text")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "flags of another command are ignored") || !strings.Contains(stderr, "--notify-url --period") {
		t.Errorf("no warning naming the flags once ignores:\n%s", stderr)
	}
}

// The shipped example checks, its secret files pointed at files that exist.
func TestExampleConfigChecks(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "config", "ferry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	text := strings.ReplaceAll(string(data), "/etc/ferry/", dir+"/")
	for _, m := range regexp.MustCompile(regexp.QuoteMeta(dir)+`/[^\s"\]]+`).FindAllString(text, -1) {
		os.MkdirAll(filepath.Dir(m), 0o755)
		os.WriteFile(m, []byte("example-secret\n"), 0o600)
	}
	// The example's validate-command is promtool's, which this machine
	// need not have: check only looks it up on PATH.
	bin := t.TempDir()
	os.WriteFile(filepath.Join(bin, "promtool"), []byte("#!/bin/sh\nexit 0\n"), 0o755)
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	file := writeConfig(t, text)
	code, stdout, stderr := runFerry(t, nil, "check", "--config", file, "--log-level", "error")
	if code != exitOK {
		t.Fatalf("examples/config/ferry.yaml does not check: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "sources:\n") {
		t.Fatalf("no sources shown:\n%s", stdout)
	}
}

// Every row of the settings table is a key of the file, at the top level
// and, unless global, in a source: a row added later needs nothing more.
// Each is given its default, as check prints it, and must be accepted.
func TestEverySettingIsAKeyOfTheFile(t *testing.T) {
	src := t.TempDir()
	o, fs := newOptions()
	var top, own strings.Builder
	for _, s := range settings(o) {
		if s.flag == "config" || s.flag == "source" {
			continue
		}
		line := s.flag + ": " + yamlValue(fs.Lookup(s.flag).Value) + "\n"
		if s.isGlobal {
			top.WriteString(line)
		} else {
			own.WriteString("    " + line)
		}
	}
	file := writeConfig(t, top.String()+"sources:\n  - name: a\n    url: "+src+"\n"+own.String())
	code, _, stderr := runFerry(t, nil, "check", "--config", file)
	// root is global and empty by default: the one error expected.
	if code != exitUsage || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "--root is required") {
		t.Fatalf("exit %d, want 2 with --root alone missing:\n%s", code, stderr)
	}
}

// TestLimitsAreEachSources: a source's own max-bytes holds for it alone.
func TestLimitsAreEachSources(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"big", "small"} {
		os.MkdirAll(filepath.Join(dir, name), 0o755)
		os.WriteFile(filepath.Join(dir, name, "f"), []byte(strings.Repeat("x", 4096)), 0o644)
	}
	cfg := writeConfig(t, "root: "+filepath.Join(dir, "root")+"\nmax-bytes: 1Ki\nsources:\n"+
		"  - name: big\n    url: "+filepath.Join(dir, "big")+"\n    max-bytes: 1Mi\n"+
		"  - name: small\n    url: "+filepath.Join(dir, "small")+"\n")
	code, _, stderr := runFerry(t, nil, "once", "--config", cfg, "--once-timeout", "2s")
	if code != exitFailed || !strings.Contains(stderr, `"source":"small"`) || !strings.Contains(stderr, "max-bytes") {
		t.Fatalf("exit %d, want 1 with small refused for max-bytes:\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "root", "big", "f")); err != nil {
		t.Fatalf("big, within its own limit, was not published: %v\n%s", err, stderr)
	}
}
