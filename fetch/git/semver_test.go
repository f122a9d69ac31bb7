package git_test

import (
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/git"
)

// TestRefSemverFollowsTheHighestTagInRange: ?ref=semver:RANGE publishes
// the highest tag in the range, over protocol v2 (every tag listed by one
// ref-prefix) and v0; prereleases and tags out of range are passed over;
// a tag pushed later in the range is followed; OriginRevision names it.
func TestRefSemverFollowsTheHighestTagInRange(t *testing.T) {
	for _, proto := range []string{"v2", "v0", "file"} {
		t.Run(proto, func(t *testing.T) {
			r, srv := serveRepo(t)
			if proto == "v0" {
				srv = startHTTPv0(t, filepath.Dir(r.dir))
			}
			repoURL := srv.url(r.name)
			if proto == "file" {
				repoURL = "git::file://" + r.dir
			}
			commits := map[string]string{}
			for _, tag := range []string{"v1.2.0", "v1.4.1", "v1.5.0-rc.1", "v2.0.0", "not-a-version"} {
				commits[tag] = r.set(map[string]string{"version": tag})
				r.git("tag", "-a", "-m", tag, tag)
			}
			src, _ := newSource(t, repoURL+"?ref="+url.QueryEscape("semver:>=1.2 <2"), git.Options{}, t.TempDir())
			rev, w := mustFetch(t, src)
			if got := w.Tree()["version"]; got != "v1.4.1" || rev != commits["v1.4.1"] {
				t.Fatalf("published %q at %s, want v1.4.1 at %s", got, rev, commits["v1.4.1"])
			}
			if o := src.OriginRevision(); o != "v1.4.1@"+commits["v1.4.1"] {
				t.Fatalf("OriginRevision = %q", o)
			}
			commits["v1.9.0"] = r.set(map[string]string{"version": "v1.9.0"})
			r.git("tag", "v1.9.0") // a lightweight tag counts too
			rev, w, err := fetchMem(t, src, rev)
			if err != nil || w.Tree()["version"] != "v1.9.0" || rev != commits["v1.9.0"] {
				t.Fatalf("after v1.9.0 was pushed: %q at %s, %v", w.Tree()["version"], rev, err)
			}

			none, _ := newSource(t, repoURL+"?ref="+url.QueryEscape("semver:>=3"), git.Options{}, t.TempDir())
			_, _, err = fetchMem(t, none, "")
			if err == nil || !strings.Contains(err.Error(), "no tag of 6 matches semver:>=3") || fetch.IsPermanent(err) {
				t.Fatalf("no tag in range: %v, want a retryable error counting the tags", err)
			}
		})
	}
}

func TestRefSemverRangeIsCheckedAtStart(t *testing.T) {
	u, err := fetch.Parse("git::https://example.com/r.git?ref=" + url.QueryEscape("semver:>=1.2 <<2"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = git.New(u, git.Options{}, fetch.Env{StateDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "not a version range") {
		t.Fatalf("New with a bad range: %v", err)
	}
}
