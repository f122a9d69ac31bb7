package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/testkit"
	"github.com/ferrysync/ferry/sync"
)

// hostileSecret stands for a password someone put where it does not
// belong: it must never be echoed.
const hostileSecret = "Zq7-hunter2-pw"

// TestHostileInputIsRefusedBeforeAnythingHappens feeds every input surface
// of the command line (flags, FERRY_* variables, source URLs, secret
// files, the volume itself) values that are wrong, hostile or absurd. Each
// must end in exit 2, with one line per problem that names it, no control character or secret
// echoed, no panic, and (for exit 2) nothing created under --root.
func TestHostileInputIsRefusedBeforeAnythingHappens(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "a"), []byte("a"), 0o644)
	file := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), mode)
		os.Chmod(p, mode)
		return p
	}
	token := file("token", "t0ken\n", 0o600)
	emptyFile := file("empty", "", 0o600)
	blankFile := file("blank", " \n\n", 0o600)
	aDir := filepath.Join(dir, "a-directory")
	os.MkdirAll(aDir, 0o755)
	badHeaders := file("headers", "X-Ok: 1\nno colon here "+hostileSecret+"\n", 0o600)
	crlfHeaders := file("crlf-headers", "X-Api-Key: a\rInjected: "+hostileSecret+"\n", 0o600)
	reservedHeaders := file("reserved-headers", "Host: evil.example\n", 0o600)
	rootFile := file("root-is-a-file", "", 0o644)
	missing := filepath.Join(dir, "missing")
	long := "https://127.0.0.1:1/" + strings.Repeat("a", 1<<20)

	const exitCodeUsage = 2
	cases := []struct {
		name string
		args []string
		env  map[string]string
		code int
		want []string // each must appear in stderr
	}{
		// Flags.
		{"zero period", []string{"--period", "0s"}, nil, exitCodeUsage, []string{"--period must be positive"}},
		{"negative period", []string{"--period", "-1s"}, nil, exitCodeUsage, []string{"--period must be positive"}},
		{"huge period", []string{"--period", "9999999999h"}, nil, exitCodeUsage, []string{"-period"}},
		{"negative keep", []string{"--keep", "-1"}, nil, exitCodeUsage, []string{"--keep must be at least 1"}},
		{"zero timeout", []string{"--timeout", "0s"}, nil, exitCodeUsage, []string{"must be positive"}},
		{"negative notify timeout", []string{"--notify-timeout", "-1s"}, nil, exitCodeUsage, []string{"must be positive"}},
		{"zero max bytes", []string{"--max-bytes", "0"}, nil, exitCodeUsage, []string{"--max-bytes, --max-files and --max-file-size must be positive"}},
		{"overflowing size", []string{"--max-file-size", "99999999999999999999Gi"}, nil, exitCodeUsage, []string{"invalid size"}},
		{"negative size", []string{"--http-max-body", "-1"}, nil, exitCodeUsage, []string{"invalid size"}},
		{"size unit", []string{"--max-bytes", "1Ti"}, nil, exitCodeUsage, []string{`invalid size unit "Ti"`}},
		{"negative failures", []string{"--max-failures", "-1"}, nil, exitCodeUsage, []string{"--max-failures and --max-staleness must not be negative"}},
		{"link escaping", []string{"--link", "../etc"}, nil, exitCodeUsage, []string{`--link "../etc"`}},
		{"link dot", []string{"--link", ".."}, nil, exitCodeUsage, []string{`--link ".."`}},
		{"link is the meta dir", []string{"--link", ".ferry"}, nil, exitCodeUsage, []string{`--link ".ferry"`}},
		{"link with newline", []string{"--link", "a\nferry: all good"}, nil, exitCodeUsage, []string{`--link "a\nferry: all good"`}},
		{"log level", []string{"--log-level", "trace"}, nil, exitCodeUsage, []string{`--log-level "trace"`}},
		{"run: notify method", []string{"--notify-url", "http://127.0.0.1:1/r", "--notify-method", "GET /evil"}, nil, exitCodeUsage, []string{"--notify-method \"GET /evil\": want an HTTP method"}},
		{"once: notify method", []string{"--notify-method", "GET /evil"}, nil, exitCodeUsage, []string{"want an HTTP method"}},
		{"bad http addr", []string{"--http-addr", "nope"}, nil, exitCodeUsage, []string{`--http-addr "nope": want HOST:PORT`}},
		{"notify url with password", []string{"--notify-url", "ftp://u:" + hostileSecret + "@127.0.0.1:1/x"}, nil, exitCodeUsage, []string{"need an http:// or https:// URL"}},
		{"notify url unparsable with password", []string{"--notify-url", "http://u:" + hostileSecret + "@127.0.0.1:port/x"}, nil, exitCodeUsage, []string{"--notify-url"}},
		{"signal name", []string{"--notify-signal", "KILLALL", "--notify-process", "x"}, nil, exitCodeUsage, []string{"--notify-signal"}},
		{"s3 concurrency", []string{"--source", "s3::http://127.0.0.1:1/b/p/", "--s3-concurrency", "-4", "--s3-anonymous"}, nil, exitCodeUsage, []string{"--s3-concurrency"}},
		{"flag given twice as bool value", []string{"--http-insecure-skip-verify=maybe"}, nil, exitCodeUsage, []string{"invalid boolean value"}},

		// FERRY_* variables.
		{"env period", nil, map[string]string{"FERRY_PERIOD": "soon"}, exitCodeUsage, []string{"FERRY_PERIOD"}},
		{"env keep two lines", nil, map[string]string{"FERRY_KEEP": "3\n4"}, exitCodeUsage, []string{"FERRY_KEEP"}},
		{"env sources blank", []string{}, map[string]string{"FERRY_SOURCE": " \r\n\n\t"}, exitCodeUsage, []string{"--source is required"}},
		{"env source CRLF and duplicates", []string{}, map[string]string{"FERRY_SOURCE": "a=" + src + "\r\na=" + src + "\r\n"}, exitCodeUsage, []string{`name "a" used twice`}},
		{"env source password", []string{}, map[string]string{"FERRY_SOURCE": "x=https://u:" + hostileSecret + "@127.0.0.1:1/app.yaml"}, exitCodeUsage, []string{"credentials in the URL are not accepted"}},
		{"env size", nil, map[string]string{"FERRY_MAX_BYTES": "lots"}, exitCodeUsage, []string{"FERRY_MAX_BYTES"}},

		// Source URLs.
		{"unnamed relative", []string{"--source", "config"}, nil, exitCodeUsage, []string{"not a URL"}},
		{"name only", []string{"--source", "cfg="}, nil, exitCodeUsage, []string{"not a URL"}},
		{"name dotdot", []string{"--source", "..=" + src}, nil, exitCodeUsage, []string{`invalid name ".."`}},
		{"name meta dir", []string{"--source", ".ferry=" + src}, nil, exitCodeUsage, []string{`invalid name ".ferry"`}},
		{"name of the lock file", []string{"--source", "lock=" + src}, nil, exitCodeUsage, []string{`invalid name "lock"`}},
		{"name of a temporary link", []string{"--source", ".link-x=" + src}, nil, exitCodeUsage, []string{`invalid name ".link-x"`}},
		{"newline in source", []string{"--source", "cfg=/x\nferry: all good"}, nil, exitCodeUsage, []string{"--source"}},
		{"NUL in source", []string{"--source", "cfg=/x\x00y"}, nil, exitCodeUsage, []string{"--source"}},
		{"escape in source", []string{"--source", "cfg=https://127.0.0.1:1/\x1b[31mred"}, nil, exitCodeUsage, []string{"--source"}},
		{"subdir escapes", []string{"--source", "cfg=https://127.0.0.1:1/b.tar.gz//../../etc"}, nil, exitCodeUsage, []string{"leaves the source"}},
		{"unknown scheme", []string{"--source", "cfg=gopher://127.0.0.1:1/x"}, nil, exitCodeUsage, []string{`unknown kind "gopher"`}},
		{"forced unknown kind", []string{"--source", "cfg=ftp::https://127.0.0.1:1/x"}, nil, exitCodeUsage, []string{`unknown kind "ftp"`}},
		{"http password in URL", []string{"--source", "cfg=https://u:" + hostileSecret + "@127.0.0.1:1/app.yaml"}, nil, exitCodeUsage, []string{"credentials in the URL are not accepted"}},
		{"http password in bad URL", []string{"--source", "cfg=https://u:" + hostileSecret + "@127.0.0.1:port/app.yaml"}, nil, exitCodeUsage, []string{"--source"}},
		{"s3 key in URL", []string{"--source", "cfg=s3://b/p/?aws_access_key_secret=" + hostileSecret}, nil, exitCodeUsage, []string{"credentials in the URL"}},
		{"s3 dotdot key", []string{"--source", "cfg=s3::http://127.0.0.1:1/b/conf/../../etc/", "--s3-anonymous"}, nil, exitCodeUsage, []string{`".." component`}},
		{"http file with no name", []string{"--source", "cfg=https://127.0.0.1:1/"}, nil, exitCodeUsage, []string{"names no file"}},
		{"http archive option", []string{"--source", "cfg=https://127.0.0.1:1/x?archive=rar"}, nil, exitCodeUsage, []string{`archive="rar"`}},
		{"http checksum", []string{"--source", "cfg=https://127.0.0.1:1/x?checksum=sha256:zz"}, nil, exitCodeUsage, []string{"checksum"}},
		{"file with host", []string{"--source", "cfg=file://evil.example/etc"}, nil, exitCodeUsage, []string{"local path"}},
		{"megabyte URL", []string{"--source", long}, nil, exitCodeUsage, []string{"longer than 8192"}},
		{"signed URL in errors", []string{"--source", "cfg=https://127.0.0.1:1/b.zip?X-Amz-Signature=" + hostileSecret + "&archive=rar"}, nil, exitCodeUsage, []string{"X-Amz-Signature=REDACTED"}},

		// Secret and header files.
		{"token file missing", []string{"--source", "cfg=https://127.0.0.1:1/a.yaml", "--http-bearer-token-file", missing}, nil, exitCodeUsage, []string{"--http-bearer-token-file", "no such file"}},
		{"token file empty", []string{"--source", "cfg=https://127.0.0.1:1/a.yaml", "--http-bearer-token-file", emptyFile}, nil, exitCodeUsage, []string{"is empty"}},
		{"token file blank", []string{"--source", "cfg=https://127.0.0.1:1/a.yaml", "--http-bearer-token-file", blankFile}, nil, exitCodeUsage, []string{"is empty"}},
		{"token file is a directory", []string{"--source", "cfg=https://127.0.0.1:1/a.yaml", "--http-bearer-token-file", aDir}, nil, exitCodeUsage, []string{"--http-bearer-token-file", "is a directory"}},
		{"password file missing", []string{"--source", "cfg=https://127.0.0.1:1/a.yaml", "--http-username", "u", "--http-password-file", missing}, nil, exitCodeUsage, []string{"--http-password-file"}},
		{"password file empty", []string{"--source", "cfg=https://127.0.0.1:1/a.yaml", "--http-username", "u", "--http-password-file", emptyFile}, nil, exitCodeUsage, []string{"--http-password-file", "is empty"}},
		{"password without user", []string{"--source", "cfg=https://127.0.0.1:1/a.yaml", "--http-password-file", token}, nil, exitCodeUsage, []string{"go together"}},
		{"header file missing", []string{"--source", "cfg=https://127.0.0.1:1/a.yaml", "--http-header-file", missing}, nil, exitCodeUsage, []string{"--http-header-file"}},
		{"header file malformed", []string{"--source", "cfg=https://127.0.0.1:1/a.yaml", "--http-header-file", badHeaders}, nil, exitCodeUsage, []string{"line 2"}},
		{"header file CR injection", []string{"--source", "cfg=https://127.0.0.1:1/a.yaml", "--http-header-file", crlfHeaders}, nil, exitCodeUsage, []string{"line 1"}},
		{"header file reserved", []string{"--source", "cfg=https://127.0.0.1:1/a.yaml", "--http-header-file", reservedHeaders}, nil, exitCodeUsage, []string{"Host is set by ferry"}},
		{"CA file not PEM", []string{"--source", "cfg=https://127.0.0.1:1/a.yaml", "--http-ca-file", token}, nil, exitCodeUsage, []string{"no PEM certificate"}},
		{"s3 key file missing", []string{"--source", "cfg=s3::http://127.0.0.1:1/b/p/", "--s3-access-key-file", missing, "--s3-secret-key-file", token}, nil, exitCodeUsage, []string{"--s3-access-key-file"}},
		{"s3 secret without key", []string{"--source", "cfg=s3::http://127.0.0.1:1/b/p/", "--s3-secret-key-file", token}, nil, exitCodeUsage, []string{"go together"}},
		{"s3 key file is a directory", []string{"--source", "cfg=s3::http://127.0.0.1:1/b/p/", "--s3-access-key-file", aDir, "--s3-secret-key-file", token}, nil, exitCodeUsage, []string{"is a directory"}},
		{"s3 key file empty", []string{"--source", "cfg=s3::http://127.0.0.1:1/b/p/", "--s3-access-key-file", emptyFile, "--s3-secret-key-file", token}, nil, exitCodeUsage, []string{"--s3-access-key-file", "is empty"}},

		// The volume.
		{"root is a file", []string{"--root", rootFile}, nil, exitCodeUsage, []string{"root"}},
	}
	if os.Geteuid() != 0 { // root reads any file
		unreadable := file("unreadable", "t0ken\n", 0o000)
		cases = append(cases, struct {
			name string
			args []string
			env  map[string]string
			code int
			want []string
		}{"token file unreadable", []string{"--source", "cfg=https://127.0.0.1:1/a.yaml", "--http-bearer-token-file", unreadable}, nil, exitCodeUsage, []string{"permission denied"}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			// 'run' checks what only it uses (notify); with good options it
			// would run: every 'run' case is a configuration error.
			cmd := "once"
			if strings.HasPrefix(tc.name, "run: ") {
				cmd = "run"
			}
			args := append([]string{cmd, "--once-timeout", "2s", "--http-addr", ""}, tc.args...)
			if !hasFlag(tc.args, "--root") {
				args = append(args, "--root", root)
			}
			if !hasFlag(tc.args, "--source") && (tc.env == nil || tc.env["FERRY_SOURCE"] == "") {
				args = append(args, "--source", "cfg="+src)
			}
			code, stdout, stderr := runFerry(t, tc.env, args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.code, testkit.Clip(stderr, 2000))
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, testkit.Clip(stderr, 2000))
				}
			}
			checkHostileOutput(t, stdout+stderr)
			if _, err := os.Stat(root); err == nil {
				t.Error("a configuration error created the root")
			}
		})
	}
}

