package signal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrysync/ferry/internal/redact"
)

// Defaults for HTTPOptions, used when a field is left zero; the command
// line starts from DefaultMaxElapsed, where zero means never give up.
const (
	DefaultMethod          = http.MethodPost
	DefaultNotifyTimeout   = 10 * time.Second
	DefaultMaxElapsed      = 5 * time.Minute
	DefaultInitialInterval = 500 * time.Millisecond
	DefaultMaxInterval     = 30 * time.Second
)

const (
	// maxReplyBytes bounds what is read of a reply: the status is all that
	// matters, and a hostile or broken endpoint must not make ferry buffer.
	maxReplyBytes = 4 << 10
	// maxSnippet bounds how much of a refused reply goes into an error.
	maxSnippet = 200
	userAgent  = "ferry"
)

// Change is one published revision that replaced an earlier one.
type Change struct {
	Source   string `json:"source"`
	Revision string `json:"revision"`
	// OriginRevision is what the origin calls the revision when that is
	// not Revision itself: the commit a git //subdir tree was taken from.
	OriginRevision string `json:"origin_revision,omitempty"`
	Path           string `json:"path"` // ROOT/NAME
}

// HTTPOptions configures HTTP notification. Zero fields take the Default
// constants.
type HTTPOptions struct {
	// URLs are the application's reload endpoints (http or https); each gets
	// its own worker and mailbox, so a slow one does not hold up the others.
	URLs []string
	// Method is the request method, DefaultMethod when empty.
	Method string
	// Timeout bounds each request, DefaultNotifyTimeout when zero.
	Timeout time.Duration
	// MaxElapsed is how long one change is retried before ferry gives up on
	// it; zero retries until a newer change or shutdown, as the backoff
	// library spells it (DefaultMaxElapsed is what the command line sets).
	MaxElapsed time.Duration
	// InitialInterval and MaxInterval shape the exponential backoff between
	// attempts (with jitter); DefaultInitialInterval and DefaultMaxInterval
	// when zero. MaxInterval also caps a server's Retry-After.
	InitialInterval, MaxInterval time.Duration
	// Logger receives one line per delivered and per failed notification;
	// nil discards.
	Logger *slog.Logger
	// Registerer receives the ferry_notify_* metrics; nil keeps them unexported.
	Registerer prometheus.Registerer
}

// HTTP notifies the application's reload endpoints. Notify queues; Run
// delivers. For each URL and source only the newest change is delivered.
type HTTP struct {
	method     string
	timeout    time.Duration
	maxElapsed time.Duration
	initial    time.Duration
	maxIvl     time.Duration
	client     *http.Client
	transport  *http.Transport
	log        *slog.Logger
	metrics    *metrics
	targets    []*target
	running    atomic.Bool
}

// target is one URL with its mailbox: at most one pending change per
// source, the newest.
type target struct {
	url  string // as given; may hold credentials, never logged
	name string // redacted, for logs and metric labels
	// secrets are the values of the URL's query, as written and decoded:
	// none is shown, even where an error or a reply repeats it.
	secrets []string

	mu    sync.Mutex
	inbox map[string]Change
	order []string      // sources in inbox, in order of arrival
	wake  chan struct{} // capacity 1: "the inbox changed"
}

// NewHTTP validates o and returns a notifier. It makes no network call; all
// configuration errors are reported together.
func NewHTTP(o HTTPOptions) (*HTTP, error) {
	h := &HTTP{
		method:     strings.ToUpper(strings.TrimSpace(o.Method)),
		timeout:    orDefault(o.Timeout, DefaultNotifyTimeout),
		maxElapsed: o.MaxElapsed,
		initial:    orDefault(o.InitialInterval, DefaultInitialInterval),
		maxIvl:     orDefault(o.MaxInterval, DefaultMaxInterval),
		log:        o.Logger,
	}
	if h.method == "" {
		h.method = DefaultMethod
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}

	var errs []error
	if !validMethod(h.method) {
		errs = append(errs, fmt.Errorf("notify method %q is not a valid HTTP method", o.Method))
	}
	if h.maxElapsed < 0 {
		errs = append(errs, fmt.Errorf("notify max elapsed %v is negative (0 retries until a newer change)", h.maxElapsed))
	}
	if h.timeout < 0 {
		errs = append(errs, fmt.Errorf("notify timeout %v is negative", h.timeout))
	}
	if h.initial < 0 || h.maxIvl < 0 {
		errs = append(errs, fmt.Errorf("notify backoff intervals %v and %v must not be negative", h.initial, h.maxIvl))
	} else if h.initial > h.maxIvl {
		errs = append(errs, fmt.Errorf("notify initial interval %v is longer than the max interval %v", h.initial, h.maxIvl))
	}
	if len(o.URLs) == 0 {
		errs = append(errs, errors.New("no notify URL given"))
	}
	seen := make(map[string]bool)
	for _, raw := range o.URLs {
		t, err := newTarget(raw)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[t.url] {
			errs = append(errs, fmt.Errorf("notify URL %s given twice", t.name))
			continue
		}
		seen[t.url] = true
		h.targets = append(h.targets, t)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("register notify metrics: %w", err)
	}
	h.metrics = m
	for _, t := range h.targets {
		m.initTarget(t.name, resultOK, resultRetry, resultFailed, resultDropped)
	}
	// An own transport, so that Run can close its idle connections (and
	// their goroutines) without touching anyone else's.
	h.transport = http.DefaultTransport.(*http.Transport).Clone()
	h.client = &http.Client{Timeout: h.timeout, Transport: h.transport}
	return h, nil
}

