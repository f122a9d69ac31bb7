package git_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ferrysync/ferry/fetch/git"
	"github.com/ferrysync/ferry/internal/gittest"
	"github.com/ferrysync/ferry/internal/testkit"
)

func runGit(env []string, dir string, stdin *os.File, args ...string) ([]byte, error) {
	cmd := exec.Command("git", args...)
	cmd.Env, cmd.Dir = env, dir
	if stdin != nil {
		cmd.Stdin = stdin
	}
	return cmd.CombinedOutput()
}

// repo is a non-bare repository made with the git CLI, served by the
// test servers under its name.
type repo struct {
	t    testing.TB
	dir  string
	name string
	env  []string
}

// newRepo creates base/name with branch main.
func newRepo(t testing.TB, base, name string) *repo {
	t.Helper()
	r := &repo{t: t, dir: filepath.Join(base, name), name: name, env: gittest.Env(filepath.Join(base, ".home"))}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r.git("init", "-q", "-b", "main")
	return r
}

// serveRepo is a new repository r.git behind smart HTTP.
func serveRepo(t testing.TB) (*repo, *httpServer) {
	base := t.TempDir()
	return newRepo(t, base, "r.git"), startHTTP(t, base)
}

// git runs a git command in the repository and returns its trimmed output.
func (r *repo) git(args ...string) string {
	r.t.Helper()
	out, err := runGit(r.env, r.dir, nil, args...)
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// set replaces the work tree with files and commits it; it returns the
// commit SHA.
func (r *repo) set(files map[string]string) string {
	r.t.Helper()
	r.clear()
	for p, c := range files {
		r.write(p, c, 0o644)
	}
	return r.commit("set")
}

func (r *repo) clear() {
	entries, _ := os.ReadDir(r.dir)
	for _, e := range entries {
		if e.Name() != ".git" {
			os.RemoveAll(filepath.Join(r.dir, e.Name()))
		}
	}
}

func (r *repo) write(p, content string, mode os.FileMode) {
	r.t.Helper()
	full := filepath.Join(r.dir, p)
	os.MkdirAll(filepath.Dir(full), 0o755)
	if err := os.WriteFile(full, []byte(content), mode); err != nil {
		r.t.Fatal(err)
	}
	os.Chmod(full, mode)
}

func (r *repo) symlink(p, target string) {
	r.t.Helper()
	full := filepath.Join(r.dir, p)
	os.MkdirAll(filepath.Dir(full), 0o755)
	if err := os.Symlink(target, full); err != nil {
		r.t.Fatal(err)
	}
}

func (r *repo) commit(msg string) string {
	r.t.Helper()
	r.git("add", "-A")
	r.git("commit", "-q", "--allow-empty", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

// addTags adds n tags at HEAD to the repository, packed as a git host
// keeps them.
func (r *repo) addTags(n int) {
	r.t.Helper()
	head := r.git("rev-parse", "HEAD")
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "create refs/tags/t%06d %s\n", i, head)
	}
	in := filepath.Join(r.t.TempDir(), "refs")
	if err := os.WriteFile(in, []byte(b.String()), 0o644); err != nil {
		r.t.Fatal(err)
	}
	f, err := os.Open(in)
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	if out, err := runGit(r.env, r.dir, f, "update-ref", "--stdin"); err != nil {
		r.t.Fatalf("git update-ref: %v: %s", err, out)
	}
	r.git("pack-refs", "--all")
}

// serverCounts is what an httpServer has counted so far.
type serverCounts struct{ requests, bytes, infoRefs, lsRefs, fetches int64 }

func (s *httpServer) counts() serverCounts {
	return serverCounts{s.requests.Load(), s.bytes.Load(), s.infoRefs.Load(), s.lsRefs.Load(), s.uploadPOST.Load()}
}

func (c serverCounts) minus(d serverCounts) serverCounts {
	return serverCounts{c.requests - d.requests, c.bytes - d.bytes, c.infoRefs - d.infoRefs, c.lsRefs - d.lsRefs, c.fetches - d.fetches}
}

// httpServer is git's smart HTTP protocol, served by git http-backend
// behind net/http/cgi, counting what it is asked. It speaks protocol v2 to
// a client that asks for it (net/http/cgi passes the Git-Protocol header
// on, which git http-backend reads).
type httpServer struct {
	*httptest.Server
	requests   atomic.Int64 // every request
	bytes      atomic.Int64 // response bytes of every request
	infoRefs   atomic.Int64 // GET info/refs: a v0 listing, or the probe for v2
	lsRefs     atomic.Int64 // POST git-upload-pack of command=ls-refs: a v2 listing
	uploadPOST atomic.Int64 // other POSTs to git-upload-pack: a fetch that downloads
	packBytes  atomic.Int64 // response bytes of those fetches
}

func startHTTP(t testing.TB, base string) *httpServer { return serveHTTP(t, base, nil) }

// startHTTPAuth serves base with basic auth when user is set.
func startHTTPAuth(t testing.TB, base, user, pass string) *httpServer {
	return serveHTTP(t, base, func(next http.Handler) http.Handler { return gittest.BasicAuth(user, pass, next) })
}

// startHTTPv0 serves base as a server that speaks protocol v0 only: it
// drops the Git-Protocol header, as a web server does that does not pass
// it on to git http-backend.
func startHTTPv0(t testing.TB, base string) *httpServer {
	return serveHTTP(t, base, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Del("Git-Protocol")
			next.ServeHTTP(w, r)
		})
	})
}

