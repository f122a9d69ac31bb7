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
