package signal

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrysync/ferry/internal/redact"
	"github.com/ferrysync/ferry/internal/report"
	"github.com/ferrysync/ferry/internal/runcmd"
)

// Defaults: the command line starts from them; Options takes the two
// intervals when they are left zero.
const (
	DefaultMethod          = "POST"
	DefaultNotifyTimeout   = 10 * time.Second
	DefaultMaxElapsed      = 5 * time.Minute
	DefaultInitialInterval = 500 * time.Millisecond
	DefaultMaxInterval     = 30 * time.Second
	// DefaultRejectAfter is how long a change may keep failing before the
	// command line's rollback takes it as refused: Prometheus answers 500
	// at once to a config it cannot load, and a slow reload finishes well
	// within it.
	DefaultRejectAfter = 30 * time.Second
	// DefaultExecTimeout bounds one run of the exec hook, as it bounds
	// the validate command.
	DefaultExecTimeout = 30 * time.Second
)

// Change is one published revision that replaced an earlier one.
type Change struct {
	Source   string `json:"source"`
	Revision string `json:"revision"`
	// Previous is the revision Revision replaced under Path: the one
	// before it, or the refused one when Revision is put back.
	Previous string `json:"previous_revision,omitempty"`
	// OriginRevision is what the origin calls the revision when that is
	// not Revision itself: the commit a git //subdir tree was taken from.
	OriginRevision string `json:"origin_revision,omitempty"`
	Path           string `json:"path"` // ROOT/NAME
	// RollbackOf is set when Revision is put back because the application
	// refused this newer one: the app learns why its config went back.
	RollbackOf string `json:"rollback_of,omitempty"`
}

// Refusal is an application's final no to a change, from one URL: a reply
// that retrying cannot change, or failures that outlasted RejectAfter.
type Refusal struct {
	Change Change
	// Target is the URL that refused, as logs show it.
	Target string
	// Err is its last answer: the reply or the transport's error.
	Err error
}

// Options says how the application is told of a change: an HTTP request
// to each of URLs, a signal to the processes called Name, a command run,
// a file touched; any of them, all or none.
type Options struct {
	// URLs are the application's reload endpoints: http or https, without
	// credentials. Each gets its own worker and mailbox, so that a slow
	// one does not hold up the others.
	URLs []string
	// Method is the request method, a token such as POST or PUT (any
	// case); required with URLs.
	Method string
	// Timeout bounds each request; required with URLs.
	Timeout time.Duration
	// MaxElapsed is how long one change is retried before it is given up;
	// zero retries until a newer change or shutdown.
	MaxElapsed time.Duration
	// InitialInterval and MaxInterval shape the exponential backoff
	// between attempts, with jitter; zero takes DefaultInitialInterval and
	// DefaultMaxInterval. MaxInterval also caps a server's Retry-After.
	InitialInterval, MaxInterval time.Duration

	// Refused, when set, is told of every change a URL refuses for good:
	// a 4xx reply other than 408 and 429, or, with RejectAfter, failures
	// that last that long. It is called from a delivery goroutine and must
	// not block. A process signal has no answer, so it never refuses.
	Refused func(Refusal)
	// RejectAfter makes a change still failing (5xx, 408, 429, refused
	// connections, timeouts) after this long of retries a refusal, and
	// ends its retries; 0 leaves such a change to MaxElapsed. It matters
	// only with Refused.
	RejectAfter time.Duration

	// Name is the process to signal, matched against /proc/PID/comm and
	// the base name of argv[0]: the top one of each family (a master, not
	// its workers), in this process namespace.
	Name string
	// Signal is what Name is sent, by name or number: "HUP", "SIGUSR1",
	// "10". Name and Signal go together.
	Signal string

	// ExecCommand is a command line run for each change: split into words
	// as a POSIX shell would, run without one, in Change.Path, with
	// FERRY_SOURCE, FERRY_REVISION, FERRY_PREVIOUS_REVISION, FERRY_PATH,
	// FERRY_ORIGIN_REVISION and FERRY_ROLLBACK_OF added to ferry's
	// environment. A non-zero exit is retried like a failed HTTP request,
	// with MaxElapsed, the intervals and RejectAfter; only the newest
	// change of a source waits, and one run happens at a time.
	ExecCommand string
	// ExecTimeout bounds one run of ExecCommand; zero takes
	// DefaultExecTimeout. The command's process group is killed then.
	ExecTimeout time.Duration

	// TouchFile is an absolute path whose modification time is set to now
	// for each change, and for a source's first publish (NotifyFirst). It
	// is created, mode 0644, when missing; its directory must exist, and a
	// symbolic link there is refused, never followed.
	TouchFile string

	// Logger receives one line per delivered and per failed notification;
	// nil discards.
	Logger *slog.Logger
	// Registerer receives the ferry_notify_* metrics; nil keeps them
	// unexported.
	Registerer prometheus.Registerer
}

