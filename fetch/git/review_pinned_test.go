package git_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferrysync/ferry/fetch/git"
	"github.com/ferrysync/ferry/internal/sourcetest"
)

// TestPinnedCommitIsTheCommitPublished: a source pinned to a commit SHA
// must publish that commit or fail. fetchSHA lists the refs, finds the
// branch that points at the SHA and then fetches that branch *by name*
// with go-git, which lists the refs again and stores whatever the branch
// names in that second listing as refs/ferry/fetched; commit() then peels
// refs/ferry/fetched, never checking it is the pinned SHA. A push between
// the two listings, or a server that answers them differently, makes a
// ?ref=SHA source publish another commit (and follow the branch from then
// on). A submodule is fetched the same way, pinned by its gitlink, and its
// signature is deliberately not checked ("the verified parent pins the
// commit"), so this also lets unsigned content into a signed revision.
func TestPinnedCommitIsTheCommitPublished(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	r := newRepo(t, base, "r.git")
	pinned := r.set(map[string]string{"v": "pinned"})
	moved := r.set(map[string]string{"v": "attacker"})
	r.git("update-ref", "refs/heads/main", pinned)

	var listings atomic.Int32
	srv := serveHTTP(t, base, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			next.ServeHTTP(w, req)
			if strings.HasSuffix(req.URL.Path, "/info/refs") && listings.Add(1) == 1 {
				// The branch moves right after the first listing.
				r.git("update-ref", "refs/heads/main", moved)
			}
		})
	})
	src, _ := newSource(t, srv.url("r.git")+"?ref="+pinned, git.Options{}, t.TempDir())
	rev, w := mustFetch(t, src)
	if rev != pinned {
		t.Errorf("?ref=%s published revision %s (the branch's new tip %s)", pinned, rev, moved)
	}
	sourcetest.AssertTree(t, w.Tree(), map[string]string{"v": "pinned"})
}
