package git_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/cgi"
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
)

// gitEnv is the environment of every git process the tests start: no
// system or user configuration, a fixed identity, never a prompt.
func gitEnv(home string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=ferry test", "GIT_AUTHOR_EMAIL=test@ferry.invalid",
		"GIT_COMMITTER_NAME=ferry test", "GIT_COMMITTER_EMAIL=test@ferry.invalid",
		"LC_ALL=C",
	}
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
	home := filepath.Join(base, ".home")
	os.MkdirAll(home, 0o755)
	r := &repo{t: t, dir: filepath.Join(base, name), name: name, env: gitEnv(home)}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r.git("init", "-q", "-b", "main")
	r.git("config", "user.name", "ferry test")
	r.git("config", "user.email", "test@ferry.invalid")
	return r
}

// git runs a git command in the repository and returns its trimmed output.
func (r *repo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = r.env
	out, err := cmd.CombinedOutput()
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
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		r.t.Fatal(err)
	}
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

// httpServer is git's smart HTTP protocol, served by git http-backend
// behind net/http/cgi, counting what it is asked.
type httpServer struct {
	*httptest.Server
	base       string
	user, pass string
	infoRefs   atomic.Int64 // GET info/refs: ls-remote and the start of a fetch
	uploadPOST atomic.Int64 // POST git-upload-pack: a fetch that downloads
	packBytes  atomic.Int64 // response bytes of those POSTs
}

func startHTTP(t testing.TB, base string) *httpServer {
	return startHTTPAuth(t, base, "", "")
}

// startHTTPAuth serves base with basic auth when user is set.
func startHTTPAuth(t testing.TB, base, user, pass string) *httpServer {
	t.Helper()
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("git binary needed by the test server: %v", err)
	}
	home := filepath.Join(base, ".home")
	os.MkdirAll(home, 0o755)
	s := &httpServer{base: base, user: user, pass: pass}
	backend := &cgi.Handler{
		Path: gitPath,
		Args: []string{"http-backend"},
		Dir:  base,
		Env: []string{
			"GIT_PROJECT_ROOT=" + base,
			"GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1",
			"HOME=" + home,
		},
		InheritEnv: []string{"PATH"},
		Stderr:     io.Discard, // "not a git repository" is what some tests ask for
		// "copy error: broken pipe": a client stopped reading, as the tests
		// of the limits make it.
		Logger: log.New(io.Discard, "", 0),
	}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != s.user || p != s.pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		if strings.HasSuffix(r.URL.Path, "/info/refs") {
			s.infoRefs.Add(1)
		}
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-upload-pack") {
			s.uploadPOST.Add(1)
			w = &countingWriter{ResponseWriter: w, n: &s.packBytes}
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// url is the forced git URL of repository name.
func (s *httpServer) url(name string) string { return "git::" + s.URL + "/" + name }

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
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
	ln             net.Listener
	wg             gosync.WaitGroup
}

func startSSH(t testing.TB, base string) *sshServer {
	t.Helper()
	dir := t.TempDir()
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	clientPub, clientPriv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	s := &sshServer{base: base, hostKey: hostSigner, clientKeyFile: filepath.Join(dir, "id_ed25519"),
		env: gitEnv(filepath.Join(base, ".home"))}
	if err := os.WriteFile(s.clientKeyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	allowed, _ := ssh.NewPublicKey(clientPub)
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(key.Marshal(), allowed.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("key not authorized")
		},
	}
	cfg.AddHostKey(hostSigner)
	s.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = s.ln.Addr().String()
	s.knownHostsFile = filepath.Join(dir, "known_hosts")
	s.writeKnownHosts(t, s.knownHostsFile, hostSigner.PublicKey())
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			conn, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(conn, cfg)
			}()
		}
	}()
	t.Cleanup(s.Close)
	return s
}

// writeKnownHosts writes a known_hosts file trusting key for the server.
func (s *sshServer) writeKnownHosts(t testing.TB, file string, key ssh.PublicKey) {
	t.Helper()
	line := knownhosts.Line([]string{knownhosts.Normalize(s.addr)}, key)
	if err := os.WriteFile(file, []byte(line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (s *sshServer) Close() {
	s.ln.Close()
	s.wg.Wait()
}

func (s *sshServer) url(name string) string { return "git::ssh://git@" + s.addr + "/" + name }

func (s *sshServer) serve(conn net.Conn, cfg *ssh.ServerConfig) {
	defer conn.Close()
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
		if err := ssh.Unmarshal(req.Payload, &payload); err != nil {
			req.Reply(false, nil)
			return
		}
		repoPath, ok := strings.CutPrefix(payload.Command, "git-upload-pack ")
		if !ok {
			req.Reply(false, nil)
			return
		}
		repoPath = strings.Trim(repoPath, "'")
		req.Reply(true, nil)
		cmd := exec.Command("git-upload-pack", filepath.Join(s.base, filepath.Clean("/"+repoPath)))
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

// logBuffer collects a source's log lines for assertions.
type logBuffer struct {
	mu gosync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLogger() (*slog.Logger, *logBuffer) {
	buf := &logBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// gitDaemon serves git:// with git daemon in inetd mode: one process per
// connection, on a socket the test accepts, so no port is ever raced for.
type gitDaemon struct {
	ln   net.Listener
	base string
	env  []string
	wg   gosync.WaitGroup
}

func startGitDaemon(t testing.TB, base string) *gitDaemon {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &gitDaemon{ln: ln, base: base, env: gitEnv(filepath.Join(base, ".home"))}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				d.serve(conn)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		d.wg.Wait()
	})
	return d
}

func (d *gitDaemon) serve(conn net.Conn) {
	defer conn.Close()
	f, err := conn.(*net.TCPConn).File() // the socket itself as stdin and stdout
	if err != nil {
		return
	}
	defer f.Close()
	cmd := exec.Command("git", "daemon", "--inetd", "--export-all", "--base-path="+d.base)
	cmd.Env = d.env
	cmd.Stdin, cmd.Stdout = f, f
	cmd.Run()
}

func (d *gitDaemon) url(name string) string { return "git::git://" + d.ln.Addr().String() + "/" + name }
