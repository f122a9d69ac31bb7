package sync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/procmem"
	"github.com/ferrysync/ferry/signal"
)

// Defaults for the loop. cmd/ferry builds its flags from these.
const (
	DefaultPeriod      = 30 * time.Second
	DefaultKeep        = 3
	DefaultTimeout     = 2 * time.Minute
	DefaultOnceTimeout = 30 * time.Second
	// DefaultVerifyPeriod spaces the deep checks of a published tree: one
	// read and hash of every file, about 0.1 s of CPU for a 50 MB tree.
	DefaultVerifyPeriod = time.Hour

	// jitter spreads polls by +-10% so a fleet of pods does not poll in step.
	jitter = 0.1
	// retryInitial is the first backoff step after a failure.
	retryInitial = time.Second
	// retryCap bounds the backoff, whatever the period.
	retryCap = 5 * time.Minute
	// stallPeriods is how many periods without a new attempt make the loop
	// count as wedged for /healthz.
	stallPeriods = 3
)

// Notifier is told about every publish that replaced an earlier revision:
// those of one round together, one change per source. Notify must not
// block.
type Notifier interface {
	Notify(changes ...signal.Change)
}

// FirstNotifier is a Notifier that is also told of a source's first
// publish, which Notify is not (a touch file an app may wait for).
// NotifyFirst must not block.
type FirstNotifier interface {
	Notifier
	NotifyFirst(changes ...signal.Change)
}

// Source is one configured source.
type Source struct {
	// Name is the link under the root, ROOT/NAME.
	Name string
	// URL is shown in logs and /status; it must already be redacted.
	URL string
	// Kind names the backend, as fetch.URL.Kind does: "git", "http",
	// "s3", "oci" or "file"; shown in /status and the pull API.
	Kind string
	// Backend fetches the origin.
	Backend fetch.Source
	// PublishMode is how ROOT/NAME shows the current revision: a symlink
	// (the default) or, in exchange mode, a real directory.
	PublishMode PublishMode
	// Limits bound one revision of this source; zero fields take the
	// Store's.
	Limits fetch.Limits
	// Validator checks each new revision before it is published; nil
	// publishes whatever the origin holds.
	Validator Validator
	// Ignore holds patterns in .gitignore syntax of entries never
	// published, whatever the source (ignore.go). A new revision whose
	// tree differs from the published one only in ignored entries is no
	// change: nothing is published and nobody is told.
	Ignore []string
}

// Config configures a Syncer.
type Config struct {
	Store   *Store
	Sources []Source
	// Period is the poll interval; each wait is jittered by +-10%.
	Period time.Duration
	// Keep is how many revisions to retain per source, the current included.
	Keep int
	// Timeout bounds one fetch and publish.
	Timeout time.Duration
	// MaxFailures ends Run after that many consecutive failures of one
	// source; 0 retries forever.
	MaxFailures int
	// OnceTimeout bounds how long Once retries a failing source.
	OnceTimeout time.Duration
	// MaxStaleness makes Ready fail when a source has not synced
	// successfully for that long; 0 keeps it ready through outages.
	MaxStaleness time.Duration
	// VerifyPeriod is how often the published tree is read back and
	// compared, file by file, with what was published; a difference is
	// repaired by publishing the revision again. 0 turns the deep check
	// off; the cheap check of the link and the tree runs before every poll
	// whatever this says.
	VerifyPeriod time.Duration
	// ReleaseMemory makes Run and Once unmap the pages of code and
	// constants package initialization ran before they sync, and Run
	// return the heap a publish used to the operating system once it is
	// done (runtime/debug.FreeOSMemory, process-wide) and unmap the code
	// it ran (procmem.ReleaseImage): a sidecar idles most of its life.
	ReleaseMemory bool
	// Rollout says when a new revision is adopted and what happens when the
	// app refuses one.
	Rollout Rollout
	// Notifiers are told about each publish that replaced a revision.
	Notifiers []Notifier
	// Settle bounds how long a published change waits for the other
	// sources of its round, still syncing, before the notifiers are told:
	// zero means DefaultSettle.
	Settle time.Duration
	// GenerationLink, when set, names a link in the root to a generation:
	// one link per source to its revision, all swapped at once at the end
	// of each round (generation.go). Not with PublishExchange.
	GenerationLink string
	// Logger receives the loop's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// ErrTooManyFailures ends Run when a source failed MaxFailures times in a row.
var ErrTooManyFailures = errors.New("too many consecutive failures")

// Syncer keeps every source's link pointing at the origin's newest revision.
type Syncer struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	sources []*source
	started time.Time
	once    bool // Once runs: no rollout window
	round   round

	changeMu    gosync.Mutex
	changed     chan struct{} // closed at each change: wait.go
	events      []Event       // events.go: the newest eventHistory
	lastEventID uint64

	// syncing counts the sources' syncs under way: the last of them to
	// end releases the image (releaseMemory).
	syncing atomic.Int32
	// release unmaps the binary's image: procmem.ReleaseImage, which a
	// test may count.
	release func() error
}

