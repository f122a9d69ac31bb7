package http

import (
	"context"
	"errors"
	"fmt"
	nethttp "net/http"
	"net/url"
	"os"
	"strings"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/trust"
	"github.com/ferrysync/ferry/internal/redact"
	"github.com/ferrysync/ferry/internal/report"
)

// With Options.VerifyKeysFile every HTTP(S) source names a detached
// signature of its body with ?signature=URL: an ASCII-armored OpenPGP
// signature (gpg --armor --detach-sign) or an SSH one made in namespace
// "file" (ssh-keygen -Y sign -n file). The signature is fetched with the
// source's client, limits and, on the same host, credentials, each time a
// new body is downloaded, and the body is verified in its spool file
// before anything is extracted or published. The keys file's digest is
// saved with the validators: when the file changes, the next GET is
// unconditional, and a published body that no longer verifies is
// reported with fetch.ErrPublishedUntrusted (and stays published).

// maxSignature bounds a signature file: an armored signature is under
// 1 KiB.
const maxSignature = 64 << 10

// parseSignature reads ?signature= when the keys file is set; then every
// source needs it. Without the keys file nothing can be verified, and
// ?signature= is left to the origin, as before ferry knew the option: a
// pre-signed URL may carry a parameter of that name. One that looks like
// ferry's is warned about, since it then verifies nothing.
func (s *Source) parseSignature(q url.Values, keysFile string) error {
	v, given := q.Get("signature"), q.Has("signature")
	switch {
	case given && keysFile == "":
		if strings.HasPrefix(v, "http://") || strings.HasPrefix(v, "https://") {
			s.log.Warn("?signature= is sent to the origin and nothing is verified: no keys file is set for HTTP(S) sources", "url", s.redacted)
		}
		return nil
	case !given && keysFile != "":
		return report.Fieldf("{VerifyKeysFile} is set, so every HTTP(S) source must be signed: give ?signature=URL of a detached signature of the body")
	case !given:
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("signature=%s: want the http:// or https:// URL of a detached signature of the body", redact.String(v, nil))
	}
	if u.User != nil {
		return errors.New("signature=URL: credentials in the URL are not accepted")
	}
	s.sigURL, s.keys = u, trust.NewFile(keysFile)
	return nil
}

// loadKeys reads the keys file of a source that checks signatures; nil
// for one that does not.
func (s *Source) loadKeys() (*trust.Keyring, error) {
	if s.keys == nil {
		return nil, nil
	}
	k, err := s.keys.Load()
	if err != nil {
		return nil, fmt.Errorf("keys file: %w", err)
	}
	return k, nil
}

// checkSignature verifies the body b against the signature the source
// names, when it names one. published tells that b is the published
// body, so that a failure says it stays.
func (s *Source) checkSignature(ctx context.Context, client *nethttp.Client, a auth, b *body, keys *trust.Keyring, published bool) error {
	if s.sigURL == nil {
		return nil
	}
	shown := redact.URL(s.sigURL, nil)
	sig, err := s.getSmall(ctx, client, a, s.sigURL, maxSignature)
	if err != nil {
		return fmt.Errorf("signature %s: %w", shown, err)
	}
	f, err := os.Open(b.path)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	who, err := keys.Verify(string(sig), f, trust.NamespaceFile)
	if err != nil {
		if published {
			err = fmt.Errorf("%w; %w, and stays published until a body that verifies replaces it", err, fetch.ErrPublishedUntrusted)
		}
		return fetch.Permanent(fmt.Errorf("body sha256:%s, signature %s: %w", b.sum, shown, err))
	}
	s.log.Info("signature verified", "sha256", b.sum, "signed_by", who)
	return nil
}
