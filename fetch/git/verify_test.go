package git_test

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/git"
	"github.com/ferrysync/ferry/internal/signtest"
	"github.com/ferrysync/ferry/internal/sourcetest"
	"github.com/ferrysync/ferry/internal/testkit"
	ferrysync "github.com/ferrysync/ferry/sync"
)

// signer is a key that git signs with, whichever the tool.
type signer struct {
	env     []string // what git needs in its environment
	config  []string // git -c options that sign
	keyLine string   // the key as the keys file holds it
	id      string   // what an error names the key by
}

func gpgSigner(t testing.TB) signer {
	g := signtest.NewGPG(t)
	return signer{env: g.Env(), config: g.GitConfig(), keyLine: g.Public, id: "openpgp:" + g.Fingerprint}
}

func sshSigner(t testing.TB) signer {
	k := signtest.NewSSH(t)
	return signer{config: k.GitConfig(), keyLine: k.AllowedSigners(), id: "ssh:SHA256:"}
}

// commitAs replaces the work tree with files and commits it signed by s
// (unsigned with a zero signer); it returns the commit.
func (r *repo) commitAs(s signer, files map[string]string) string {
	r.t.Helper()
	r.clear()
	for p, c := range files {
		r.write(p, c, 0o644)
	}
	r.git("add", "-A")
	env := r.env
	r.env = append(append([]string{}, env...), s.env...)
	defer func() { r.env = env }()
	r.git(append(append([]string{}, s.config...), "commit", "-q", "--allow-empty", "-m", "set")...)
	return r.git("rev-parse", "HEAD")
}

// tamper rewrites the message of commit c, keeping its signature, as one
// who edits a signed commit would, and points main at the result.
func (r *repo) tamper(c string) string {
	r.t.Helper()
	raw := r.git("cat-file", "commit", c)
	forged := filepath.Join(r.t.TempDir(), "commit")
	if err := os.WriteFile(forged, []byte(strings.TrimSuffix(raw, "set")+"forged\n"), 0o644); err != nil {
		r.t.Fatal(err)
	}
	f, err := os.Open(forged)
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	out, err := runGit(r.env, r.dir, f, "hash-object", "-t", "commit", "-w", "--stdin")
	if err != nil {
		r.t.Fatalf("git hash-object: %v: %s", err, out)
	}
	h := strings.TrimSpace(string(out))
	r.git("update-ref", "refs/heads/main", h)
	r.git("reset", "-q", "--hard", h)
	return h
}