// source is the per-source state of the loop.
type source struct {
	Source
	log     *slog.Logger
	trigger chan struct{} // one slot: triggers during a sync coalesce into one

	mu          gosync.Mutex
	revision    string
	origin      string // the origin's name for revision (a git commit)
	published   time.Time
	verified    time.Time // last deep check
	damaged     bool      // a damaged tree is being repaired
	lastAttempt time.Time
	lastSuccess time.Time
	lastError   string
	failures    int
	failing     bool      // a "failing" event without its "recovered" yet
	rejected    rejection // the revision refused last
	untrusted   bool      // the published revision no longer verifies (trust.go)
	// previous is the revision the published one replaced, what a
	// rollback puts back ("" when there is none, or it was put back).
	previous, previousOrigin string
	refusal                  *signal.Refusal // the app's, waiting for the loop
	pending                  *pendingRevision
	adoptNow                 bool // Adopt was asked
	// offTick is set while the loop is in an attempt or waits out a
	// backoff: ticks leave it be, so a slow or failing origin is not
	// polled more than the loop's own schedule says.
	offTick bool
	ignore  *ignore
	alias   ignoredChange // an answer of the source that changed only ignored entries
}

// New checks the configuration and reads what is already published, so a
// restarted sidecar is ready at once with the revision it left.
func New(cfg Config) (*Syncer, error) {
	if cfg.Store == nil {
		return nil, errors.New("sync: no store")
	}
	if len(cfg.Sources) == 0 {
		return nil, errors.New("sync: no sources")
	}
	if cfg.Period < 0 || cfg.Keep < 0 || cfg.Timeout < 0 || cfg.OnceTimeout < 0 || cfg.VerifyPeriod < 0 || cfg.Settle < 0 {
		return nil, errors.New("sync: negative period, keep, settle or timeout")
	}
	if err := cfg.Rollout.Validate(); err != nil {
		return nil, fmt.Errorf("sync: %w", err)
	}
	// Zero means the default.
	cfg.Period = cmp.Or(cfg.Period, DefaultPeriod)
	cfg.Keep = cmp.Or(cfg.Keep, DefaultKeep)
	if cfg.Rollout.RollbackOnReject && cfg.Keep < 2 {
		return nil, errNoRollback
	}
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	cfg.OnceTimeout = cmp.Or(cfg.OnceTimeout, DefaultOnceTimeout)
	cfg.Settle = cmp.Or(cfg.Settle, DefaultSettle)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("sync: metrics: %w", err)
	}
	s := &Syncer{cfg: cfg, log: cfg.Logger, metrics: m, started: time.Now(), changed: make(chan struct{}), release: procmem.ReleaseImage}
	s.round = round{settle: cfg.Settle, end: s.endRound}
	if err := cfg.Store.SetGenerationLink(cfg.GenerationLink); err != nil {
		return nil, fmt.Errorf("sync: %w", err)
	}
	seen := map[string]bool{}
	var names []string
	for _, src := range cfg.Sources {
		names = append(names, src.Name)
		if !ValidName(src.Name) {
			return nil, fmt.Errorf("sync: invalid source name %q", src.Name)
		}
		if src.Name == cfg.GenerationLink || cfg.GenerationLink != "" && src.Name == generationsDir {
			return nil, fmt.Errorf("sync: source %q: the name is the generation link's", src.Name)
		}
		if seen[src.Name] {
			return nil, fmt.Errorf("sync: source %q given twice", src.Name)
		}
		if cfg.GenerationLink != "" && src.PublishMode == PublishExchange {
			return nil, fmt.Errorf("sync: source %s: a generation link points at revisions; publish mode exchange has none to point at", src.Name)
		}
		seen[src.Name] = true
		cfg.Store.setLimits(src.Name, src.Limits)
		if err := cfg.Store.SetPublishMode(src.Name, src.PublishMode); err != nil {
			return nil, fmt.Errorf("sync: source %s: %w", src.Name, err)
		}
		if _, err := parseIgnore(src.Ignore); err != nil {
			return nil, fmt.Errorf("sync: source %s: %w", src.Name, err)
		}
	}
	if err := cfg.Store.Prepare(names, cfg.Logger); err != nil {
		return nil, err
	}
	cfg.Store.CurrentGeneration() // GC keeps what it shows
	now := time.Now()
	for _, src := range cfg.Sources {
		rev, err := cfg.Store.Current(src.Name)
		if err != nil {
			return nil, err
		}
		ig, _ := parseIgnore(src.Ignore)
		st := &source{
			Source:   src,
			ignore:   ig,
			log:      cfg.Logger.With("source", src.Name),
			trigger:  make(chan struct{}, 1),
			revision: rev,
			verified: now.Add(-time.Duration(rand.Float64() * float64(cfg.VerifyPeriod))), // spread the deep checks
		}
		s.metrics.pending.WithLabelValues(src.Name).Set(0)
		if rev != "" {
			st.published = cfg.Store.publishedAt(src.Name, rev)
			s.metrics.revision(src.Name, "", rev)
		}
		s.sources = append(s.sources, st)
	}
	return s, nil
}

