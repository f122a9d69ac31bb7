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
)

// cause keeps an error in the chain (errors.Is and As still see it) while
// showing our own text: go-git's may carry a server's multi-line page.
type cause struct {
	msg string
	err error
}

func (c *cause) Error() string { return c.msg }
func (c *cause) Unwrap() error { return c.err }

// storeError marks a failure to read the local object store, as opposed
// to the origin or the Writer.
type storeError struct{ err error }

func (e *storeError) Error() string { return "object store: " + e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// wrap turns a go-git transport error into one line that names what the
// user can act on, and marks the ones retrying cannot fix as permanent.
func (s *Source) wrap(ctx context.Context, op string, err error) error {
	prefix := fmt.Sprintf("git %s %s", op, s.display)
	if cause := meterFrom(ctx).err(); cause != nil {
		// ferry stopped the operation (a limit, a failed write), not the
		// caller: what go-git made of it (a cancelled read, an EOF) says
		// nothing useful.
		err, ctx = cause, context.WithoutCancel(ctx)
	}
	var keyErr *knownhosts.KeyError
	var netErr net.Error
	var limitErr *limitError
	switch {
	case errors.As(err, &limitErr):
		return fetch.Permanent(fmt.Errorf("%s: %w", prefix, &cause{limitErr.Error(), err}))
	case diskFull(err):
		// Checked before net.Error: a write to the store fails mid-fetch.
		return fmt.Errorf("%s: %w", prefix, &cause{"writing the object store: " + err.Error(), err})
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%s: %w", prefix, &cause{"timed out (--timeout)", err})
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", prefix, ctx.Err())
	case errors.Is(err, transport.ErrAuthenticationRequired):
		msg := "authentication failed (HTTP 401): check --git-username and --git-password-file"
		if s.opts.PasswordFile == "" {
			msg = "authentication required (HTTP 401): give --git-password-file"
		}
		return fetch.Permanent(fmt.Errorf("%s: %w", prefix, &cause{msg, err}))
	case errors.Is(err, transport.ErrAuthorizationFailed):
		return fetch.Permanent(fmt.Errorf("%s: %w", prefix, &cause{"access denied (HTTP 403): the credentials cannot read this repository", err}))
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return fetch.Permanent(fmt.Errorf("%s: %w", prefix, &cause{"repository not found (check the URL; some hosts also answer this for a private repository without access)", err}))
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		return fmt.Errorf("%s: %w", prefix, &cause{"repository is empty (nothing pushed yet)", err})
	case errors.As(err, &keyErr):
		msg := fmt.Sprintf("SSH host key of %s is not in --git-known-hosts-file: add it (ssh-keyscan, then verify it)", s.hostPort)
		if len(keyErr.Want) > 0 {
			msg = fmt.Sprintf("SSH host key of %s does not match --git-known-hosts-file: the key changed or someone is intercepting the connection", s.hostPort)
		}
		return fetch.Permanent(fmt.Errorf("%s: %w", prefix, &cause{msg, err}))
	case strings.Contains(err.Error(), "unable to authenticate"):
		return fetch.Permanent(fmt.Errorf("%s: %w", prefix, &cause{"SSH authentication failed: the server refused --git-ssh-key-file", err}))
	case errors.As(err, &netErr):
		return fmt.Errorf("%s: %w", prefix, &cause{"cannot reach the server: " + innermostNet(err), err})
	}
	return fmt.Errorf("%s: %w", prefix, &cause{oneLine(err.Error()), err})
}

// innermostNet returns the text of the lowest net error in the chain,
// without the URL and method an *url.Error adds around it.
func innermostNet(err error) string {
	var op *net.OpError
	if errors.As(err, &op) {
		return oneLine(op.Error())
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return oneLine(dns.Error())
	}
	return oneLine(err.Error())
}

// oneLine collapses whitespace so an error or server message stays on one
// log line, and bounds its length.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// diskFull reports a write refused for lack of space or quota.
func diskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EFBIG) || errors.Is(err, syscall.EDQUOT)
}