func keysFile(t testing.TB, dir string, lines ...string) string {
	t.Helper()
	p := filepath.Join(dir, "trusted-keys")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// wantUntrusted fails the test unless err refuses a revision for its
// signature, permanently, naming what.
func wantUntrusted(t *testing.T, err error, what ...string) {
	t.Helper()
	if err == nil || !errors.Is(err, fetch.ErrUntrusted) || !fetch.IsPermanent(err) {
		t.Fatalf("err = %v, want a permanent fetch.ErrUntrusted", err)
	}
	t.Log(err)
	assertOneLine(t, err)
	for _, w := range what {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
}

// TestOnlySignedCommitsArePublished: a commit signed by a key of the keys
// file is published, over smart HTTP with gpg and read in place with SSH
// keys; an unsigned one, one signed by another key and one changed after
// it was signed are refused, naming the commit (and the key), and leave
// the published revision in place; the next good one is published.
func TestOnlySignedCommitsArePublished(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		newSigner func(testing.TB) signer
		file      bool
	}{
		{"openpgp over http", gpgSigner, false},
		{"ssh from file://", sshSigner, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			good, stranger := c.newSigner(t), c.newSigner(t)
			r, srv := serveRepo(t)
			url := "git::" + srv.URL + "/r.git?ref=main"
			if c.file {
				url = "git::file://" + r.dir + "?ref=main&verify=head"
			}
			store, state := newStore(t, fetch.Limits{})
			opts := git.Options{VerifyKeysFile: keysFile(t, t.TempDir(), "# who may change config", good.keyLine)}
			src, logs := newSource(t, url, opts, state)

			c1 := r.commitAs(good, map[string]string{"app.yaml": "v1"})
			if rev := sourcetest.MustSync(t, store, "c", src).Rev; rev != c1 {
				t.Fatalf("revision %s, want %s", rev, c1)
			}
			sourcetest.MustSync(t, store, "c", src) // unchanged: not verified again
			if n := strings.Count(logs.String(), "git signature verified"); n != 1 {
				t.Errorf("%d verifications logged for one commit, want 1:\n%s", n, logs)
			}

			unsigned := r.commitAs(signer{}, map[string]string{"app.yaml": "unsigned"})
			res := sourcetest.Sync(t, store, "c", src)
			wantUntrusted(t, res.Err, unsigned, "not signed")
			if errors.Is(res.Err, fetch.ErrPublishedUntrusted) {
				t.Errorf("a refused new commit is reported as the published one: %v", res.Err)
			}
			foreign := r.commitAs(stranger, map[string]string{"app.yaml": "foreign"})
			wantUntrusted(t, sourcetest.Sync(t, store, "c", src).Err, foreign, stranger.id, "not in the keys file")
			forged := r.tamper(r.commitAs(good, map[string]string{"app.yaml": "signed"}))
			wantUntrusted(t, sourcetest.Sync(t, store, "c", src).Err, forged, good.id, "does not verify")
			assertPublished(t, store, map[string]string{"app.yaml": "v1"})

			c2 := r.commitAs(good, map[string]string{"app.yaml": "v2"})
			if rev := sourcetest.MustSync(t, store, "c", src).Rev; rev != c2 {
				t.Fatalf("revision %s, want %s", rev, c2)
			}
			assertPublished(t, store, map[string]string{"app.yaml": "v2"})
		})
	}
}

// TestVerifyTagChecksTheAnnotatedTag: ?verify=tag publishes an unsigned
// commit under a tag signed by git tag -s, and refuses a lightweight tag
// and an unsigned annotated one; tag-and-head wants the commit signed too.
func TestVerifyTagChecksTheAnnotatedTag(t *testing.T) {
	t.Parallel()
	g := gpgSigner(t)
	r, srv := serveRepo(t)
	keys := git.Options{VerifyKeysFile: keysFile(t, t.TempDir(), g.keyLine)}
	c1 := r.commitAs(signer{}, map[string]string{"app.yaml": "v1"})
	r.env = append(r.env, g.env...)
	r.git(append(g.config, "tag", "-s", "-m", "release v1", "v1")...)
	r.git("tag", "v2")
	r.git("-c", "tag.gpgsign=false", "tag", "-a", "-m", "v3", "v3")

	fetchRef := func(query string) (string, error) {
		src, _ := newSource(t, "git::"+srv.URL+"/r.git?"+query, keys, t.TempDir())
		rev, _, err := fetchMem(t, src, "")
		return rev, err
	}
	if rev, err := fetchRef("ref=v1&verify=tag"); err != nil || rev != c1 {
		t.Fatalf("signed tag: %s, %v; want %s", rev, err, c1)
	}
	_, err := fetchRef("ref=v1&verify=tag-and-head")
	wantUntrusted(t, err, c1, "not signed")
	_, err = fetchRef("ref=v1") // verify=head, the default
	wantUntrusted(t, err, c1, "not signed")
	_, err = fetchRef("ref=v2&verify=tag")
	wantUntrusted(t, err, "lightweight tag")
	_, err = fetchRef("ref=v3&verify=tag")
	wantUntrusted(t, err, "tag v3", "not signed")
}

// signedTagRepo serves a repository whose tags sign signs with a gpg key
// that keys trusts.
func signedTagRepo(t *testing.T) (*repo, *httpServer, git.Options, func(tag string)) {
	t.Helper()
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
	return r, srv, keys, sign
}