func newTarget(raw string) (*target, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		// url.Error would repeat the raw URL, credentials included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("notify URL: %w", err)
	}
	name := displayName(u)
	if u.User != nil {
		return nil, fmt.Errorf("notify URL %s: credentials in the URL are not accepted (they would travel into logs)", name)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("notify URL %s: scheme must be http or https", name)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("notify URL %s: no host", name)
	}
	return &target{
		url:     u.String(),
		name:    name,
		secrets: queryValues(u.RawQuery),
		inbox:   make(map[string]Change),
		wake:    make(chan struct{}, 1),
	}, nil
}

// displayName is a URL as logs and metric labels show it: scheme, host and
// path. A query may carry a token, and url.URL.Redacted hides only a
// password.
func displayName(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}).String()
}

// minSecretLen is the shortest query value scrubbed from errors and
// replies: hiding "1" of "?v=1" would garble "HTTP 401" and hide nothing.
const minSecretLen = 4

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
func (t *target) scrub(s string) string {
	for _, v := range t.secrets {
		s = strings.ReplaceAll(s, v, redact.Placeholder)
	}
	return s
}

// hide rewrites an error of the HTTP client, whose message names the URL
// with its query (Post "http://app/-/reload?token=..."), to name it as logs
// do, and scrubs the target's query values from the rest. The original
// stays in the chain, for errors.Is and As (timeouts, permanence).
func (t *target) hide(err error) error {
	msg := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) {
		where := t.name
		if u, perr := url.Parse(ue.URL); perr == nil {
			where = displayName(u) // a redirect's target, when it failed there
		}
		msg = fmt.Sprintf("%s %s: %v", ue.Op, where, ue.Err)
	}
	return &hiddenError{msg: t.scrub(msg), err: err}
}

// hiddenError shows msg in place of err's own message.
type hiddenError struct {
	msg string
	err error
}

func (e *hiddenError) Error() string { return e.msg }
func (e *hiddenError) Unwrap() error { return e.err }

// Notify queues c for every URL and returns at once. A change still
// pending or being retried for the same source is dropped in favour of c.
// Changes queued before Run starts are delivered when it does.
func (h *HTTP) Notify(c Change) {
	for _, t := range h.targets {
		if old, replaced := t.put(c); replaced {
			h.dropped(t, old, c)
		}
	}
}

func (t *target) put(c Change) (old Change, replaced bool) {
	t.mu.Lock()
	old, replaced = t.inbox[c.Source]
	if !replaced {
		t.order = append(t.order, c.Source)
	}
	t.inbox[c.Source] = c
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default: // a wake-up is already pending; it will see c
	}
	return old, replaced
}

// take empties the inbox, oldest arrival first.
func (t *target) take() []Change {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.order) == 0 {
		return nil
	}
	out := make([]Change, 0, len(t.order))
	for _, s := range t.order {
		out = append(out, t.inbox[s])
	}
	clear(t.inbox)
	t.order = t.order[:0]
	return out
}

func (h *HTTP) dropped(t *target, old, c Change) {
	h.metrics.inc(t.name, resultDropped)
	h.log.Debug("notify superseded by a newer revision", "url", t.name, "source", c.Source,
		"revision", old.Revision, "newer", c.Revision)
}

// Run delivers queued changes until ctx is done, then returns nil. Only one
// Run may be active at a time.
func (h *HTTP) Run(ctx context.Context) error {
	if !h.running.CompareAndSwap(false, true) {
		return errors.New("notify: Run is already running")
	}
	defer h.running.Store(false)
	defer h.transport.CloseIdleConnections()
	var wg sync.WaitGroup
	for _, t := range h.targets {
		wg.Go(func() { h.work(ctx, t) })
	}
	wg.Wait()
	return nil
}

// job is one change being delivered to one target, with its own backoff.
type job struct {
	c        Change
	seq      uint64 // arrival order, to break ties between due jobs
	bo       *backoff.ExponentialBackOff
	attempts int
	due      time.Time
}