// checkHostileOutput fails on a secret, a control character or a forged
// line in what ferry printed.
func checkHostileOutput(t *testing.T, out string) {
	t.Helper()
	if strings.Contains(out, hostileSecret) {
		t.Errorf("a secret was echoed:\n%s", testkit.Clip(out, 2000))
	}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if strings.HasPrefix(line, "ferry: all good") {
			t.Errorf("input forged a line of output: %q", line)
		}
		for _, r := range line {
			if unicode.IsControl(r) && r != '\t' {
				t.Errorf("control character %q echoed in %q", r, testkit.Clip(line, 2000))
				break
			}
		}
	}
}

func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}

// TestTheVolumeItselfMayBeHostile: what is already under --root when
// ferry starts (a directory, a file or a foreign symlink where its link
// goes) is refused with a message that names it, before any fetch, and
// left alone.
func TestTheVolumeItselfMayBeHostile(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a"), []byte("a"), 0o644)
	for _, tc := range []struct {
		name  string
		setup func(link string)
		want  string
	}{
		{"directory at the link", func(l string) { os.MkdirAll(filepath.Join(l, "mine"), 0o755) }, "is not a symlink"},
		{"file at the link", func(l string) { os.WriteFile(l, []byte("mine"), 0o644) }, "is not a symlink"},
		{"foreign symlink", func(l string) { os.Symlink("/etc", l) }, "not at a ferry revision"},
		{"link into the meta dir of another source", func(l string) { os.Symlink(".ferry/other/rev", l) }, "not at a ferry revision"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			link := filepath.Join(root, "cfg")
			tc.setup(link)
			before, _ := os.Lstat(link)
			code, _, stderr := runFerry(t, nil, "once", "--source", "cfg="+src, "--root", root)
			if code != exitUsage || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, link) {
				t.Fatalf("exit %d, want 2 naming %s (%q):\n%s", code, link, tc.want, stderr)
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("more than one line for one problem:\n%s", stderr)
			}
			after, err := os.Lstat(link)
			if err != nil || after.Mode() != before.Mode() {
				t.Fatalf("ferry touched what was there: %v", err)
			}
		})
	}
}