// TestVerifyTagRefusesATagObjectOfAnotherName: ?verify=tag publishes a
// commit only under the tag that was signed for it. The signature covers
// the tag's name ("tag v1.0.0" in the signed bytes), not the ref: anyone
// who may push a ref, but holds no signing key, could point a new tag at
// an older release's signed tag object, and ?ref=semver:>=1 would pick
// it as the highest and publish v1.0.0's commit, a rollback past the
// signed v2.0.0 (git itself warns: "tag 'v1.0.0' is really 'v9.0.0'
// here"). The same for a moved refs/tags/v2.0.0, by either name.
func TestVerifyTagRefusesATagObjectOfAnotherName(t *testing.T) {
	t.Parallel()
	r, srv, keys, sign := signedTagRepo(t)
	r.commitAs(signer{}, map[string]string{"app.yaml": "v1 (vulnerable)"})
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
	_, err := fetchRef(semver)
	wantUntrusted(t, err, `"v9.0.0"`, `"v1.0.0"`)
	r.git("update-ref", "-d", "refs/tags/v9.0.0")

	r.git("update-ref", "refs/tags/v2.0.0", r.git("rev-parse", "refs/tags/v1.0.0"))
	for _, ref := range []string{"v2.0.0", "refs/tags/v2.0.0"} {
		_, err := fetchRef("ref=" + ref + "&verify=tag")
		wantUntrusted(t, err, `"v2.0.0"`, `"v1.0.0"`)
	}
}

// TestVerifyTagReusesTheObjectStoreWhenTheTagMoves: with ?verify=tag the
// store's last fetched object is the signed tag, not its commit; the store
// is still the one the next fetch builds on, so a moved tag costs what is
// new (not the 512 KiB blob again), with no warning about the store.
func TestVerifyTagReusesTheObjectStoreWhenTheTagMoves(t *testing.T) {
	t.Parallel()
	g := gpgSigner(t)
	r, srv := serveRepo(t)
	r.env = append(r.env, g.env...)
	release := func(files map[string]string) string {
		c := r.set(files)
		r.git(append(append([]string{}, g.config...), "tag", "-s", "-f", "-m", "release", "release")...)
		return c
	}
	big := randomText(t, 512<<10)
	release(map[string]string{"big.bin": big, "small": "1"})
	store, state := newStore(t, fetch.Limits{})
	keys := git.Options{VerifyKeysFile: keysFile(t, t.TempDir(), g.keyLine)}
	src, logs := newSource(t, srv.url("r.git")+"?ref=release&verify=tag", keys, state)
	sourcetest.MustSync(t, store, "c", src)
	fullClone := srv.packBytes.Load()

	c2 := release(map[string]string{"big.bin": big, "small": "2"})
	if rev := sourcetest.MustSync(t, store, "c", src).Rev; rev != c2 {
		t.Fatalf("revision %s, want %s", rev, c2)
	}
	assertPublished(t, store, map[string]string{"big.bin": big, "small": "2"})
	if n := srv.packBytes.Load() - fullClone; n > 16<<10 {
		t.Errorf("moved tag downloaded %d bytes; the store was not reused (full clone: %d)", n, fullClone)
	}
	if strings.Contains(logs.String(), "object store unusable") {
		t.Errorf("the store was discarded:\n%s", logs)
	}
}

// TestSubdirSourceVerifiesTheCommit: a //subdir revision is named after a
// tree, yet the commit it comes from must be signed.
func TestSubdirSourceVerifiesTheCommit(t *testing.T) {
	t.Parallel()
	g := gpgSigner(t)
	r, srv := serveRepo(t)
	store, state := newStore(t, fetch.Limits{})
	src, _ := newSource(t, "git::"+srv.URL+"/r.git//conf?ref=main", git.Options{VerifyKeysFile: keysFile(t, t.TempDir(), g.keyLine)}, state)
	r.commitAs(g, map[string]string{"conf/app.yaml": "v1", "README": "1"})
	sourcetest.MustSync(t, store, "c", src)
	outside := r.commitAs(signer{}, map[string]string{"conf/app.yaml": "v1", "README": "2"})
	wantUntrusted(t, sourcetest.Sync(t, store, "c", src).Err, outside)
	inside := r.commitAs(signer{}, map[string]string{"conf/app.yaml": "v2"})
	wantUntrusted(t, sourcetest.Sync(t, store, "c", src).Err, inside)
	assertPublished(t, store, map[string]string{"app.yaml": "v1"})
}

