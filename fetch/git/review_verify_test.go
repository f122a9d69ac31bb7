package git_test

import (
	"errors"
	"net/url"
	"testing"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/git"
)

// TestVerifyTagRefusesATagObjectOfAnotherName: with ?verify=tag, ferry
// checks the signature of the tag object the ref names, never that the
// object is the tag the ref names: object.Tag's Name ("tag v1.0.0" in the
// signed bytes) is not compared with the ref. Anyone who may push a ref,
// but holds no signing key, can point a new tag at the signed tag object
// of an older release: ?ref=semver:>=1 picks the highest tag, v9.0.0,
// and publishes v1.0.0's commit, a rollback past the signed v2.0.0 that
// the signature check was meant to guarantee (git itself warns: "tag
// 'v1.0.0' is really 'v9.0.0' here"). The same holds for ?ref=v2.0.0
// once refs/tags/v2.0.0 is moved to v1.0.0's tag object.
func TestVerifyTagRefusesATagObjectOfAnotherName(t *testing.T) {
	t.Parallel()
	g := gpgSigner(t)
	r, srv := serveRepo(t)
	keys := git.Options{VerifyKeysFile: keysFile(t, t.TempDir(), g.keyLine)}
	signed := append(append([]string{}, r.env...), g.env...)
	sign := func(tag string) {
		env := r.env
		r.env = signed
		defer func() { r.env = env }()
		r.git(append(append([]string{}, g.config...), "tag", "-s", "-m", "release "+tag, tag)...)
	}
	c1 := r.commitAs(signer{}, map[string]string{"app.yaml": "v1 (vulnerable)"})
	sign("v1.0.0")
	c2 := r.commitAs(signer{}, map[string]string{"app.yaml": "v2 (fixed)"})
	sign("v2.0.0")

	fetchRef := func(query string) (string, error) {
		src, _ := newSource(t, "git::"+srv.URL+"/r.git?"+query, keys, t.TempDir())
		rev, _, err := fetchMem(t, src, "")
		return rev, err
	}
	semver := "ref=" + url.QueryEscape("semver:>=1") + "&verify=tag"
	if rev, err := fetchRef(semver); err != nil || rev != c2 {
		t.Fatalf("before: %s, %v; want %s", rev, err, c2)
	}

	// No key needed: a ref to the old signed tag object.
	r.git("update-ref", "refs/tags/v9.0.0", r.git("rev-parse", "refs/tags/v1.0.0"))
	if rev, err := fetchRef(semver); err == nil || rev == c1 {
		t.Errorf("semver: published %s (v1.0.0's commit) under refs/tags/v9.0.0, err %v; want a refusal: the signed tag is v1.0.0", rev, err)
	} else if !errors.Is(err, fetch.ErrUntrusted) {
		t.Errorf("refused with %v, want fetch.ErrUntrusted", err)
	}
	r.git("update-ref", "-d", "refs/tags/v9.0.0")

	r.git("update-ref", "refs/tags/v2.0.0", r.git("rev-parse", "refs/tags/v1.0.0"))
	if rev, err := fetchRef("ref=v2.0.0&verify=tag"); err == nil || rev == c1 {
		t.Errorf("ref=v2.0.0: published %s (v1.0.0's commit), err %v; want a refusal: the signed tag is v1.0.0", rev, err)
	}
}
