package oci

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	nethttp "net/http"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/report"
)

// isStatus reports whether err is the registry's answer (an HTTP status),
// not a failure to get one.
func isStatus(err error) bool {
	var te *transport.Error
	return errors.As(err, &te)
}

// registryError turns a failed registry call into one line that says
// what to do. Refused credentials and unknown names that a user must fix
// are permanent; the rest may pass.
func registryError(ctx context.Context, op string, err error, hasCreds bool) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			return fmt.Errorf("%s: timed out waiting for the registry: %w", op, ctxErr)
		}
		return ctxErr
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return statusError(op, te, hasCreds)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its message repeats the URL
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return fetch.Permanent(report.Errorf(err, "%s: TLS: registry certificate not trusted: %v (give its CA certificate in a CA file)", op, cve.Err))
	}
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) {
		return report.Errorf(err, "%s: TLS handshake failed: the registry does not speak TLS on this port (for a plain-http registry write oci::http://HOST/REPO)", op)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%s: timed out: %w", op, err)
	}
	return report.Errorf(err, "%s: %s", op, oneLine(err))
}

// statusError explains the registry's answer.
func statusError(op string, te *transport.Error, hasCreds bool) error {
	status := fmt.Sprintf("HTTP %d %s", te.StatusCode, nethttp.StatusText(te.StatusCode))
	if len(te.Errors) > 0 {
		d := te.Errors[0]
		status += ": " + string(d.Code)
		if d.Message != "" {
			status += " " + oneLine(errors.New(d.Message))
		}
	}
	switch code := te.StatusCode; {
	case code == nethttp.StatusUnauthorized || code == nethttp.StatusForbidden:
		if !hasCreds {
			return fetch.Permanent(report.Errorf(te, "%s: access refused (%s) and no credentials are configured (a Docker config file, basic auth or a bearer token)", op, status))
		}
		return fetch.Permanent(report.Errorf(te, "%s: credentials refused (%s)", op, status))
	case code == nethttp.StatusNotFound:
		return report.Errorf(te, "%s: not found (%s)", op, status)
	case code == nethttp.StatusTooManyRequests:
		return report.Errorf(te, "%s: rate limited by the registry (%s)", op, status)
	case code >= 500:
		return report.Errorf(te, "%s: registry error (%s)", op, status)
	}
	return report.Errorf(te, "%s: unexpected answer (%s)", op, status)
}

// oneLine is err's message on one line, bounded.
func oneLine(err error) string {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return msg
}