func TestVerifyOptionsAreCheckedBeforeAnyNetwork(t *testing.T) {
	t.Parallel()
	keys := keysFile(t, t.TempDir(), signtest.NewSSH(t).Public)
	for _, c := range []struct {
		url  string
		opts git.Options
		want string
	}{
		{"git::https://h/r.git?verify=head", git.Options{}, "give VerifyKeysFile"},
		{"git::https://h/r.git?verify=commit", git.Options{VerifyKeysFile: keys}, "want head, tag or tag-and-head"},
		{"git::https://h/r.git?verify=tag", git.Options{VerifyKeysFile: keys}, "give ?ref=TAG"},
		{"git::https://h/r.git?ref=" + strings.Repeat("a", 40) + "&verify=tag-and-head", git.Options{VerifyKeysFile: keys}, "give ?ref=TAG"},
		{"git::https://h/r.git?ref=refs/heads/main&verify=tag", git.Options{VerifyKeysFile: keys}, "give ?ref=TAG"},
		// No tag name to hold the signed tag to: an older release's would do.
		{"git::https://h/r.git?ref=refs/deploy/prod&verify=tag", git.Options{VerifyKeysFile: keys}, "this ref names none"},
		{"git::https://h/r.git?ref=refs/pull/1/head&verify=tag-and-head", git.Options{VerifyKeysFile: keys}, "this ref names none"},
		{"git::https://h/r.git", git.Options{VerifyKeysFile: filepath.Join(t.TempDir(), "nope")}, "VerifyKeysFile: open"},
	} {
		u, err := fetch.Parse(c.url)
		if err != nil {
			t.Fatal(err)
		}
		_, err = git.New(u, c.opts, fetch.Env{StateDir: t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.url, err, c.want)
		}
	}
}

