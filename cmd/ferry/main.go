// Command ferry syncs configuration from git, S3, HTTP(S) or a local
// directory into a volume shared with an application, publishes each
// revision with an atomic symlink swap and tells the application.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	ossignal "os/signal"
	"path/filepath"
	"strings"
	gosync "sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ferrysync/ferry/api"
	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/signal"
	"github.com/ferrysync/ferry/sync"
	"github.com/ferrysync/ferry/validate"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

// stopProfiles ends the profiles a -tags pprof build writes (profile.go).
var stopProfiles = func() {}

// Exit codes, as the README states them (Command line) and manifests rely
// on: a one-shot init container must fail on 1 and 2 alike.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	ctx, stop := ossignal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	code := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stopProfiles()
	os.Exit(code)
}

// run is the whole program but for the process: tests call it in-process.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) int {
	if len(args) == 0 {
		topUsage(stderr)
		return exitUsage
	}
	cmd := args[0]
	switch cmd {
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "ferry %s\n", version)
		return exitOK
	case "help", "-h", "--help", "-help":
		topUsage(stdout)
		return exitOK
	case cmdInject:
		return runInject(args[1:], os.Stdin, stdout, stderr)
	case cmdRun, cmdOnce, cmdCheck:
	default:
		fmt.Fprintf(stderr, "ferry: unknown command %q (want run, once, check, inject or version; see 'ferry help')\n", cmd)
		return exitUsage
	}
	c, err := parse(cmd, args[1:], lookupEnv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		printErrors(stderr, err)
		return exitUsage
	}
	log, err := newLogger(c.global, stderr)
	if err != nil {
		printErrors(stderr, err)
		return exitUsage
	}
	if len(c.unused) > 0 {
		log.Warn("flags of another command are ignored: 'ferry "+cmd+" --help' lists this command's", "flags", c.unused)
	}
	d, err := build(c, log)
	if err != nil {
		printErrors(stderr, err)
		return exitUsage
	}
	if cmd == cmdCheck {
		// Nothing is opened: check leaves the root as it is.
		printConfig(stdout, c)
		return exitOK
	}
	// The root is opened only now, after every other configuration error,
	// still before any network access. What is wrong with it (a file where
	// a link goes, a symlinked .ferry) is the user's to fix: exit 2. A root
	// that another ferry holds is a failure to sync, not a mistake in the
	// command line: exit 1, as the kubelet's restart may well find it free.
	if err := d.open(); err != nil {
		printErrors(stderr, err)
		if errors.Is(err, sync.ErrLocked) {
			return exitFailed
		}
		return exitUsage
	}
	defer d.store.Close()
	if cmd == "once" {
		return d.once(ctx)
	}
	return d.run(ctx)
}

// printErrors prints one line per configuration problem.
func printErrors(w io.Writer, err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(w, "ferry: %s\n", line)
	}
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

func newLogger(o *options, w io.Writer) (*slog.Logger, error) {
	level, err := parseLevel(o.logLevel)
	if err != nil {
		return nil, err
	}
	ho := &slog.HandlerOptions{Level: level, ReplaceAttr: readableDurations}
	if o.logFormat == "text" {
		ho.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			return shortIDs(groups, readableDurations(groups, a))
		}
		return slog.New(slog.NewTextHandler(w, ho)), nil
	}
	return slog.New(slog.NewJSONHandler(w, ho)), nil
}

// readableDurations writes durations as Go writes them ("1.5s", "250ms")
// in both formats: JSON's default is a bare count of nanoseconds.
func readableDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// shortIDs writes a revision or commit (40 or 64 hex digits) as its first
// 12 in the text format, which people read; JSON, which programs read,
// keeps them whole.
func shortIDs(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() != slog.KindString {
		return a
	}
	if v := a.Value.String(); (len(v) == 40 || len(v) == 64) && strings.Trim(v, "0123456789abcdef") == "" {
		a.Value = slog.StringValue(v[:12])
	}
	return a
}

// daemon is a configured ferry, ready to run.
type daemon struct {
	opts     *options // the global ones
	log      *slog.Logger
	registry *prometheus.Registry
	root     string
	limits   fetch.Limits
	sources  []sync.Source
	notify   *notifiers
	rollout  sync.Rollout
	store    *sync.Store
	syncer   *sync.Syncer
}

