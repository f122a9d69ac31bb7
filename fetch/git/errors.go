package git

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/report"
)

// storeError marks a failure to read the local object store, as opposed
// to the origin or the Writer.
type storeError struct{ err error }

func (e *storeError) Error() string { return "object store: " + e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

func storeErr(err error) error {
	if err == nil {
		return nil
	}
	return &storeError{err}
}

// wrap turns a go-git transport error into one line that names what the
// user can act on, and marks the ones retrying cannot fix as permanent.
func (s *Source) wrap(ctx context.Context, op string, err error) error {
	if cause := meterFrom(ctx).err(); cause != nil {
		// ferry stopped the operation (a limit, a failed write), not the
		// caller: what go-git made of it (a cancelled read, an EOF) says
		// nothing useful.
		err, ctx = cause, context.WithoutCancel(ctx)
	}
	fail := func(msg string) error { return report.Errorf(err, "git %s %s: %s", op, s.display, msg) }
	var keyErr *knownhosts.KeyError
	var netErr net.Error
	var limitErr *limitError
	switch {
	case errors.As(err, &limitErr):
		return fetch.Permanent(fail(limitErr.Error()))
	case diskFull(err):
		// Checked before net.Error: a write to the store fails mid-fetch.
		return fail("writing the object store: " + err.Error())
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		return fail("timed out")
	case ctx.Err() != nil:
		return fmt.Errorf("git %s %s: %w", op, s.display, ctx.Err())
	case errors.Is(err, transport.ErrAuthenticationRequired) && s.app != nil:
		s.app.forget() // revoked, perhaps: the next attempt mints a new one
		return fetch.Permanent(fail("authentication failed (HTTP 401): the GitHub App's installation token was refused"))
	case errors.Is(err, transport.ErrAuthenticationRequired):
		if s.opts.PasswordFile == "" {
			return fetch.Permanent(fail("authentication required (HTTP 401), and no git password file is set"))
		}
		return fetch.Permanent(fail("authentication failed (HTTP 401): check the git user name and password file"))
	case errors.Is(err, transport.ErrAuthorizationFailed):
		return fetch.Permanent(fail("access denied (HTTP 403): the credentials cannot read this repository"))
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return fetch.Permanent(fail("repository not found (check the URL; some hosts also answer this for a private repository without access)"))
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		return fail("repository is empty (nothing pushed yet)")
	case errors.As(err, &keyErr) && len(keyErr.Want) > 0:
		return fetch.Permanent(fail(fmt.Sprintf("SSH host key of %s does not match the known_hosts file: the key changed or someone is intercepting the connection", s.hostPort)))
	case errors.As(err, &keyErr):
		return fetch.Permanent(fail(fmt.Sprintf("SSH host key of %s is not in the known_hosts file: add it (ssh-keyscan, then verify it)", s.hostPort)))
	case strings.Contains(err.Error(), "unable to authenticate"):
		return fetch.Permanent(fail("SSH authentication failed: the server refused the SSH key"))
	case errors.As(err, &netErr):
		return fail("cannot reach the server: " + innermostNet(err))
	}
	return fail(err.Error())
}

// innermostNet returns the text of the lowest net error in the chain,
// without the URL and method an *url.Error adds around it.
func innermostNet(err error) string {
	var op *net.OpError
	var dns *net.DNSError
	switch {
	case errors.As(err, &op):
		return op.Error()
	case errors.As(err, &dns):
		return dns.Error()
	}
	return err.Error()
}

// diskFull reports a write refused for lack of space or quota.
func diskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EFBIG) || errors.Is(err, syscall.EDQUOT)
}