// TestKeyRotationChecksThePublishedCommitAgain plays Flux #2165 against
// the sync loop: the keys file loses the key that signed the published
// commit while ferry runs. The commit stays published, and is reported at
// ERROR, in /status and in the metrics, without a new commit at the
// origin; a commit signed by the old key is refused, one signed by the
// new key is published and clears the report.
func TestKeyRotationChecksThePublishedCommitAgain(t *testing.T) {
	t.Parallel()
	oldKey, newKey := gpgSigner(t), sshSigner(t)
	r, srv := serveRepo(t)
	root := t.TempDir()
	store, err := ferrysync.OpenStore(root, fetch.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	keysDir := t.TempDir()
	keys := keysFile(t, keysDir, oldKey.keyLine)
	src, _ := newSource(t, "git::"+srv.URL+"/r.git?ref=main", git.Options{VerifyKeysFile: keys}, ferrysync.StateDir(root, "c"))
	logs := &testkit.LogBuffer{}
	reg := prometheus.NewRegistry()
	s, err := ferrysync.New(ferrysync.Config{
		Store: store, Sources: []ferrysync.Source{{Name: "c", URL: "git", Backend: src}},
		Period: time.Hour, Logger: logs.JSONLogger(), Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	c1 := r.commitAs(oldKey, map[string]string{"app.yaml": "v1"})
	stop := testkit.Background(t, s.Run)
	defer stop()
	status := func() ferrysync.SourceStatus { return s.Status()[0] }
	testkit.Eventually(t, 30*time.Second, "first publish", func() bool { return status().Revision == c1 })

	// syncUntil triggers syncs until cond holds of the status.
	syncUntil := func(what string, cond func(ferrysync.SourceStatus) bool) ferrysync.SourceStatus {
		t.Helper()
		testkit.Eventually(t, 30*time.Second, what, func() bool {
			s.Trigger("c")
			return cond(status())
		})
		return status()
	}
	untrustedGauge := func() float64 {
		return metricValue(t, reg, "ferry_published_untrusted")
	}

	keysFile(t, keysDir, newKey.keyLine) // the old key is rotated out
	st := syncUntil("a sync with the new keys", func(st ferrysync.SourceStatus) bool { return st.LastError != "" })
	if st.Revision != c1 || !st.PublishedUntrusted || !strings.Contains(st.LastError, c1) || !strings.Contains(st.LastError, "no longer verifies") {
		t.Fatalf("after the rotation: %+v; want %s kept, marked untrusted, with the reason", st, c1)
	}
	if got := untrustedGauge(); got != 1 {
		t.Errorf("ferry_published_untrusted = %v, want 1", got)
	}
	if !strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("no ERROR logged:\n%s", logs)
	}
	assertPublishedAt(t, store, map[string]string{"app.yaml": "v1"})

	c2 := r.commitAs(oldKey, map[string]string{"app.yaml": "v2"})
	st = syncUntil("the commit by the old key", func(st ferrysync.SourceStatus) bool { return strings.Contains(st.LastError, c2) })
	if st.Revision != c1 || !st.PublishedUntrusted {
		t.Fatalf("commit by the rotated-out key: %+v; want it refused and %s kept", st, c1)
	}
	c3 := r.commitAs(newKey, map[string]string{"app.yaml": "v3"})
	st = syncUntil("the newly signed commit", func(st ferrysync.SourceStatus) bool { return st.Revision == c3 })
	if st.PublishedUntrusted || st.LastError != "" || untrustedGauge() != 0 {
		t.Fatalf("after a signed commit: %+v, gauge %v; want the report cleared", st, untrustedGauge())
	}
	if n := metricValue(t, reg, "ferry_signature_failures_total"); n < 2 {
		t.Errorf("ferry_signature_failures_total = %v, want >= 2", n)
	}
	assertPublishedAt(t, store, map[string]string{"app.yaml": "v3"})
}

func assertPublishedAt(t testing.TB, store *ferrysync.Store, want map[string]string) {
	t.Helper()
	sourcetest.AssertTree(t, sourcetest.ReadTree(t, store.LinkPath("c")), want)
}

// metricValue is the value of source "c"'s series of a gauge or counter
// in reg, 0 when it has none.
func metricValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "source" && l.GetValue() == "c" {
					return m.GetGauge().GetValue() + m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestVerifyTagNameIsCheckedWhenTheTagObjectIsCached: verifyTag now
// refuses a tag object whose name is not the tag ?ref=semver: picked, but
// Fetch skips checkTrust altogether when the (commit, tag object) pair is
// the one verified last (isTrusted, verify.go). Someone who may push a
// ref, with no key, points refs/tags/v9.0.0 at the signed tag object of
// the published v1.0.0: the running ferry answers "unchanged" with no
// error, and the signed v2.0.0 pushed after it is never published (the
// highest tag stays v9.0.0), while a restarted ferry refuses the same
// origin as untrusted. The cache must carry the tag name checked.
func TestVerifyTagNameIsCheckedWhenTheTagObjectIsCached(t *testing.T) {
	t.Parallel()
	r, srv, keys, sign := signedTagRepo(t)
	c1 := r.commitAs(signer{}, map[string]string{"app.yaml": "v1 (vulnerable)"})
	sign("v1.0.0")

	semver := "ref=" + url.QueryEscape("semver:>=1") + "&verify=tag"
	src, _ := newSource(t, "git::"+srv.URL+"/r.git?"+semver, keys, t.TempDir())
	rev, _, err := fetchMem(t, src, "")
	if err != nil || rev != c1 {
		t.Fatalf("first fetch: %s, %v; want %s", rev, err, c1)
	}

	// No key needed: a higher tag ref to v1.0.0's signed tag object.
	r.git("update-ref", "refs/tags/v9.0.0", r.git("rev-parse", "refs/tags/v1.0.0"))
	r.commitAs(signer{}, map[string]string{"app.yaml": "v2 (fixed)"})
	sign("v2.0.0")

	rev, _, err = fetchMem(t, src, rev)
	if err == nil {
		t.Fatalf("the running source answered %s with no error: v9.0.0 names v1.0.0's tag object, and the signed v2.0.0 is never published", rev)
	}
	wantUntrusted(t, err, `"v9.0.0"`, `"v1.0.0"`)
}