// build turns the configuration into a daemon. Every source URL and option
// is checked here, before the first network access; problems come back
// together. Each source gets its own backend, checks and notifiers from
// its own options; sources that share options share them.
func build(c *config, log *slog.Logger) (*daemon, error) {
	o := c.global
	root, err := filepath.Abs(o.root)
	if err != nil {
		return nil, fmt.Errorf("--root: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d := &daemon{opts: o, log: log, registry: reg, root: root, notify: &notifiers{}, rollout: o.rollout}
	// A source's rollback is asked for by its own notifiers, which alone
	// report refusals: the loop may allow it for all.
	d.rollout.RollbackOnReject = false

	limits := o.limits.WithDefaults()
	var errs []error
	checks := map[*options]sync.Validator{}
	tells := map[*options]*signal.Notifiers{}
	ignores := map[*options][]string{}
	// The scopes of the settings each options' sources use, for the
	// secret-file warnings: those of their kinds, and the endpoints'.
	inUse := map[*options]map[string]bool{o: {"api": c.cmd == cmdRun && o.httpAddr != ""}}
	for _, sc := range c.sources {
		so := sc.opts
		env := fetch.Env{StateDir: sync.StateDir(root, sc.name), Logger: log.With("source", sc.name), Limits: so.limits.WithDefaults(), Root: root}
		src, u, err := sources(so).Open(sc.url, env)
		if err != nil {
			scope := ""
			if u != nil {
				scope = u.Kind
			}
			errs = append(errs, labelled(sc.label, describe(so, scope, err, sc.key)))
		} else {
			if inUse[so] == nil {
				inUse[so] = map[string]bool{}
			}
			inUse[so][u.Kind] = true
		}
		ignore, seen := ignores[so]
		if !seen {
			ignore = so.ignore.split()
			if err := sync.CheckIgnore(ignore); err != nil {
				errs = append(errs, sc.errorf(fmt.Sprintf("%s: %v", sc.key("ignore"), err)))
			}
			ignores[so] = ignore
		}
		check, seen := checks[so]
		if !seen && so.checks.Enabled() {
			var cerr error
			if check, cerr = validate.New(so.checks); cerr != nil {
				errs = append(errs, sc.errorf(describe(so, "validate", cerr, sc.key)))
			}
			checks[so] = check
		}
		tell, seen := tells[so]
		if !seen {
			var terr error
			if tell, terr = d.notifiersOf(c.cmd, so); terr != nil {
				errs = append(errs, sc.errorf(describe(so, "signal", terr, sc.key)))
			}
			tells[so] = tell
		}
		if err == nil && tell != nil {
			d.sources = append(d.sources, sync.Source{Name: sc.name, URL: u.String(), Kind: u.Kind, Backend: src, Validator: check, PublishMode: sync.PublishMode(so.publishMode), Ignore: ignore, Limits: so.limits.WithDefaults()})
			d.notify.add(sc.name, tell)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	warned := map[string]bool{}
	for _, sc := range append([]sourceConfig{{opts: o, key: flagName}}, c.sources...) {
		warnExposedSecrets(sc.opts, inUse[sc.opts], sc.key, warned, log)
	}
	d.limits = limits
	return d, nil
}

// notifiersOf builds the notifiers of a source with options so. 'once'
// tells nobody: in an init container the app has not started.
func (d *daemon) notifiersOf(cmd string, so *options) (*signal.Notifiers, error) {
	var tell signal.Options
	if cmd != cmdOnce {
		tell = so.notify
		if so.rollout.RollbackOnReject {
			d.rollout.RollbackOnReject = true
			// open sets d.syncer before Run of the notifiers starts, the
			// only place a refusal comes from.
			tell.Refused = func(r signal.Refusal) { d.syncer.Refused(r) }
		}
	}
	tell.Logger, tell.Registerer = d.log, d.registry
	return signal.New(tell)
}

// open takes the root (its lock, its checks) and builds the sync loop.
func (d *daemon) open() error {
	store, err := sync.OpenStore(d.root, d.limits)
	if err != nil {
		return err
	}
	o := d.opts
	d.syncer, err = sync.New(sync.Config{
		Store: store, Sources: d.sources,
		Period: o.period, Keep: o.keep, Timeout: o.timeout,
		MaxFailures: o.maxFailures, OnceTimeout: o.onceTimeout, MaxStaleness: o.maxStaleness,
		VerifyPeriod: o.verifyPeriod, ReleaseMemory: true, Rollout: d.rollout,
		Settle: o.settle, GenerationLink: o.genLink,
		Notifiers: []sync.Notifier{d.notify}, Logger: d.log, Registerer: d.registry,
	})
	if err != nil {
		store.Close()
		return err
	}
	d.store = store
	return nil
}

// logBySource logs err at ERROR, one line per source it concerns (with
// its source attribute), and the rest in one line.
func logBySource(log *slog.Logger, msg string, err error) {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var se *sync.SourceError
		if errors.As(e, &se) {
			log.Error(msg, "source", se.Source, "error", se.Err)
		} else {
			log.Error(msg, "error", e)
		}
	}
}

func (d *daemon) once(ctx context.Context) int {
	start := time.Now()
	if err := d.syncer.Once(ctx); err != nil {
		logBySource(d.log, "sync failed", err)
		return exitFailed
	}
	d.log.Info("all sources published", "duration", time.Since(start).Round(time.Millisecond))
	return exitOK
}

func (d *daemon) run(ctx context.Context) int {
	// Deferred in this order so that on any return the context is cancelled
	// before waiting for the goroutines it stops.
	var wg gosync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	if d.opts.httpAddr != "" {
		ln, err := net.Listen("tcp", d.opts.httpAddr)
		if err != nil {
			d.log.Error("cannot serve endpoints", "addr", d.opts.httpAddr, "error", err)
			return exitUsage
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := api.Serve(ctx, ln, d.syncer, api.Options{
				Gatherer: d.registry, TokenFile: d.opts.syncTokenFile, APITokenFile: d.opts.apiTokenFile, Logger: d.log,
				Notify: d.notify.results,
			})
			if err != nil {
				d.log.Error("endpoints stopped", "error", err)
			}
		}()
	}
	wg.Go(func() {
		// After an error from Run the app is told nothing more: the daemon
		// must not go on as if it were.
		if err := d.notify.Run(ctx); err != nil {
			cancel(fmt.Errorf("notify: %w", err))
		}
	})

	d.log.Info("ferry started", "version", version, "root", d.opts.root, "sources", len(d.sources), "period", d.opts.period)
	err := d.syncer.Run(ctx)
	if cause := context.Cause(ctx); err == nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause // the notifiers stopped the loop
	}
	if err != nil {
		logBySource(d.log, "giving up", err)
		return exitFailed
	}
	d.log.Info("shutting down")
	return exitOK
}
