package git_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing/format/pktline"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/fetchtest"
	"github.com/ferrysync/ferry/fetch/git"
	"github.com/ferrysync/ferry/internal/sourcetest"
	ferrysync "github.com/ferrysync/ferry/sync"
)

// TestIdlePollIsOneSmallRequestHoweverManyRefs: against a server that
// speaks protocol v2, a poll that finds nothing new is one POST of
// ls-refs answered in a few hundred bytes, for a repository with 10,000
// tags. A server that speaks v0 only still works, with one request a
// poll: the advertisement of every ref, as before.
func TestIdlePollIsOneSmallRequestHoweverManyRefs(t *testing.T) {
	t.Parallel()
	const (
		tags  = 10_000
		polls = 3
	)
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	r.set(map[string]string{"a": "1"})
	r.addTags(tags)
	for _, c := range []struct {
		name string
		srv  *httpServer
		want serverCounts // per poll, but bytes
	}{
		{"protocol v2", startHTTP(t, base), serverCounts{requests: 1, lsRefs: 1}},
		{"protocol v0 only", startHTTPv0(t, base), serverCounts{requests: 1, infoRefs: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			store, state := newStore(t, fetch.Limits{})
			src, _ := newSource(t, c.srv.url("r.git")+"?ref=main", git.Options{}, state)
			sourcetest.MustSync(t, store, "c", src)
			for range polls {
				before := c.srv.counts()
				sourcetest.MustSync(t, store, "c", src)
				got := c.srv.counts().minus(before)
				bytes := got.bytes
				got.bytes = 0
				if got != c.want {
					t.Fatalf("an idle poll made %+v, want %+v", got, c.want)
				}
				// v0 sends every tag (~60 bytes each); v2 the branch alone.
				if v2 := c.want.lsRefs == 1; v2 && bytes > 512 || !v2 && bytes < tags*50 {
					t.Fatalf("an idle poll received %d bytes", bytes)
				}
				t.Logf("%d bytes for an idle poll", bytes)
			}
		})
	}
}

// TestChangeCostsOneListingAndOneFetch: a new commit is listed once and
// fetched by the hash listed, over every transport: go-git's own fetch
// would list the refs a second time.
func TestChangeCostsOneListingAndOneFetch(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	r.set(map[string]string{"a": "1"})
	v2, v0 := startHTTP(t, base), startHTTPv0(t, base)
	ssh := startSSH(t, base)
	type syncer struct {
		store *ferrysync.Store
		src   *git.Source
	}
	syncers := map[string]syncer{}
	for name, c := range map[string]struct {
		url  string
		opts git.Options
	}{
		"protocol v2": {v2.url("r.git"), git.Options{}},
		"v0 only":     {v0.url("r.git"), git.Options{}},
		"SSH":         {ssh.url("r.git"), ssh.options()},
	} {
		store, state := newStore(t, fetch.Limits{})
		src, _ := newSource(t, c.url, c.opts, state)
		sourcetest.MustSync(t, store, "c", src)
		syncers[name] = syncer{store, src}
	}

	for i := range 2 {
		files := map[string]string{"a": fmt.Sprint(i + 2)}
		r.set(files)
		before := map[string]serverCounts{"protocol v2": v2.counts(), "v0 only": v0.counts()}
		sessions := ssh.execs.Load()
		for name, s := range syncers {
			sourcetest.MustSync(t, s.store, "c", s.src)
			assertPublished(t, s.store, files)
			if name == "SSH" {
				if n := ssh.execs.Load() - sessions; n != 1 {
					t.Errorf("SSH: %d sessions for one change, want 1", n)
				}
				continue
			}
			srv := map[string]*httpServer{"protocol v2": v2, "v0 only": v0}[name]
			got := srv.counts().minus(before[name])
			got.bytes = 0
			want := serverCounts{requests: 2, lsRefs: 1, fetches: 1}
			if name == "v0 only" {
				want = serverCounts{requests: 2, infoRefs: 1, fetches: 1}
			}
			if got != want {
				t.Errorf("%s: a change made %+v, want %+v", name, got, want)
			}
		}
	}
}

// TestRedirectingServerIsListedByGoGit: ferry's own protocol v2 requests
// do not follow redirects; go-git does, with its rules for credentials.
// A redirected repository syncs, and is handed to go-git once for all.
func TestRedirectingServerIsListedByGoGit(t *testing.T) {
	t.Parallel()
	r, srv := serveRepo(t)
	r.set(map[string]string{"a": "1"})
	var redirects atomic.Int64
	moved := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		redirects.Add(1)
		http.Redirect(w, req, srv.URL+"/r.git/info/refs?"+req.URL.RawQuery, http.StatusMovedPermanently)
	}))
	t.Cleanup(moved.Close)
	store, state := newStore(t, fetch.Limits{})
	src, logs := newSource(t, "git::"+moved.URL+"/old.git", git.Options{}, state)
	for i := range 3 {
		r.set(map[string]string{"a": fmt.Sprint(i)})
		sourcetest.MustSync(t, store, "c", src)
		assertPublished(t, store, map[string]string{"a": fmt.Sprint(i)})
	}
	// The first sync's request for protocol v2, then go-git's listings.
	if n := redirects.Load(); n != 4 {
		t.Errorf("%d redirects for 3 syncs, want 4", n)
	}
	if n := strings.Count(logs.String(), "redirects"); n != 1 {
		t.Errorf("%d log lines about the redirect, want 1; logs:\n%s", n, logs)
	}
}

