package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testkit"
)

// runFerry runs the whole program in-process, with env as its environment,
// and returns its exit code and output. It cancels the program after 20s
// and fails: a configuration accepted by mistake, or a run that should
// have ended, must fail the test, not hang it.
func runFerry(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stdout, stderr strings.Builder
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	code := run(ctx, args, lookup, &stdout, &stderr)
	if ctx.Err() != nil {
		t.Fatalf("still running after 20s\n%s", testkit.Clip(stderr.String(), 2000))
	}
	return code, stdout.String(), stderr.String()
}

func TestBadUsageExits2WithOneLineEachAndWritesNothing(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown scheme", []string{"once", "--source", "ftp://host/x", "--root", root}, []string{`unknown kind "ftp"`}},
		{"missing root", []string{"once", "--source", "/srv/x"}, []string{"--root is required"}},
		{"missing source", []string{"once", "--root", root}, []string{"--source is required"}},
		{"malformed source", []string{"once", "--source", "relative/dir", "--root", root}, []string{"not a URL"}},
		{"bad duration", []string{"once", "--source", "/srv", "--root", root, "--period", "soon"}, []string{`--period: "soon" does not parse (want a value like "30s")`}},
		{"bad size", []string{"run", "--source", "/srv", "--root", root, "--max-bytes", "lots"}, []string{`invalid size "lots"`}},
		{"two unnamed", []string{"run", "--source", "/a", "--source", "/b", "--root", root}, []string{"name each source"}},
		{"unnamed beside named", []string{"run", "--source", "a=/x", "--source", "/y", "--root", root}, []string{"name each source"}},
		{"notify url with password", []string{"run", "--source", "/x", "--root", root, "--notify-url", "http://u:hunter2@localhost/r"}, []string{"credentials in the URL are not accepted"}},
		{"bad name", []string{"run", "--source", "a/b=/x", "--root", root}, []string{"not a URL"}},
		{"bad name before a URL", []string{"run", "--source", "../evil=https://host/c.tar.gz", "--root", root}, []string{`invalid name "../evil"`}},
		{"duplicate name", []string{"run", "--source", "a=/x", "--source", "a=/y", "--root", root}, []string{`name "a" used twice`}},
		{"signal without process", []string{"run", "--source", "/x", "--root", root, "--notify-signal", "HUP"}, []string{"go together"}},
		{"bad notify url", []string{"run", "--source", "/x", "--root", root, "--notify-url", "localhost:8080"}, []string{"need an http:// or https:// URL"}},
		{"several problems together", []string{"run", "--source", "/x", "--root", root, "--keep", "0", "--log-format", "xml"},
			[]string{"--keep must be at least 1", `--log-format "xml"`}},
		{"negative notify bound", []string{"run", "--source", "/x", "--root", root, "--notify-max-elapsed", "-1s"}, []string{"--notify-max-elapsed must not be negative"}},
		{"unknown check", []string{"once", "--source", "/x", "--root", root, "--validate", "syntax,spelling"}, []string{`--validate "spelling": unknown check (want syntax)`}},
		{"schema without file", []string{"once", "--source", "/x", "--root", root, "--validate-schema", "conf/*.yaml"}, []string{`--validate-schema "conf/*.yaml": want GLOB=FILE`}},
		{"missing schema file", []string{"once", "--source", "/x", "--root", root, "--validate-schema", "*.json=/nonexistent/s.json"}, []string{"--validate-schema open /nonexistent/s.json: no such file or directory"}},
		{"validate command not found", []string{"once", "--source", "/x", "--root", root, "--validate-command", "no-such-linter --strict"}, []string{`--validate-command "no-such-linter --strict": no-such-linter: not found on PATH`}},
		{"validate command needs a shell", []string{"once", "--source", "/x", "--root", root, "--validate-command", "promtool check config p.yml | tee log"}, []string{`"| tee log" needs a shell`}},
		{"rollback without a reload endpoint", []string{"run", "--source", "/x", "--root", root, "--rollback-on-reject", "--notify-signal", "HUP", "--notify-process", "app"},
			[]string{"--rollback-on-reject needs --notify-url"}},
		{"rollback with one revision kept", []string{"run", "--source", "/x", "--root", root, "--rollback-on-reject", "--notify-url", "http://127.0.0.1:9090/-/reload", "--keep", "1"},
			[]string{"--rollback-on-reject needs --keep of at least 2"}},
		{"negative reject after", []string{"run", "--source", "/x", "--root", root, "--reject-after", "-1s"}, []string{"--reject-after must not be negative"}},
		{"negative rollout window", []string{"run", "--source", "/x", "--root", root, "--rollout-window", "-1m"}, []string{"--rollout-window must not be negative"}},
		{"exec command needs a shell", []string{"run", "--source", "/x", "--root", root, "--exec-command", "nginx -t && nginx -s reload"}, []string{`--exec-command "nginx -t && nginx -s reload": "&& nginx -s reload" needs a shell`}},
		{"exec command not found", []string{"run", "--source", "/x", "--root", root, "--exec-command", "no-such-reloader"}, []string{`--exec-command "no-such-reloader": no-such-reloader: not found on PATH`}},
		{"relative touch file", []string{"run", "--source", "/x", "--root", root, "--touch-file", "reload"}, []string{`--touch-file "reload": want an absolute path`}},
		{"unknown command", []string{"sync"}, []string{`unknown command "sync"`}},
		{"unknown flag", []string{"once", "-nope"}, []string{"unknown flag --nope (see 'ferry once --help')"}},
		{"extra argument", []string{"run", "--source", "/x", "--root", root, "extra"}, []string{`unexpected argument "extra"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runFerry(t, nil, tc.args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want 2; stderr:\n%s", code, stderr)
			}
			if lines := strings.Count(stderr, "\n"); lines != len(tc.want) {
				t.Errorf("%d lines for %d problems:\n%s", lines, len(tc.want), stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if _, err := os.Stat(root); err == nil {
				t.Fatal("a usage error created the root")
			}
		})
	}
}

func TestEnvironmentFillsFlagsAndCommandLineWins(t *testing.T) {
	origin := t.TempDir()
	os.WriteFile(filepath.Join(origin, "a"), []byte("1"), 0o644)
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "b"), []byte("2"), 0o644)
	root := t.TempDir()
	env := map[string]string{
		"FERRY_SOURCE":    "one=" + origin + "\n\ntwo=" + other + "\n",
		"FERRY_ROOT":      filepath.Join(t.TempDir(), "ignored"),
		"FERRY_LOG_LEVEL": "warn",
	}
	code, _, stderr := runFerry(t, env, "once", "--root", root)
	if code != exitOK {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	for name, file := range map[string]string{"one": "a", "two": "b"} {
		if _, err := os.Stat(filepath.Join(root, name, file)); err != nil {
			t.Errorf("source %s from FERRY_SOURCE not published in the --root given: %v", name, err)
		}
	}
	if strings.Contains(stderr, `"level":"INFO"`) {
		t.Errorf("FERRY_LOG_LEVEL=warn ignored:\n%s", stderr)
	}
	code, _, stderr = runFerry(t, map[string]string{"FERRY_KEEP": "many"}, "once", "--source", origin, "--root", root)
	if code != exitUsage || !strings.Contains(stderr, "FERRY_KEEP") {
		t.Fatalf("bad FERRY_KEEP: exit %d, stderr:\n%s", code, stderr)
	}
}

func TestHelpListsEveryFlagWithDefault(t *testing.T) {
	code, stdout, _ := runFerry(t, nil, "run", "--help")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"-period duration", "(default 30s)", "-keep int", "(default 3)", "-http-addr address", `(default ":8475")`, "FERRY_", "(default 1Gi)"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

func TestOnceExits1WhenTheSourceStaysBroken(t *testing.T) {
	code, _, stderr := runFerry(t, nil, "once", "--source", filepath.Join(t.TempDir(), "missing"),
		"--root", t.TempDir(), "--once-timeout", "300ms")
	if code != exitFailed || !strings.Contains(stderr, "no such file or directory") {
		t.Fatalf("exit %d, want 1 naming the cause:\n%s", code, stderr)
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := runFerry(t, nil, "version")
	if code != 0 || stdout != "ferry dev\n" {
		t.Fatalf("version: %d %q", code, stdout)
	}
}

func TestSizeFlag(t *testing.T) {
	for in, want := range map[string]int64{"10": 10, "1K": 1000, "2Mi": 2 << 20, "1GiB": 1 << 30, " 3 kb ": 3000} {
		var s sizeFlag
		if err := s.Set(in); err != nil || int64(s) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, s, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1X", "99999999999999999999G"} {
		var s sizeFlag
		if err := s.Set(in); err == nil {
			t.Errorf("Set(%q) succeeded", in)
		}
	}
}

// The HTTP backend is wired with its flags: a token file reaches the server.
func TestOnceFromAnHTTPSourceSendsTheTokenFile(t *testing.T) {
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		w.Header().Set("ETag", `"v1"`)
		io.WriteString(w, "greeting: hi\n")
	}))
	defer srv.Close()
	token := filepath.Join(t.TempDir(), "token")
	os.WriteFile(token, []byte("t0ken\n"), 0o600)
	root := t.TempDir()
	code, _, stderr := runFerry(t, nil, "once", "--source", "app="+srv.URL+"/app.yaml", "--root", root,
		"--http-bearer-token-file", token)
	if code != exitOK {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	if auth != "Bearer t0ken" {
		t.Fatalf("server saw Authorization %q", auth)
	}
	if data, _ := os.ReadFile(filepath.Join(root, "app", "app.yaml")); string(data) != "greeting: hi\n" {
		t.Fatalf("published %q", data)
	}
	if strings.Contains(stderr, "t0ken") {
		t.Fatal("the token was logged")
	}
}

// With --max-failures reached, run must exit 1 even while a notifier is
// running (it waited for the notifier, which waited for a cancel).
func TestRunExitsAfterMaxFailuresWithANotifier(t *testing.T) {
	code, _, stderr := runFerry(t, map[string]string{"FERRY_HTTP_ADDR": ""}, "run",
		"--source", filepath.Join(t.TempDir(), "missing"), "--root", t.TempDir(),
		"--max-failures", "2", "--period", "50ms", "--notify-url", "http://127.0.0.1:1/reload")
	if code != exitFailed {
		t.Fatalf("exit %d, want 1\n%s", code, stderr)
	}
}

// FERRY_HTTP_ADDR set but empty turns the endpoints off, as --http-addr=
// does: set-but-empty counts.
func TestEmptyEnvironmentValueCounts(t *testing.T) {
	o, err := parse("run", []string{"--source", "/x", "--root", "/r"},
		func(k string) (string, bool) { return "", k == "FERRY_HTTP_ADDR" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.global.httpAddr != "" {
		t.Fatalf("httpAddr = %q, want empty", o.global.httpAddr)
	}
}

// TestLogsWriteReadableDurations: "2s", not 2000000000, in both formats.
func TestLogsWriteReadableDurations(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		log, err := newLogger(&options{logFormat: format, logLevel: "info"}, &buf)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("sync failed", "retry_in", 1367*time.Millisecond, slog.Group("notify", "after", 2*time.Second))
		for _, want := range []string{"1.367s", "2s"} {
			if !strings.Contains(buf.String(), want) || strings.Contains(buf.String(), "1367000000") {
				t.Errorf("%s: %s, want %s", format, strings.TrimSpace(buf.String()), want)
			}
		}
	}
}

// TestOneMistakeOneLine: a value that does not parse is reported once,
// not again as the zero the flag package leaves ("must be positive").
func TestOneMistakeOneLine(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	code, _, stderr := runFerry(t, map[string]string{"FERRY_PERIOD": "abc"}, "run", "--source", "/x", "--root", root)
	if code != exitUsage || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, `FERRY_PERIOD: "abc" does not parse (want a value like "30s")`) {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
}
