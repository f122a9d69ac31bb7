package fetch

import "errors"

// permanentError marks a failure that retrying cannot fix: bad credentials,
// a hostile archive, a checksum mismatch, a tree over its limits.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that retrying cannot fix. It returns nil for nil.
func Permanent(err error) error {
	if err == nil || IsPermanent(err) {
		return err
	}
	return &permanentError{err}
}

// IsPermanent reports whether err, or any error it wraps, was marked
// Permanent. Everything else is assumed transient and worth a retry.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// ErrUntrusted is wrapped by every error that refuses a revision because it
// is not signed by a trusted key: unsigned, signed by a key the keys file
// does not hold, or a signature that does not match the content. Such an
// error is also Permanent: fetching the same content again cannot help.
var ErrUntrusted = errors.New("untrusted")

// ErrPublishedUntrusted is wrapped, besides ErrUntrusted, when the revision
// that is already published no longer verifies: the keys file changed (a
// key was rotated out). The revision stays published, since the app needs
// its config, but the sync loop reports it until a revision that verifies
// replaces it.
var ErrPublishedUntrusted = errors.New("the published revision no longer verifies against the keys file")