// Run syncs every source now and then every period until ctx is done. A
// failure is retried with capped exponential backoff and never ends Run,
// unless MaxFailures is set. It returns nil when ctx is cancelled.
func (s *Syncer) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s.releaseInit()
	for _, src := range s.sources {
		s.round.reserve(src.Name) // the first round is every source's
	}
	var wg gosync.WaitGroup
	for _, src := range s.sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.loop(ctx, src); err != nil {
				cancel(err)
			}
		}()
	}
	wg.Go(func() { s.tick(ctx) })
	wg.Wait()
	s.round.stop()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// releaseInit unmaps, with Config.ReleaseMemory, the code and constants
// package initialization ran, before the first sync: some 250 packages'
// init leave about 17 MiB of the binary resident (the kernel maps 64 KiB
// around each page a fault touches), on which the sync's own memory would
// pile up. Measured (benchcompare): the large repository's cold sync
// peaked at 33.8 MiB, about 29 with this; the small one's at 26.3 MiB,
// 22.2 with it, for about 1 ms here and 2-4 ms of faults mapping back what
// the sync runs.
func (s *Syncer) releaseInit() {
	if s.cfg.ReleaseMemory {
		s.releaseImage()
	}
}

// releaseImage unmaps the binary's code and constants run so far; nothing
// breaks when the kernel will not (no /proc), the memory stays mapped.
func (s *Syncer) releaseImage() {
	if err := s.release(); err != nil {
		s.log.Debug("memory not released", "error", err)
	}
}

