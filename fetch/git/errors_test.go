package git_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/fetchtest"
	"github.com/ferrysync/ferry/fetch/git"
	"github.com/ferrysync/ferry/internal/report"
	"github.com/ferrysync/ferry/internal/sourcetest"
)

func TestAuthFailuresArePermanentAndNeverShowTheSecret(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	newRepo(t, base, "r.git").set(map[string]string{"a": "1"})
	srv := startHTTPAuth(t, base, "alice", "right-token")
	pw := filepath.Join(t.TempDir(), "token")
	os.WriteFile(pw, []byte("wrong-token"), 0o600)

	anon, _ := newSource(t, srv.url("r.git"), git.Options{}, t.TempDir())
	if _, _, err := fetchMem(t, anon, ""); err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), "authentication required") {
		t.Fatalf("anonymous: err = %v, want a permanent 'authentication required'", err)
	}

	src, logs := newSource(t, srv.url("r.git"), git.Options{Username: "alice", PasswordFile: pw}, t.TempDir())
	_, _, err := fetchMem(t, src, "")
	if err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("wrong token: err = %v, want a permanent 'authentication failed'", err)
	}
	assertOneLine(t, err)
	if strings.Contains(err.Error(), "wrong-token") || strings.Contains(logs.String(), "wrong-token") {
		t.Fatalf("the secret leaked: %v\n%s", err, logs)
	}

	// The file is re-read on every sync: a rotated Secret fixes it in place.
	os.WriteFile(pw, []byte("right-token\n"), 0o600)
	_, w := mustFetch(t, src)
	sourcetest.AssertTree(t, w.Tree(), map[string]string{"a": "1"})
}

func TestSSHHostKeyMustBeKnown(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	newRepo(t, base, "r.git").set(map[string]string{"a": "1"})
	srv := startSSH(t, base)
	dir := t.TempDir()

	// known_hosts holds another key for this host: a changed key or a
	// man in the middle.
	other, _ := ssh.NewSignerFromKey(newKey(t))
	mismatch := filepath.Join(dir, "mismatch")
	srv.writeKnownHosts(t, mismatch, other.PublicKey())
	// known_hosts without this host at all.
	unknown := filepath.Join(dir, "unknown")
	os.WriteFile(unknown, []byte("[127.0.0.1]:1 "+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(srv.hostKey.PublicKey())))+"\n"), 0o644)

	for _, c := range []struct{ file, want string }{
		{mismatch, "does not match the known_hosts file"},
		{unknown, "is not in the known_hosts file"},
	} {
		o := srv.options()
		o.KnownHostsFile = c.file
		src, _ := newSource(t, srv.url("r.git"), o, t.TempDir())
		_, _, err := fetchMem(t, src, "")
		if err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("err = %v, want a permanent %q", err, c.want)
		}
		assertOneLine(t, err)
	}

	// The explicit opt-out works and warns on every sync.
	src, logs := newSource(t, srv.url("r.git"), git.Options{SSHKeyFile: srv.clientKeyFile, InsecureIgnoreHostKey: true}, t.TempDir())
	rev, _ := mustFetch(t, src)
	if _, _, err := fetchMem(t, src, rev); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "host key not verified"); n != 2 {
		t.Fatalf("%d insecure-host-key warnings for 2 syncs, want 2", n)
	}
}

// TestPermanentFailures: what retrying cannot fix says so, in one line.
func TestPermanentFailures(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	r.set(map[string]string{"a": "1"})
	h := startHTTP(t, base)
	s := startSSH(t, base)
	refused := s.options()
	refused.SSHKeyFile = writeKey(t, filepath.Join(t.TempDir(), "other_key"), newKey(t), "")
	for _, c := range []struct {
		name, url string
		opts      git.Options
		want      string
	}{
		{"repository not found over HTTP", h.url("missing.git"), git.Options{}, "repository not found"},
		{"repository not found over SSH", s.url("missing.git"), s.options(), "repository not found"},
		{"refused SSH key", s.url("r.git"), refused, "SSH authentication failed"},
		{"no such branch", h.url("r.git") + "?ref=nope", git.Options{}, `ref "nope" not found`},
	} {
		src, _ := newSource(t, c.url, c.opts, t.TempDir())
		_, _, err := fetchMem(t, src, "")
		if err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: err = %v, want a permanent %q", c.name, err, c.want)
		}
		assertOneLine(t, err)
	}
}

func TestDeletedBranchKeepsTheRevision(t *testing.T) {
	t.Parallel()
	r, srv := serveRepo(t)
	r.set(map[string]string{"a": "1"})
	r.git("checkout", "-q", "-b", "release")
	r.set(map[string]string{"a": "release"})
	r.git("checkout", "-q", "main")
	store, state := newStore(t, fetch.Limits{})
	src, _ := newSource(t, srv.url("r.git")+"?ref=release", git.Options{}, state)
	sourcetest.MustSync(t, store, "c", src)
	r.git("branch", "-q", "-D", "release")
	if err := sourcetest.Sync(t, store, "c", src).Err; err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), `ref "release" not found`) {
		t.Fatalf("err = %v, want a permanent 'ref not found'", err)
	}
	assertPublished(t, store, map[string]string{"a": "release"})
}

func TestUnreachableServerIsATransientOneLineError(t *testing.T) {
	t.Parallel()
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	src, _ := newSource(t, "git::http://"+addr+"/r.git", git.Options{}, t.TempDir())
	_, _, err := fetchMem(t, src, "")
	if err == nil || fetch.IsPermanent(err) || !strings.Contains(err.Error(), "cannot reach the server") {
		t.Fatalf("err = %v, want a transient 'cannot reach the server'", err)
	}
	assertOneLine(t, err)
}