// TestWorldReadableSecretFilesAreWarnedAbout: a secret file any user may
// read is accepted (Kubernetes mounts Secrets 0644 unless defaultMode says
// otherwise) but warned about once, naming the flag and the path, never
// the content.
func TestWorldReadableSecretFilesAreWarnedAbout(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"1"`)
		w.Write([]byte("a: 1\n"))
	}))
	defer srv.Close()
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(hostileSecret+"\n"), mode)
		os.Chmod(p, mode)
		return p
	}
	tok := write("token", 0o644)
	hdr := filepath.Join(dir, "headers")
	os.WriteFile(hdr, []byte("X-Key: "+hostileSecret+"\n"), 0o604)
	os.Chmod(hdr, 0o604)
	s3key, s3secret := write("s3key", 0o600), write("s3secret", 0o666)
	syncTok := write("sync-token", 0o644)
	private := write("private-token", 0o600)

	code, stdout, stderr := runFerry(t, nil, "once", "--root", t.TempDir(),
		"--source", "web="+srv.URL+"/a.yaml", "--http-bearer-token-file", tok, "--http-header-file", hdr,
		"--source", "bucket=s3::http://127.0.0.1:1/b/p/", "--s3-access-key-file", s3key, "--s3-secret-key-file", s3secret,
		"--sync-token-file", syncTok, "--once-timeout", "1ms")
	_ = code // the S3 source is unreachable; only the warnings matter here
	checkHostileOutput(t, stdout+stderr)
	for flag, path := range map[string]string{
		"--http-bearer-token-file": tok, "--http-header-file": hdr, "--s3-secret-key-file": s3secret,
	} {
		if !warnedWorldReadable(stderr, flag, path) {
			t.Errorf("no warning about world-readable %s %s:\n%s", flag, path, stderr)
		}
	}
	if warnedWorldReadable(stderr, "--s3-access-key-file", s3key) {
		t.Errorf("warned about a 0600 file:\n%s", stderr)
	}

	// The sync token is read by the endpoints, which 'run' serves: run
	// until they answer, then stop as on SIGTERM.
	runLog := runUntilServing(t, "--root", t.TempDir(), "--source", "web="+srv.URL+"/a.yaml",
		"--http-bearer-token-file", private, "--sync-token-file", syncTok)
	if !warnedWorldReadable(runLog, "", syncTok) { // api names no flag: the path tells
		t.Errorf("no warning about world-readable --sync-token-file:\n%s", runLog)
	}
	if warnedWorldReadable(runLog, "--http-bearer-token-file", private) {
		t.Errorf("warned about a 0600 file:\n%s", runLog)
	}
	checkHostileOutput(t, runLog)
}

// runUntilServing runs 'ferry run' in-process with args until its
// endpoints answer, then cancels it as SIGTERM would, and returns what it
// logged.
func runUntilServing(t *testing.T, args ...string) string {
	t.Helper()
	addr := testkit.FreeAddr(t)
	var logs testkit.LogBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx, append([]string{"run", "--http-addr", addr}, args...), func(string) (string, bool) { return "", false }, io.Discard, &logs)
	}()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	testkit.Eventually(t, 20*time.Second, "the endpoints", func() bool {
		select {
		case <-done:
			t.Fatalf("ferry run ended at start:\n%s", logs.String())
		default:
		}
		return testkit.HTTPStatus("http://"+addr+"/healthz") != 0
	})
	stop()
	return logs.String()
}

func warnedWorldReadable(logs, flag, path string) bool {
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"level":"WARN"`) && strings.Contains(line, "readable by every user") &&
			strings.Contains(line, flag) && strings.Contains(line, path) {
			return true
		}
	}
	return false
}