// releaseMemory gives the operating system back, with Config.ReleaseMemory,
// what a sync of src left behind: the heap a publish grew and the code and
// constants of the binary it ran; after a mere poll, the code only. A poll
// maps back some 6 MiB of the binary (about 90 faults of 64 KiB); releasing
// it after each poll measured 0.7-1.2 ms of CPU (idle at --period 1s: 0.11%
// of a core, 0.19% with it, more where page faults cost more, as in a VM)
// for 15.1 MiB VmRSS down to 9.1. The image is released by the last sync
// under way to end (last), not by each: the sources a round polls at once
// release it once, and none unmaps the code another is running.
func (s *Syncer) releaseMemory(src *source, published, last bool) {
	if !s.cfg.ReleaseMemory {
		return
	}
	if published {
		// A publish allocates in proportion to the tree, and a loop
		// that then idles allocates too little to collect it for
		// minutes: the app would share its node with ferry's garbage.
		// The manifest is read from disk when next needed.
		s.cfg.Store.forget(src.Name)
		// Two collections: the first only moves what sync.Pools hold
		// (copy and hash buffers, encoders' buffers grown to the
		// largest thing they wrote) to their victim caches, the
		// second, in FreeOSMemory, frees it before returning the heap.
		runtime.GC()
		debug.FreeOSMemory()
	}
	if last {
		s.releaseImage()
	}
}

func (s *Syncer) loop(ctx context.Context, src *source) error {
	defer s.dropPending(src, "") // its stage; a restart sees it anew
	retry := s.newBackoff(0)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-src.trigger:
			// Since Go 1.23 a stopped timer delivers nothing stale: Reset
			// below needs no drain.
			timer.Stop()
		}
		var wait time.Duration
		src.setOffTick(true)
		published := src.publishedAt()
		s.syncing.Add(1)
		err := s.syncOnce(ctx, src)
		last := s.syncing.Add(-1) == 0
		s.broadcast() // long polls look again (wait.go)
		s.releaseMemory(src, src.publishedAt() != published, last)
		if IsRejected(err) {
			// Logged already; retrying sooner than the next round cannot
			// help: the origin has to move on.
			retry.Reset()
			wait = never
		} else if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures := src.failureCount()
			if s.cfg.MaxFailures > 0 && failures >= s.cfg.MaxFailures {
				return &SourceError{src.Name, fmt.Errorf("%w (%d): %w", ErrTooManyFailures, failures, err)}
			}
			wait = retry.NextBackOff()
			src.log.Log(ctx, failureLevel(err), "sync failed", "error", err, "failures", failures, "retry_in", wait.Round(time.Millisecond))
		} else {
			retry.Reset()
			wait = never // the next round's tick
		}
		src.setOffTick(wait != never)
		timer.Reset(src.untilAdoption(wait))
	}
}

// newBackoff returns the retry schedule: exponential with jitter, capped at
// the period (and at retryCap), and never giving up by itself. maxElapsed
// of 0 means forever.
func (s *Syncer) newBackoff(maxElapsed time.Duration) *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = min(retryInitial, s.cfg.Period)
	b.MaxInterval = max(min(s.cfg.Period, retryCap), b.InitialInterval)
	b.MaxElapsedTime = maxElapsed
	b.Reset()
	return b
}

func jittered(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (1 - jitter + 2*jitter*rand.Float64()))
}

// Trigger asks for a sync now, of one source by name or of all when name is
// empty. Triggers that arrive while a sync runs coalesce into one more sync.
func (s *Syncer) Trigger(name string) error {
	var srcs []*source
	for _, src := range s.sources {
		if name == "" || src.Name == name {
			srcs = append(srcs, src)
		}
	}
	if len(srcs) == 0 {
		return fmt.Errorf("no source named %q", name)
	}
	s.trigger(srcs)
	return nil
}

// trigger asks each of srcs for an attempt now, in one round: every place
// is reserved before any trigger is sent, since a loop may take its
// trigger, publish and leave at once, and a round with nobody left ends.
func (s *Syncer) trigger(srcs []*source) {
	placed := make([]bool, len(srcs))
	for i, src := range srcs {
		placed[i] = s.round.reserve(src.Name)
	}
	for i, src := range srcs {
		select {
		case src.trigger <- struct{}{}:
		default: // a trigger waits already, and the attempt it starts joins
			if placed[i] {
				s.round.unreserve(src.Name)
			}
		}
	}
}
