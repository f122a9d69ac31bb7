package signal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v4"

	"github.com/ferrysync/ferry/internal/redact"
	"github.com/ferrysync/ferry/internal/report"
)

const (
	// maxReplyBytes bounds what is read of a reply: the status is all that
	// matters, and a hostile or broken endpoint must not make ferry buffer.
	maxReplyBytes = 4 << 10
	// maxSnippet bounds how much of a refused reply goes into an error.
	maxSnippet = 200
	// minSecretLen is the shortest query value scrubbed from errors and
	// replies: hiding "1" of "?v=1" would garble "HTTP 401" and hide nothing.
	minSecretLen = 4
)

// send makes one request. A nil error means a 2xx reply.
func (h *httpNotifier) send(ctx context.Context, t *httpTarget, cs Changes) error {
	req, err := http.NewRequestWithContext(ctx, h.method, t.url, bytes.NewReader(cs.body()))
	if err != nil {
		return backoff.Permanent(fmt.Errorf("build notify request for %s: %w", t.name, t.hide(err)))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Ferry-Source", headerValue(cs.sources()))
	req.Header.Set("Ferry-Revision", headerValue(cs.revisions()))
	req.Header.Set("User-Agent", "ferry")
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("notify: %w", t.hide(err))
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	// An app's error page may echo the request, token and all.
	se := &statusError{Code: resp.StatusCode, Body: snippet(t.scrub(string(reply))), RetryAfter: -1}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		se.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"))
	}
	return se
}

// statusError is a reply to a notification that was not a 2xx.
type statusError struct {
	Code int    // HTTP status code
	Body string // start of the reply body, for the log
	// RetryAfter is the server's Retry-After on a 429 or 503 given in
	// seconds, or negative when absent.
	RetryAfter time.Duration
}

func (e *statusError) Error() string {
	msg := fmt.Sprintf("notify: reply %d %s", e.Code, http.StatusText(e.Code))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// retryable classifies an error from send: transport errors (refused,
// timeouts, resets) are worth retrying, and so are 408, 429 and 5xx
// replies. Any other reply is the app's final answer.
func retryable(err error) bool {
	var se *statusError
	if errors.As(err, &se) {
		return se.Code == http.StatusRequestTimeout || se.Code == http.StatusTooManyRequests || se.Code >= 500
	}
	var pe *backoff.PermanentError
	return !errors.As(err, &pe)
}

func parseRetryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return -1
	}
	// Cap before multiplying: a huge value must not overflow.
	return time.Duration(min(n, 1<<20)) * time.Second
}

// snippet makes the start of a reply body safe and short enough for a log.
func snippet(s string) string {
	s = strings.Join(strings.Fields(strings.ToValidUTF8(s, "?")), " ")
	if len(s) > maxSnippet {
		cut := maxSnippet
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

// headerValue keeps a header value sendable: a control character would make
// the transport fail every attempt.
func headerValue(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// displayName is a URL as logs and metric labels show it: scheme, host and
// path. A query may carry a token, and url.URL.Redacted hides only a
// password.
func displayName(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}).String()
}

// queryValues returns the values of a raw query long enough to be a
// credential, both as written and decoded, longest first so that a value
// is hidden whole before a shorter one inside it.
func queryValues(rawQuery string) []string {
	var out []string
	for _, part := range strings.FieldsFunc(rawQuery, func(r rune) bool { return r == '&' || r == ';' }) {
		_, v, _ := strings.Cut(part, "=")
		if len(v) >= minSecretLen {
			out = append(out, v)
		}
		if d, err := url.QueryUnescape(v); err == nil && d != v && len(d) >= minSecretLen {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// scrub hides the target's query values wherever s repeats them.
func (t *httpTarget) scrub(s string) string {
	for _, v := range t.secrets {
		s = strings.ReplaceAll(s, v, redact.Placeholder)
	}
	return s
}

// hide rewrites an error of the HTTP client, whose message names the URL
// with its query (Post "http://app/-/reload?token=..."), to name it as logs
// do, and scrubs the target's query values from the rest. The original
// stays in the chain, for errors.Is and As (timeouts, permanence).
func (t *httpTarget) hide(err error) error {
	msg := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) {
		where := t.name
		if u, perr := url.Parse(ue.URL); perr == nil {
			where = displayName(u) // a redirect's target, when it failed there
		}
		msg = fmt.Sprintf("%s %s: %v", ue.Op, where, ue.Err)
	}
	return report.Errorf(err, "%s", t.scrub(msg))
}
