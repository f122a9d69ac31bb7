package http_test

import (
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/fetch"
	fhttp "github.com/ferrysync/ferry/fetch/http"
	"github.com/ferrysync/ferry/fetch/trust"
	"github.com/ferrysync/ferry/internal/signtest"
	"github.com/ferrysync/ferry/internal/sourcetest"
)

// TestSignedArchiveIsVerifiedBeforeItIsPublished: a tar.gz with a detached
// signature made by gpg (and one made by ssh-keygen) on another server is
// published; a body whose signature does not match, or is made by a key
// not in the keys file, is refused before anything is extracted. When a
// key is rotated out, the published body is downloaded and verified again:
// it stays, refused with fetch.ErrPublishedUntrusted.
func TestSignedArchiveIsVerifiedBeforeItIsPublished(t *testing.T) {
	t.Parallel()
	gpg, stranger, sshKey := signtest.NewGPG(t), signtest.NewGPG(t), signtest.NewSSH(t)
	dir := t.TempDir()
	keys := writeFile(t, dir, "keys", gpg.Public+"\n"+sshKey.Public+"\n")
	body, sigs := newOrigin(t, false), newOrigin(t, false)
	// publish serves content, and the signature sign makes of it.
	publish := func(content []byte, sign func(file string) []byte) {
		p := writeFile(t, t.TempDir(), "bundle.tar.gz", string(content))
		body.set(content)
		sigs.set(sign(p))
	}
	bySSH := func(file string) []byte { return sshKey.Sign(file, trust.NamespaceFile) }

	v := newVolume(t, fetch.Limits{})
	src := v.source(t, body.url("/bundle.tar.gz?v=1&signature=")+url.QueryEscape(sigs.url("/bundle.tar.gz.asc")), fhttp.Options{VerifyKeysFile: keys})
	v1 := tarOf(t, true, file("app.yaml", "v1"))
	publish(v1, gpg.DetachSign)
	if r := v.sync(t, src); r.Err != nil {
		t.Fatal(r.Err)
	}
	if q := body.lastQuery(); q != "v=1" {
		t.Errorf("the origin was asked ?%s, want ?v=1: the signature option is ferry's", q)
	}
	sourcetest.AssertTree(t, v.tree(t), map[string]string{"app.yaml": "v1"})
	if !strings.Contains(v.logs.String(), "openpgp:"+gpg.Fingerprint) {
		t.Errorf("the signer is not logged:\n%s", v.logs.String())
	}

	// A new body under the old signature; a body signed by a stranger.
	body.set(tarOf(t, true, file("app.yaml", "forged")))
	assertUntrusted(t, v.sync(t, src).Err, "does not verify", "openpgp:"+gpg.Fingerprint)
	publish(tarOf(t, true, file("app.yaml", "stranger")), stranger.DetachSign)
	assertUntrusted(t, v.sync(t, src).Err, "openpgp:"+stranger.Fingerprint, "not in the keys file")
	// No signature at all: the origin may not have uploaded it yet.
	sigs.setStatus(404)
	assertError(t, v.sync(t, src).Err, "bundle.tar.gz.asc: not found", false)
	sourcetest.AssertTree(t, v.tree(t), map[string]string{"app.yaml": "v1"})

	v3 := tarOf(t, true, file("app.yaml", "v3"))
	publish(v3, bySSH)
	if r := v.sync(t, src); r.Err != nil {
		t.Fatal(r.Err)
	}
	sourcetest.AssertTree(t, v.tree(t), map[string]string{"app.yaml": "v3"})
	if r := v.sync(t, src); r.Err != nil || r.Rev != r.Prev {
		t.Fatalf("unchanged poll: %+v", r)
	}

	// The SSH key is rotated out: the same body no longer verifies.
	writeFile(t, dir, "keys", gpg.Public)
	err := v.sync(t, src).Err
	assertUntrusted(t, err, "ssh:SHA256:", "not in the keys file")
	if !errors.Is(err, fetch.ErrPublishedUntrusted) {
		t.Errorf("err = %v, want fetch.ErrPublishedUntrusted", err)
	}
	sourcetest.AssertTree(t, v.tree(t), map[string]string{"app.yaml": "v3"})
	publish(tarOf(t, true, file("app.yaml", "v4")), gpg.DetachSign)
	if r := v.sync(t, src); r.Err != nil {
		t.Fatal(r.Err)
	}
	sourcetest.AssertTree(t, v.tree(t), map[string]string{"app.yaml": "v4"})
}

// assertUntrusted fails unless err is a one-line permanent refusal for
// the signature, naming what.
func assertUntrusted(t *testing.T, err error, what ...string) {
	t.Helper()
	for _, w := range what {
		assertError(t, err, w, true)
	}
	if !errors.Is(err, fetch.ErrUntrusted) {
		t.Fatalf("err = %v, want fetch.ErrUntrusted", err)
	}
	t.Log(err)
}

// TestSignatureWithoutKeysIsTheOrigins: without a keys file ?signature= is
// not ferry's (a pre-signed URL may carry one) and goes to the origin;
// one that looks like ferry's is warned about, since nothing is verified.
func TestSignatureWithoutKeysIsTheOrigins(t *testing.T) {
	t.Parallel()
	o := newOrigin(t, false)
	o.set([]byte("x"))
	f := newFixture(t)
	src := f.source(t, o.url("/app.yaml?signature=")+url.QueryEscape("https://h/app.yaml.asc"), fhttp.Options{})
	mustFetch(t, src, "")
	if q := o.lastQuery(); !strings.HasPrefix(q, "signature=") {
		t.Errorf("the origin was asked ?%s, want its signature parameter", q)
	}
	if !strings.Contains(f.logs.String(), "nothing is verified") {
		t.Errorf("no warning:\n%s", f.logs.String())
	}
}

func TestSignatureOptionsAreCheckedBeforeAnyNetwork(t *testing.T) {
	t.Parallel()
	keys := writeFile(t, t.TempDir(), "keys", signtest.NewSSH(t).Public)
	for _, c := range []struct {
		url  string
		opts fhttp.Options
		want string
	}{
		{"https://h/a.tgz", fhttp.Options{VerifyKeysFile: keys}, "give ?signature=URL"},
		{"https://h/a.tgz?signature=ftp://h/a.asc", fhttp.Options{VerifyKeysFile: keys}, "want the http:// or https:// URL"},
		{"https://h/a.tgz?signature=https://u:p@h/a.asc", fhttp.Options{VerifyKeysFile: keys}, "credentials in the URL"},
		{"https://h/a.tgz?signature=https://h/a.asc", fhttp.Options{VerifyKeysFile: filepath.Join(t.TempDir(), "nope")}, "VerifyKeysFile: open"},
	} {
		u, err := fetch.Parse(c.url)
		if err != nil {
			t.Fatal(err)
		}
		_, err = fhttp.New(u, c.opts, fetch.Env{StateDir: t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "u:p") {
			t.Errorf("%s: err = %v, want %q", c.url, err, c.want)
		}
	}
}
