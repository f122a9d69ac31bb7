// Package trust checks signatures against a file of trusted public keys:
// ASCII-armored OpenPGP keys and SSH public keys (authorized_keys or
// allowed_signers lines). The git and HTTP sources use it to publish only
// signed config; the cryptography is ProtonMail/go-crypto's (OpenPGP) and
// hiddeco/sshsig's (SSH signatures), as Flux uses them.
package trust

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"golang.org/x/crypto/ssh"

	"github.com/ferrysync/ferry/fetch"
)

// MaxKeysFile bounds a keys file: a few hundred keys fit in far less.
const MaxKeysFile = 1 << 20

const (
	pgpBegin = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
	pgpEnd   = "-----END PGP PUBLIC KEY BLOCK-----"
)

// Keyring is the set of keys one keys file holds.
type Keyring struct {
	pgp    openpgp.EntityList
	ssh    map[string]ssh.PublicKey // by SHA256 fingerprint
	digest string
}

// Digest identifies the file's content: a changed digest means the keys
// may have changed, and what was verified before must be verified again.
// It is "" for a nil Keyring.
func (k *Keyring) Digest() string {
	if k == nil {
		return ""
	}
	return k.digest
}

// Len is the number of keys: OpenPGP primary keys and SSH keys.
func (k *Keyring) Len() int { return len(k.pgp) + len(k.ssh) }

// Parse reads a keys file: any number of ASCII-armored OpenPGP public key
// blocks, and SSH public keys one a line, as authorized_keys
// ("[options] TYPE BASE64 [comment]") or allowed_signers ("PRINCIPALS
// [options] TYPE BASE64 [comment]") write them. Blank lines and lines
// starting with # are ignored. Principals and options are not enforced: a
// key in the file is trusted for whatever it signs. A file that holds no
// key is an error, so a truncated file never means "trust nothing"
// silently.
func Parse(data []byte) (*Keyring, error) {
	sum := sha256.Sum256(data)
	k := &Keyring{ssh: map[string]ssh.PublicKey{}, digest: hex.EncodeToString(sum[:])}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), MaxKeysFile)
	var block *strings.Builder
	blockLine := 0
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case block != nil:
			block.WriteString(line + "\n")
			if line == pgpEnd {
				el, err := openpgp.ReadArmoredKeyRing(strings.NewReader(block.String()))
				if err != nil {
					return nil, fmt.Errorf("line %d: OpenPGP key block: %w", blockLine, err)
				}
				k.pgp = append(k.pgp, el...)
				block = nil
			}
		case line == pgpBegin:
			block, blockLine = &strings.Builder{}, n
			block.WriteString(line + "\n")
		case line == "" || strings.HasPrefix(line, "#"):
		default:
			pub, err := parseSSHLine(line)
			if err != nil {
				return nil, fmt.Errorf("line %d: neither an OpenPGP key block nor an SSH public key: %w", n, err)
			}
			k.ssh[ssh.FingerprintSHA256(pub)] = pub
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if block != nil {
		return nil, fmt.Errorf("line %d: OpenPGP key block has no %s line", blockLine, pgpEnd)
	}
	if k.Len() == 0 {
		return nil, errors.New("holds no key (want ASCII-armored OpenPGP public keys or SSH public keys)")
	}
	return k, nil
}

// parseSSHLine reads an authorized_keys line, or an allowed_signers line,
// whose first field is the principals.
func parseSSHLine(line string) (ssh.PublicKey, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err == nil {
		return pub, nil
	}
	if _, rest, ok := strings.Cut(line, " "); ok {
		if pub, _, _, _, err2 := ssh.ParseAuthorizedKey([]byte(strings.TrimSpace(rest))); err2 == nil {
			return pub, nil
		}
	}
	return nil, err
}

// File is a keys file read again on every Load, so that a key rotated in
// a mounted Secret is used on the next sync; it is parsed again only when
// its content changed. Load is not safe for concurrent use.
type File struct {
	path string
	last *Keyring
}

// NewFile returns the keys file at path; nothing is read yet.
func NewFile(path string) *File { return &File{path: path} }

// Load reads the file and returns its keys. A file that cannot be read is
// an error worth a retry (a Secret being updated); one that reads but
// holds no valid key is permanent until someone fixes it.
func (f *File) Load() (*Keyring, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, MaxKeysFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.path, err)
	}
	if len(data) > MaxKeysFile {
		return nil, fetch.Permanent(fmt.Errorf("%s is larger than %d bytes", f.path, MaxKeysFile))
	}
	sum := sha256.Sum256(data)
	if f.last != nil && f.last.digest == hex.EncodeToString(sum[:]) {
		return f.last, nil
	}
	k, err := Parse(data)
	if err != nil {
		return nil, fetch.Permanent(fmt.Errorf("%s: %w", f.path, err))
	}
	f.last = k
	return k, nil
}
