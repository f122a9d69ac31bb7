package trust_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/trust"
	"github.com/ferrysync/ferry/internal/signtest"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustParse(t *testing.T, content string) *trust.Keyring {
	t.Helper()
	k, err := trust.Parse([]byte(content))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return k
}

// TestDetachedSignaturesOfGPGAndSSHKeygenVerify signs a file with the real
// tools and checks every way a signature can fail: each error wraps
// fetch.ErrUntrusted and names the key when the signature names one.
func TestDetachedSignaturesOfGPGAndSSHKeygenVerify(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	gpg, other := signtest.NewGPG(t), signtest.NewGPG(t)
	sshKey, otherSSH := signtest.NewSSH(t), signtest.NewSSH(t)
	file := writeFile(t, dir, "app.tar.gz", "the body")
	tampered := filepath.Join(dir, "tampered")

	keys := mustParse(t, "# team keys\n"+gpg.Public+"\n"+sshKey.AllowedSigners()+"\n")
	if keys.Len() != 2 {
		t.Fatalf("Len = %d, want 2", keys.Len())
	}
	verify := func(sig []byte, path, ns string) (string, error) {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		return keys.Verify(string(sig), f, ns)
	}
	pgpSig := gpg.DetachSign(file)
	sshSig := sshKey.Sign(file, trust.NamespaceFile)
	writeFile(t, dir, "tampered", "the body!")

	for _, c := range []struct {
		name, sig, path, ns string
		want                string // "" for success; else in the error
		who                 string
	}{
		{"openpgp", string(pgpSig), file, trust.NamespaceFile, "", "openpgp:" + gpg.Fingerprint},
		{"ssh", string(sshSig), file, trust.NamespaceFile, "", "ssh:SHA256:"},
		{"openpgp tampered", string(pgpSig), tampered, trust.NamespaceFile, "does not verify", "openpgp:" + gpg.Fingerprint},
		{"ssh tampered", string(sshSig), tampered, trust.NamespaceFile, "does not verify", "ssh:SHA256:"},
		{"openpgp unknown key", string(other.DetachSign(file)), file, trust.NamespaceFile, "openpgp:" + other.Fingerprint + ", which is not in the keys file", ""},
		{"ssh unknown key", string(otherSSH.Sign(file, trust.NamespaceFile)), file, trust.NamespaceFile, ", which is not in the keys file", ""},
		{"ssh other namespace", string(sshSig), file, trust.NamespaceGit, `namespace "file", not "git"`, ""},
		{"unsigned", "", file, trust.NamespaceFile, "not signed", ""},
		{"garbage", "hello", file, trust.NamespaceFile, "neither OpenPGP nor SSH", ""},
	} {
		who, err := verify([]byte(c.sig), c.path, c.ns)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, fetch.ErrUntrusted)):
			t.Errorf("%s: err = %v, want ErrUntrusted with %q", c.name, err, c.want)
		case c.who != "" && !strings.HasPrefix(who, c.who):
			t.Errorf("%s: signer %q, want %q...", c.name, who, c.who)
		}
	}
}

func TestKeysFileIsReadAgainAndMustHoldAKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sshKey := signtest.NewSSH(t)
	path := writeFile(t, dir, "keys", sshKey.Public+"\n")
	f := trust.NewFile(path)
	k1, err := f.Load()
	if err != nil {
		t.Fatal(err)
	}
	if k2, _ := f.Load(); k2 != k1 {
		t.Fatal("an unchanged file was parsed again")
	}
	// authorized_keys options, allowed_signers principals and options.
	writeFile(t, dir, "keys", `no-pty `+sshKey.Public+"\n"+`a@b,c@d namespaces="git" `+sshKey.Public+"\n")
	k3, err := f.Load()
	if err != nil {
		t.Fatal(err)
	}
	if k3.Digest() == k1.Digest() {
		t.Fatal("a changed file kept its digest")
	}

	for name, content := range map[string]string{
		"empty":     "# nothing yet\n\n",
		"bad line":  "ssh-ed25519 notbase64\n",
		"cut block": "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQ\n",
	} {
		writeFile(t, dir, "keys", content)
		if _, err := f.Load(); err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: err = %v, want a permanent error naming the file", name, err)
		}
	}
	os.Remove(path)
	if _, err := f.Load(); err == nil || fetch.IsPermanent(err) {
		t.Errorf("missing file: err = %v, want a transient error", err)
	}
}