// FuzzSourceFlag fuzzes the NAME=URL split of --source and the URL it
// hands on. Whatever the input: no panic; a valid split gives a valid link
// name and gives back the input; an error names --source, stays free of
// control characters, and is one line per problem.
func FuzzSourceFlag(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		o := &options{link: defaultLink}
		if err := o.sources.Set(raw); err != nil {
			return // empty: refused by the flag itself
		}
		value := o.sources[0]
		named, err := o.namedSources()
		if err != nil {
			checkErrorLines(t, err.Error())
			return
		}
		if len(named) != 1 {
			t.Fatalf("%q split into %d sources", raw, len(named))
		}
		n := named[0]
		if !sync.ValidName(n.name) {
			t.Fatalf("%q gave the invalid link name %q", raw, n.name)
		}
		if n.name+"="+n.url != value && n.url != value {
			t.Fatalf("%q split into %q and %q, which do not give it back", raw, n.name, n.url)
		}
		if n.name != defaultLink || strings.HasPrefix(value, defaultLink+"=") {
			if !strings.HasPrefix(value, n.name+"=") {
				t.Fatalf("%q named %q", raw, n.name)
			}
		}
		if u, err := fetch.Parse(n.url); err == nil {
			_ = u.String()
		} else {
			checkErrorLines(t, err.Error())
		}
	})
}

