package git_test

import (
	"fmt"
	"testing"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/git"
	"github.com/ferrysync/ferry/internal/sourcetest"
	ferrysync "github.com/ferrysync/ferry/sync"
)

// TestChangeCostsOneListingAndOneFetch: a new commit is listed once and
// fetched by the hash listed, over every transport: go-git's own fetch
// would list the refs a second time.
func TestChangeCostsOneListingAndOneFetch(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	r.set(map[string]string{"a": "1"})
	servers := map[string]*httpServer{"smart HTTP": startHTTP(t, base)}
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
		"smart HTTP": {servers["smart HTTP"].url("r.git"), git.Options{}},
		"SSH":        {ssh.url("r.git"), ssh.options()},
	} {
		store, state := newStore(t, fetch.Limits{})
		src, _ := newSource(t, c.url, c.opts, state)
		sourcetest.MustSync(t, store, "c", src)
		syncers[name] = syncer{store, src}
	}

	for i := range 2 {
		files := map[string]string{"a": fmt.Sprint(i + 2)}
		r.set(files)
		before := map[string]serverCounts{}
		for name, srv := range servers {
			before[name] = srv.counts()
		}
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
			got := servers[name].counts().minus(before[name])
			got.bytes = 0
			if want := (serverCounts{requests: 2, infoRefs: 1, fetches: 1}); got != want {
				t.Errorf("%s: a change made %+v, want %+v", name, got, want)
			}
		}
	}
}