// serveHTTP serves base over smart HTTP, through wrap when it is set.
func serveHTTP(t testing.TB, base string, wrap func(http.Handler) http.Handler) *httpServer {
	t.Helper()
	var backend http.Handler = gittest.HTTPBackend(t, base)
	if wrap != nil {
		backend = wrap(backend)
	}
	s := &httpServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		w = &testkit.CountingWriter{ResponseWriter: w, N: &s.bytes}
		switch {
		case strings.HasSuffix(r.URL.Path, "/info/refs"):
			s.infoRefs.Add(1)
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-upload-pack"):
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			if bytes.Contains(body, []byte("command=ls-refs")) {
				s.lsRefs.Add(1)
				break
			}
			s.uploadPOST.Add(1)
			w = &testkit.CountingWriter{ResponseWriter: w, N: &s.packBytes}
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// url is the forced git URL of repository name.
func (s *httpServer) url(name string) string { return "git::" + s.URL + "/" + name }

// acceptLoop serves every connection ln accepts with handle until stop,
// which the test's end calls too.
func acceptLoop(t testing.TB, ln net.Listener, handle func(net.Conn)) (stop func()) {
	var wg gosync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				handle(conn)
			})
		}
	})
	stop = func() {
		ln.Close()
		wg.Wait()
	}
	t.Cleanup(stop)
	return stop
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// sshServer runs git-upload-pack for the repository a client asks for,
// like a git host's SSH endpoint, with a generated host key.
type sshServer struct {
	addr           string
	base           string
	hostKey        ssh.Signer
	knownHostsFile string // trusts hostKey for addr
	clientKeyFile  string // the only key the server accepts
	env            []string
	execs          atomic.Int64 // git-upload-pack runs: one a session
	Close          func()
}

func startSSH(t testing.TB, base string) *sshServer {
	t.Helper()
	dir := t.TempDir()
	hostKey, _ := ssh.NewSignerFromKey(newKey(t))
	client := newKey(t)
	s := &sshServer{base: base, hostKey: hostKey, clientKeyFile: writeKey(t, filepath.Join(dir, "id_ed25519"), client, ""),
		knownHostsFile: filepath.Join(dir, "known_hosts"), env: gittest.Env(filepath.Join(base, ".home"))}
	allowed, _ := ssh.NewPublicKey(client.Public())
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(key.Marshal(), allowed.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("key not authorized")
		},
	}
	cfg.AddHostKey(hostKey)
	ln := listen(t)
	s.addr = ln.Addr().String()
	s.writeKnownHosts(t, s.knownHostsFile, hostKey.PublicKey())
	s.Close = acceptLoop(t, ln, func(conn net.Conn) { s.serve(conn, cfg) })
	return s
}

func newKey(t testing.TB) ed25519.PrivateKey {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// writeKey writes key to path as an OpenSSH private key, encrypted when
// passphrase is set, and returns path.
func writeKey(t testing.TB, path string, key ed25519.PrivateKey, passphrase string) string {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(key, "")
	if passphrase != "" {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(key, "", []byte(passphrase))
	}
	if err == nil {
		err = os.WriteFile(path, pem.EncodeToMemory(block), 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// writeKnownHosts writes a known_hosts file trusting key for the server.
func (s *sshServer) writeKnownHosts(t testing.TB, file string, key ssh.PublicKey) {
	t.Helper()
	line := knownhosts.Line([]string{knownhosts.Normalize(s.addr)}, key)
	if err := os.WriteFile(file, []byte(line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (s *sshServer) url(name string) string { return "git::ssh://git@" + s.addr + "/" + name }

func (s *sshServer) options() git.Options {
	return git.Options{SSHKeyFile: s.clientKeyFile, KnownHostsFile: s.knownHostsFile}
}

func (s *sshServer) serve(conn net.Conn, cfg *ssh.ServerConfig) {
	_, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, requests, err := nc.Accept()
		if err != nil {
			return
		}
		s.session(ch, requests)
	}
}

// session answers "exec git-upload-pack '<path>'" and nothing else.
func (s *sshServer) session(ch ssh.Channel, requests <-chan *ssh.Request) {
	defer ch.Close()
	for req := range requests {
		if req.Type != "exec" {
			if req.WantReply {
				req.Reply(req.Type == "env", nil)
			}
			continue
		}
		var payload struct{ Command string }
		ssh.Unmarshal(req.Payload, &payload)
		repoPath, ok := strings.CutPrefix(payload.Command, "git-upload-pack ")
		req.Reply(ok, nil)
		if !ok {
			return
		}
		s.execs.Add(1)
		cmd := exec.Command("git-upload-pack", filepath.Join(s.base, filepath.Clean("/"+strings.Trim(repoPath, "'"))))
		cmd.Env = s.env
		cmd.Stdout = ch
		cmd.Stderr = ch.Stderr()
		stdin, _ := cmd.StdinPipe()
		// Not waited for: the client may never close its side before the
		// process exits, and Close of the channel ends the copy.
		go func() { io.Copy(stdin, ch); stdin.Close() }()
		status := uint32(0)
		if err := cmd.Run(); err != nil {
			status = 1
		}
		ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
		return
	}
}

// startGitDaemon serves git:// with git daemon in inetd mode: one process
// per connection, on a socket the test accepts, so no port is ever raced
// for. It returns the URL of repository name.
func startGitDaemon(t testing.TB, base, name string) string {
	t.Helper()
	ln := listen(t)
	env := gittest.Env(filepath.Join(base, ".home"))
	acceptLoop(t, ln, func(conn net.Conn) {
		f, err := conn.(*net.TCPConn).File() // the socket itself as stdin and stdout
		if err != nil {
			return
		}
		defer f.Close()
		cmd := exec.Command("git", "daemon", "--inetd", "--export-all", "--base-path="+base)
		cmd.Env = env
		cmd.Stdin, cmd.Stdout = f, f
		cmd.Run()
	})
	return "git::git://" + ln.Addr().String() + "/" + name
}
