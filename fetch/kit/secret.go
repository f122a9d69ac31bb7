package kit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
)

// MaxSecretSize bounds a secret file: a token, a password or a key is a few
// KiB; a wrong path (a log, a binary) fails rather than being read whole.
const MaxSecretSize = 64 << 10

// ReadSecretFile reads a secret held in a file: a key, a list of headers.
// The file is read again on every call, so a rotated Kubernetes Secret is
// picked up without a restart. It must be a regular file (a Secret
// volume's symlinks are followed), at most MaxSecretSize bytes, and not
// empty or blank. Errors name the file, never its content.
func ReadSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory", path)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSecretSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxSecretSize {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a secret file", path, MaxSecretSize)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		// A Secret not (yet) filled in, not a credential to send.
		return nil, fmt.Errorf("%s is empty", path)
	}
	return b, nil
}

// ReadSecret reads a one-line secret, a password or a token, by the rule of
// ReadSecretFile. One line break at the end (what echo and editors add) is
// not part of it; anything else is, so a secret with other surrounding
// white space or a line break inside is refused rather than guessed at.
func ReadSecret(path string) (string, error) {
	b, err := ReadSecretFile(path)
	if err != nil {
		return "", err
	}
	s := string(b)
	if n := len(s); n > 0 && s[n-1] == '\n' {
		s = s[:n-1]
		if n := len(s); n > 0 && s[n-1] == '\r' {
			s = s[:n-1]
		}
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\n' || c == '\r':
			return "", fmt.Errorf("%s holds more than one line: give the secret alone", path)
		case (c == ' ' || c == '\t') && (i == 0 || i == len(s)-1):
			return "", fmt.Errorf("%s starts or ends with white space: give the secret alone", path)
		}
	}
	return s, nil
}

// ErrSecretExposed marks a secret file that every user of the machine may
// read. It is a warning, not a refusal: Kubernetes mounts Secrets 0644
// unless the volume sets defaultMode.
var ErrSecretExposed = errors.New("secret file is readable by every user")

// WarnExposed logs a warning when the secret file at path may be read by
// every user of the machine (any process sharing the node or the volume
// could take it), with attrs (what the file is, in the caller's words).
// The content is never read here.
func WarnExposed(log *slog.Logger, path string, attrs ...any) {
	if log == nil || path == "" {
		return
	}
	fi, err := os.Stat(path) // follows the symlinks of a Secret volume
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o004 == 0 {
		return
	}
	log.Warn(ErrSecretExposed.Error()+": restrict it (chmod 0600 or 0640; on Kubernetes, defaultMode: 0440 on the Secret volume)",
		append([]any{"path", path, "mode", fi.Mode().Perm().String()}, attrs...)...)
}