// FuzzSourceURLNeverEchoesItsPassword builds a --source whose URL holds
// a password in its userinfo, from fuzzed name, scheme, host and rest, and
// opens it with every backend ferry has: neither an error nor the
// redacted URL may show the password.
func FuzzSourceURLNeverEchoesItsPassword(f *testing.F) {
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, name, scheme, host, rest string) {
		if !schemePattern.MatchString(scheme) || strings.ContainsAny(host, "/@?#\\") ||
			strings.Contains(name+scheme+host+rest, hostileSecret[:6]) {
			return
		}
		raw := scheme + "://ferry:" + hostileSecret + "@" + host + rest
		if name != "" {
			raw = name + "=" + raw
		}
		o := &options{link: defaultLink}
		if err := o.sources.Set(raw); err != nil {
			return
		}
		named, err := o.namedSources()
		if err != nil {
			noSecret(t, raw, err.Error())
			return
		}
		// Only a password is a password: in "/a://u:p@h" (a local path) or
		// "a://b://u:p@h" (p is in the path) the secret is just text.
		v := strings.TrimPrefix(named[0].url, strings.SplitN(named[0].url, "::", 2)[0]+"::")
		if strings.HasPrefix(v, "/") {
			return
		}
		if pu, err := url.Parse(v); err == nil {
			if pw, _ := pu.User.Password(); pw != hostileSecret {
				return
			}
		}
		env := fetch.Env{StateDir: filepath.Join(dir, "state")}
		_, u, err := sources(o).Open(named[0].url, env)
		if err != nil {
			noSecret(t, raw, err.Error())
			return
		}
		noSecret(t, raw, u.String())
	})
}

var schemePattern = regexp.MustCompile(`^([A-Za-z0-9]+::)?[A-Za-z][A-Za-z0-9+.-]{0,15}$`)

func noSecret(t *testing.T, raw, out string) {
	t.Helper()
	if strings.Contains(out, hostileSecret) || strings.Contains(out, hostileSecret[4:]) {
		t.Fatalf("--source %q: the password shows in %q", raw, out)
	}
}

// checkErrorLines fails on an empty line or a control character in an
// error meant for the terminal (lines are separate problems).
func checkErrorLines(t *testing.T, msg string) {
	t.Helper()
	for _, line := range strings.Split(msg, "\n") {
		if strings.TrimSpace(line) == "" {
			t.Fatalf("error with an empty line: %q", msg)
		}
		for _, r := range line {
			if unicode.IsControl(r) && r != '\t' {
				t.Fatalf("error echoes control character %q: %q", r, msg)
			}
		}
	}
}