// TestEmptyRepositoryIsATransientError: ls-refs cannot tell an empty
// repository from a missing ref; the error says what go-git says, and a
// push is picked up by the next sync.
func TestEmptyRepositoryIsATransientError(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	for name, srv := range map[string]*httpServer{"protocol v2": startHTTP(t, base), "v0 only": startHTTPv0(t, base)} {
		src, _ := newSource(t, srv.url("r.git"), git.Options{}, t.TempDir())
		_, _, err := fetchMem(t, src, "")
		if err == nil || fetch.IsPermanent(err) || !strings.Contains(err.Error(), "repository is empty") {
			t.Fatalf("%s: err = %v, want a transient 'repository is empty'", name, err)
		}
		assertOneLine(t, err)
	}
	r.set(map[string]string{"a": "1"})
	src, _ := newSource(t, startHTTP(t, base).url("r.git"), git.Options{}, t.TempDir())
	if _, w := mustFetch(t, src); len(w.Tree()) != 1 {
		t.Fatalf("tree %v after the first push", w.Tree())
	}
}

// TestHostileV2AnswersAreBoundedOneLineErrors: what a protocol v2 server
// answers to ls-refs is read within the byte bounds and, when it is not
// what the protocol says, refused in one line.
func TestHostileV2AnswersAreBoundedOneLineErrors(t *testing.T) {
	t.Parallel()
	hash := strings.Repeat("ab", 20)
	for _, c := range []struct {
		name      string
		lsRefs    func(e *pktline.Encoder) // the answer to POST ls-refs
		want      string
		permanent bool
	}{
		{"malformed line", func(e *pktline.Encoder) { e.EncodeString("not a ref\n"); e.Flush() }, `ls-refs: unexpected line "not a ref"`, false},
		{"no flush", func(e *pktline.Encoder) { e.EncodeString(hash + " refs/heads/main\n") }, "ls-refs: unexpected EOF", false},
		{"error line", func(e *pktline.Encoder) { e.EncodeString("ERR upload-pack: no\nway\n") }, "upload-pack: no", false},
		{"endless", func(e *pktline.Encoder) {
			for i := 0; e.EncodeString(fmt.Sprintf("%s refs/tags/t%d\n", hash, i)) == nil; i++ {
			}
		}, "max-bytes limit", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				e := pktline.NewEncoder(w)
				if r.Method == http.MethodGet {
					e.EncodeString("version 2\n", "ls-refs=unborn\n", "fetch=shallow\n")
					e.Flush()
					return
				}
				c.lsRefs(e)
			}))
			defer srv.Close()
			limits := fetch.Limits{MaxBytes: 1 << 20}
			src, _ := newSourceEnv(t, "git::"+srv.URL+"/r.git?ref=main", git.Options{}, fetch.Env{StateDir: t.TempDir(), Limits: limits})
			_, _, err := fetchMem(t, src, "")
			if err == nil || fetch.IsPermanent(err) != c.permanent || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v (permanent %t), want %q (permanent %t)", err, fetch.IsPermanent(err), c.want, c.permanent)
			}
			t.Log(err)
			assertOneLine(t, err)
		})
	}
}

// TestEndlessGitProtocolAdvertisementIsBounded: a git:// server (or
// anyone on the path: git:// is plaintext) that answers with an endless
// ref advertisement is stopped at the session's byte bound with the
// max-bytes limit, as over HTTP (TestHostileV2AnswersAreBoundedOneLineErrors,
// "endless") and SSH. go-git's own git:// transport dialed with net.Dial,
// which the meter never saw: it read until the sync's timeout (2 minutes
// by default) and kept every ref in memory.
func TestEndlessGitProtocolAdvertisementIsBounded(t *testing.T) {
	t.Parallel()
	ln := listen(t)
	var sent atomic.Int64
	hash := strings.Repeat("ab", 20)
	acceptLoop(t, ln, func(conn net.Conn) {
		go func() { // the request line, then nothing
			buf := make([]byte, 4096)
			for {
				if _, err := conn.Read(buf); err != nil {
					return
				}
			}
		}()
		w := bufio.NewWriterSize(conn, 64<<10)
		e := pktline.NewEncoder(w)
		if e.EncodeString(hash+" HEAD\x00multi_ack side-band-64k ofs-delta shallow\n") != nil {
			return
		}
		// Endless but for the test's sake: 64 MiB (the bound is 17 MiB),
		// then it hangs up, so that a client without a bound fails
		// otherwise rather than fill the test's memory.
		for i := 0; sent.Load() < 64<<20; i++ {
			line := fmt.Sprintf("%s refs/tags/t%09d\n", hash, i)
			if e.EncodeString(line) != nil {
				return
			}
			sent.Add(int64(len(line) + 4))
		}
		w.Flush()
	})
	limits := fetch.Limits{MaxBytes: 1 << 20}
	src, _ := newSourceEnv(t, "git::git://"+ln.Addr().String()+"/r.git", git.Options{}, fetch.Env{StateDir: t.TempDir(), Limits: limits})
	// Under the race detector, with other tests, decoding 17 MiB of
	// advertisement takes several seconds.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := src.Fetch(ctx, "", fetchtest.NewWriter(limits))
	t.Logf("the server sent %d MiB; err = %v", sent.Load()>>20, err)
	// 1 MiB of max-bytes allows 17 MiB a session (the 16 MiB margin); the
	// socket buffers hold a few MiB more at most.
	if n := sent.Load(); n > 34<<20 {
		t.Errorf("read %d MiB of ref advertisement with --max-bytes 1 MiB", n>>20)
	}
	if err == nil || !strings.Contains(err.Error(), "max-bytes limit") {
		t.Errorf("err = %v, want the max-bytes limit", err)
	}
}
