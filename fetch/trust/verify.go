package trust

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"

	"github.com/ferrysync/ferry/fetch"
)

// Namespaces of SSH signatures (ssh-keygen -Y sign -n NAMESPACE): git signs
// commits and tags in "git"; "file" is what ssh-keygen's manual suggests
// for files.
const (
	NamespaceGit  = "git"
	NamespaceFile = "file"
)

const (
	pgpSignature = "-----BEGIN PGP SIGNATURE-----"
	sshSignature = "-----BEGIN SSH SIGNATURE-----"
)

// untrusted is an error that refuses content for its signature: it wraps
// fetch.ErrUntrusted.
func untrusted(format string, args ...any) error {
	return fmt.Errorf("%w: %s", fetch.ErrUntrusted, fmt.Sprintf(format, args...))
}

// Verify checks sig, an ASCII-armored OpenPGP or SSH signature, over the
// content signed reads, against the keys. namespace is the one an SSH
// signature must be made in (NamespaceGit, NamespaceFile). It returns
// the key that made the signature: "openpgp:FINGERPRINT" (or the key ID,
// for a signature that names no fingerprint) or "ssh:SHA256:...". Every
// error wraps fetch.ErrUntrusted and names the signing key when the
// signature names one.
func (k *Keyring) Verify(sig string, signed io.Reader, namespace string) (string, error) {
	sig = strings.TrimSpace(sig)
	switch {
	case sig == "":
		return "", untrusted("not signed")
	case strings.HasPrefix(sig, pgpSignature):
		return k.verifyPGP(sig, signed)
	case strings.HasPrefix(sig, sshSignature):
		return k.verifySSH(sig, signed, namespace)
	}
	return "", untrusted("signature is neither OpenPGP nor SSH (X.509 signatures are not supported)")
}

func (k *Keyring) verifyPGP(sig string, signed io.Reader) (string, error) {
	block, err := armor.Decode(strings.NewReader(sig))
	if err != nil {
		return "", untrusted("unreadable OpenPGP signature: %v", err)
	}
	raw, err := io.ReadAll(io.LimitReader(block.Body, 1<<20))
	if err != nil {
		return "", untrusted("unreadable OpenPGP signature: %v", err)
	}
	who := pgpIssuer(raw)
	_, _, err = openpgp.VerifyDetachedSignature(k.pgp, signed, bytes.NewReader(raw), nil)
	switch {
	case err == nil:
		return who, nil
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		return who, untrusted("signed by %s, which is not in the keys file", who)
	}
	return who, untrusted("signature by %s does not verify: %v", who, err)
}

// pgpIssuer names the key that made an OpenPGP signature, as gpg shows
// it: the fingerprint when the signature carries it, else the key ID.
func pgpIssuer(raw []byte) string {
	p, err := packet.Read(bytes.NewReader(raw))
	s, ok := p.(*packet.Signature)
	switch {
	case err != nil || !ok:
		return "an unknown OpenPGP key"
	case len(s.IssuerFingerprint) > 0:
		return fmt.Sprintf("openpgp:%X", s.IssuerFingerprint)
	case s.IssuerKeyId != nil:
		return fmt.Sprintf("openpgp:%016X", *s.IssuerKeyId)
	}
	return "an unknown OpenPGP key"
}

func (k *Keyring) verifySSH(sig string, signed io.Reader, namespace string) (string, error) {
	s, err := sshsig.Unarmor([]byte(sig))
	if err != nil {
		return "", untrusted("unreadable SSH signature: %v", err)
	}
	fp := ssh.FingerprintSHA256(s.PublicKey)
	who := "ssh:" + fp
	pub, ok := k.ssh[fp]
	if !ok {
		return who, untrusted("signed by %s, which is not in the keys file", who)
	}
	if s.Namespace != namespace {
		return who, untrusted("signature by %s is for namespace %q, not %q", who, s.Namespace, namespace)
	}
	if err := sshsig.Verify(signed, s, pub, s.HashAlgorithm, namespace); err != nil {
		return who, untrusted("signature by %s does not verify: %v", who, err)
	}
	return who, nil
}