// work delivers to one target. Each source has at most one job; jobs of
// different sources interleave, so one source in backoff does not hold up
// another, and a newer change replaces its source's job at once, even in
// the middle of a long wait.
func (h *HTTP) work(ctx context.Context, t *target) {
	jobs := make(map[string]*job)
	var seq uint64
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		for _, c := range t.take() {
			if old, ok := jobs[c.Source]; ok {
				h.dropped(t, old.c, c)
			}
			seq++
			jobs[c.Source] = h.newJob(c, seq)
		}
		j := nextJob(jobs)
		if j == nil {
			select {
			case <-ctx.Done():
				return
			case <-t.wake:
				continue
			}
		}
		if d := time.Until(j.due); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-t.wake:
				timer.Stop()
			case <-timer.C:
			}
			continue // look at the inbox again before sending anything
		}
		if h.attempt(ctx, t, j) {
			delete(jobs, j.c.Source)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

func (h *HTTP) newJob(c Change, seq uint64) *job {
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(h.initial),
		backoff.WithMaxInterval(h.maxIvl),
		// Set explicitly: the library's default gives up after 15 minutes;
		// its 0 is ours, never.
		backoff.WithMaxElapsedTime(h.maxElapsed),
	)
	return &job{c: c, seq: seq, bo: bo, due: time.Now()}
}

func nextJob(jobs map[string]*job) *job {
	var best *job
	for _, j := range jobs {
		if best == nil || j.due.Before(best.due) || (j.due.Equal(best.due) && j.seq < best.seq) {
			best = j
		}
	}
	return best
}

// attempt sends j once and reports whether j is finished (delivered or
// given up). Otherwise it schedules the next attempt.
func (h *HTTP) attempt(ctx context.Context, t *target, j *job) (finished bool) {
	j.attempts++
	start := time.Now()
	err := h.send(ctx, t, j.c)
	if err == nil {
		h.log.Info("notified application", "url", t.name, "source", j.c.Source,
			"revision", j.c.Revision, "attempts", j.attempts)
		// The counter moves last: whoever sees it can rely on the rest.
		h.metrics.observe(t.name, time.Since(start).Seconds())
		h.metrics.inc(t.name, resultOK)
		return true
	}
	if ctx.Err() != nil {
		return false // shutting down: neither a failure nor a retry
	}
	if !retryable(err) {
		h.failed(t, j, err, "notify refused")
		return true
	}
	wait := j.bo.NextBackOff()
	if wait == backoff.Stop {
		h.failed(t, j, err, "notify gave up")
		return true
	}
	var se *statusError
	if errors.As(err, &se) && se.RetryAfter > wait {
		wait = min(se.RetryAfter, h.maxIvl)
	}
	j.due = time.Now().Add(wait)
	h.log.Debug("notify failed, will retry", "url", t.name, "source", j.c.Source,
		"revision", j.c.Revision, "attempts", j.attempts, "wait", wait, "err", err)
	h.metrics.inc(t.name, resultRetry)
	return false
}

func (h *HTTP) failed(t *target, j *job, err error, msg string) {
	h.log.Error(msg, "url", t.name, "source", j.c.Source, "revision", j.c.Revision,
		"attempts", j.attempts, "err", err)
	h.metrics.inc(t.name, resultFailed)
}

// send makes one request. A nil error means a 2xx reply.
func (h *HTTP) send(ctx context.Context, t *target, c Change) error {
	body, err := json.Marshal(c)
	if err != nil {
		return backoff.Permanent(fmt.Errorf("encode notify body: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, h.method, t.url, bytes.NewReader(body))
	if err != nil {
		return backoff.Permanent(fmt.Errorf("build notify request for %s: %w", t.name, t.hide(err)))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Ferry-Source", headerValue(c.Source))
	req.Header.Set("Ferry-Revision", headerValue(c.Revision))
	req.Header.Set("User-Agent", userAgent)
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
	se := &statusError{Code: resp.StatusCode, Body: snippet([]byte(t.scrub(string(reply)))), RetryAfter: -1}
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

// Error implements error.
func (e *statusError) Error() string {
	msg := fmt.Sprintf("notify: reply %d %s", e.Code, http.StatusText(e.Code))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// retryable reports whether another attempt can help: 429 and 5xx only.
func (e *statusError) retryable() bool {
	return e.Code == http.StatusTooManyRequests || e.Code >= 500
}

// retryable classifies an error from send: transport errors (refused,
// timeouts, resets) are worth retrying, and so are 429 and 5xx replies.
func retryable(err error) bool {
	var se *statusError
	if errors.As(err, &se) {
		return se.retryable()
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
func snippet(b []byte) string {
	s := strings.ToValidUTF8(string(b), "?")
	s = strings.Join(strings.Fields(s), " ")
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

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, r := range m {
		if r > 0x7e || r <= 0x20 || strings.ContainsRune("()<>@,;:\\\"/[]?={}", r) {
			return false
		}
	}
	return true
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