// Validate reports every problem of o together, naming fields with
// {Field} (report.FieldError). A field that is set must be valid even when
// nothing uses it, so that a command line is checked whole; what a way of
// telling needs must be set when that way is configured. It makes no
// network call.
func (o Options) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, report.Fieldf(format, args...)) }
	seen := make(map[string]bool)
	for _, raw := range o.URLs {
		if err := checkURL(raw); err != nil {
			errs = append(errs, err)
		} else if seen[raw] {
			add("{URLs} %q given twice", redact.String(raw, nil))
		}
		seen[raw] = true
	}
	if (len(o.URLs) > 0 || o.Method != "") && !validMethod(o.Method) {
		add("{Method} %q: want an HTTP method such as POST or PUT", o.Method)
	}
	if o.Timeout < 0 || o.Timeout == 0 && len(o.URLs) > 0 {
		add("{Timeout} must be positive")
	}
	if o.RejectAfter < 0 {
		add("{RejectAfter} must not be negative (0: only a final reply refuses)")
	}
	if o.MaxElapsed < 0 {
		add("{MaxElapsed} must not be negative (0 retries until a newer revision)")
	}
	if initial, most := o.intervals(); initial < 0 || most < 0 || initial > most {
		add("{InitialInterval} %v and {MaxInterval} %v: want 0 <= initial <= max", initial, most)
	}
	if (o.Signal == "") != (o.Name == "") {
		add("{Signal} and {Name} go together")
	}
	if o.Signal != "" {
		if _, err := parseSignal(o.Signal); err != nil {
			errs = append(errs, err)
		}
	}
	if strings.ContainsAny(o.Name, "/\x00") {
		add("{Name} %q: want the base name of a program, not a path", o.Name)
	}
	if _, err := runcmd.Parse(o.ExecCommand); err != nil {
		add("{ExecCommand} %q: %v", o.ExecCommand, err)
	}
	if o.ExecTimeout < 0 {
		add("{ExecTimeout} must not be negative")
	}
	if err := checkTouchFile(o.TouchFile); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkURL refuses a URL that is not http(s) or that holds credentials.
// The error shows what was given as logs show URLs: no userinfo, no query
// value (ferry defines no notify option).
func checkURL(raw string) error {
	shown := redact.String(raw, nil)
	u, err := url.Parse(raw)
	switch {
	case err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "":
		if u.User != nil {
			return report.Fieldf("{URLs} %q: credentials in the URL are not accepted (they would travel into logs)", shown)
		}
		return nil
	case !strings.Contains(raw, "://"):
		// "127.0.0.1:9091/-/reload" does not parse, "localhost:9091/x" has
		// the scheme "localhost": both mean http.
		return report.Fieldf("{URLs} %q: need an http:// or https:// URL: put http:// in front of it", shown)
	default:
		return report.Fieldf("{URLs} %q: need an http:// or https:// URL", shown)
	}
}

// validMethod accepts an HTTP method token (RFC 9110, section 5.6.2).
func validMethod(m string) bool {
	for _, r := range m {
		if r > 0x7e || r <= 0x20 || strings.ContainsRune(`()<>@,;:\"/[]?={}`, r) {
			return false
		}
	}
	return m != ""
}

func (o Options) intervals() (initial, most time.Duration) {
	return cmp.Or(o.InitialInterval, DefaultInitialInterval), cmp.Or(o.MaxInterval, DefaultMaxInterval)
}

// Notifiers tell the application of each change in every way their
// Options configure, and are held as one thing: Notify hands a change to
// each way, Run delivers what waits (HTTP requests and their retries).
type Notifiers struct {
	ways    []notifier
	results *results // how each way went last (Results)
	running atomic.Bool
}

// notifier is one way of telling the application. Notify must not block.
type notifier interface{ Notify(Changes) }

// firstNotifier is a notifier that wants a source's first publish too.
type firstNotifier interface{ NotifyFirst(Changes) }

// runner is a notifier with work of its own, done until ctx is done.
type runner interface{ run(ctx context.Context) }

// New validates o and returns its Notifiers; with nothing configured they
// tell nobody. It makes no network call, does not look for the process and
// does not touch the file yet: the application may start after ferry.
func New(o Options) (*Notifiers, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("register notify metrics: %w", err)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Notifiers{results: m.last}
	if o.TouchFile != "" {
		n.ways = append(n.ways, newTouch(o, m))
	}
	if len(o.URLs) > 0 {
		n.ways = append(n.ways, newHTTP(o, m))
	}
	if o.Name != "" {
		n.ways = append(n.ways, newProcess(o, m))
	}
	if o.ExecCommand != "" {
		n.ways = append(n.ways, newExec(o, m))
	}
	return n, nil
}

// Notify hands cs, changes of distinct sources, to every way of telling,
// to be told at once, and returns at once: an HTTP request and the exec
// hook are queued for Run, where a change still pending for one of their
// sources is dropped in favour of theirs; a signal is sent and the touch
// file touched now. It tells nothing of no change.
func (n *Notifiers) Notify(cs ...Change) {
	if len(cs) == 0 {
		return
	}
	batch := merge(cs, nil)
	for _, w := range n.ways {
		w.Notify(batch)
	}
}

// NotifyFirst is told of a source's first publish, which Notify is not:
// the app has not started, or has nothing to reload. Only the touch file
// is touched, as git-sync does after every sync that changed something: an
// app that waits for it to appear learns that its config is there.
func (n *Notifiers) NotifyFirst(cs ...Change) {
	if len(cs) == 0 {
		return
	}
	batch := merge(cs, nil)
	for _, w := range n.ways {
		if f, ok := w.(firstNotifier); ok {
			f.NotifyFirst(batch)
		}
	}
}

// Run delivers until ctx is done and returns nil once every delivery has
// stopped (at once when no way of telling needs it). Changes handed to
// Notify before Run starts are delivered when it does. Only one Run may be
// active at a time.
func (n *Notifiers) Run(ctx context.Context) error {
	if !n.running.CompareAndSwap(false, true) {
		return errors.New("notify: Run is already running")
	}
	defer n.running.Store(false)
	var wg sync.WaitGroup
	for _, w := range n.ways {
		if r, ok := w.(runner); ok {
			wg.Go(func() { r.run(ctx) })
		}
	}
	wg.Wait()
	return nil
}