// TestStalledServerTimesOut: a server that accepts and never answers
// (a wedged server or load balancer) ends a Fetch at its deadline, also
// over SSH, where go-git dials and shakes hands without the context, and
// over git://.
func TestStalledServerTimesOut(t *testing.T) {
	t.Parallel()
	stalledHTTP := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer stalledHTTP.Close()
	ln := listen(t)
	acceptLoop(t, ln, func(c net.Conn) { io.Copy(io.Discard, c) })
	key := writeKey(t, filepath.Join(t.TempDir(), "key"), newKey(t), "")
	for _, c := range []struct {
		url  string
		opts git.Options
	}{
		{"git::" + stalledHTTP.URL + "/r.git", git.Options{}},
		{"git::ssh://git@" + ln.Addr().String() + "/r.git", git.Options{SSHKeyFile: key, InsecureIgnoreHostKey: true}},
		{"git::git://" + ln.Addr().String() + "/r.git", git.Options{}},
	} {
		src, _ := newSource(t, c.url, c.opts, t.TempDir())
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start := time.Now()
		_, err := src.Fetch(ctx, "", fetchtest.NewWriter(fetch.Limits{}))
		cancel()
		if err == nil || fetch.IsPermanent(err) || !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("%s: err = %v, want a transient timeout", c.url, err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("%s: the timeout took %s", c.url, d)
		}
	}
}

func TestNewRejectsBadConfigurationBeforeAnyNetwork(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := writeKey(t, filepath.Join(dir, "key"), newKey(t), "")
	encKey := writeKey(t, filepath.Join(dir, "enc"), newKey(t), "pass")
	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(kh, nil, 0o644)
	sshOK := git.Options{SSHKeyFile: key, KnownHostsFile: kh}

	for _, c := range []struct {
		name, url string
		o         git.Options
		want      string
	}{
		{"password in URL", "git::https://u:hunter2@example.com/r.git", git.Options{}, "give PasswordFile"},
		{"unknown option", "git::https://example.com/r.git?rev=main", git.Options{}, `"rev" is unknown`},
		{"negative depth", "git::https://example.com/r.git?depth=-1", git.Options{}, "depth"},
		{"bad ref", "git::https://example.com/r.git?ref=a..b", git.Options{}, "not a valid branch"},
		{"unknown submodules mode", "git::https://example.com/r.git?submodules=deep", git.Options{}, "want recursive, shallow or off"},
		{"submodules with a query typed into it", "git::https://example.com/r.git?submodules=1?token=hunter2", git.Options{}, "submodules=REDACTED"},
		{"inline ssh key", "git::ssh://git@example.com/r.git?sshkey=AAAA", sshOK, "use SSHKeyFile"},
		{"ssh without a key", "git::ssh://git@example.com/r.git", git.Options{KnownHostsFile: kh}, "give SSHKeyFile"},
		{"ssh without known_hosts", "git@example.com:org/r.git", git.Options{SSHKeyFile: key}, "give KnownHostsFile (or, at your own risk, InsecureIgnoreHostKey)"},
		{"missing known_hosts file", "git::ssh://git@example.com/r.git", git.Options{SSHKeyFile: key, KnownHostsFile: filepath.Join(dir, "nope")}, "KnownHostsFile: stat"},
		{"encrypted key", "git::ssh://git@example.com/r.git", git.Options{SSHKeyFile: encKey, KnownHostsFile: kh}, "SSHKeyFile: " + encKey + " is encrypted with a passphrase"},
		{"missing password file", "git::https://example.com/r.git", git.Options{PasswordFile: filepath.Join(dir, "nope")}, "PasswordFile: open"},
		{"unsupported scheme", "git::ftp://example.com/r.git", git.Options{}, "not supported"},
	} {
		t.Run(c.name, func(t *testing.T) {
			u, err := fetch.Parse(c.url)
			if err != nil {
				t.Fatal(err)
			}
			_, err = git.New(u, c.o, fetch.Env{StateDir: dir})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, c.want)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "--") {
				t.Fatalf("error shows the password or names a flag: %v", err)
			}
		})
	}
	// scp-like shorthand and SSH with everything given are accepted; the
	// files a URL does not use are not read.
	broken := git.Options{SSHKeyFile: key, KnownHostsFile: kh, PasswordFile: filepath.Join(dir, "nope")}
	for _, raw := range []string{"git@example.com:org/r.git?ref=v1.2.3", "git::ssh://git@example.com:2222/r.git//conf?depth=3"} {
		u, err := fetch.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := git.New(u, broken, fetch.Env{StateDir: dir}); err != nil {
			t.Fatalf("New(%s): %v", raw, err)
		}
	}
}

func TestValidateNamesTheFieldsOfEveryBrokenFile(t *testing.T) {
	t.Parallel()
	if err := (git.Options{Username: "u"}).Validate(); err != nil {
		t.Fatalf("no files: %v", err)
	}
	dir := t.TempDir()
	notAKey := filepath.Join(dir, "not-a-key")
	os.WriteFile(notAKey, []byte("hello\n"), 0o600)
	err := git.Options{PasswordFile: filepath.Join(dir, "nope"), SSHKeyFile: notAKey, KnownHostsFile: dir + "/nope"}.Validate()
	var fields []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *report.FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("%v is no FieldError", e)
		}
		fields = append(fields, fe.Fields()...)
	}
	if got := strings.Join(fields, ","); got != "PasswordFile,SSHKeyFile,KnownHostsFile" {
		t.Fatalf("fields %s in %v", got, err)
	}
}
