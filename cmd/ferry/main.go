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
	case "run", "once":
	default:
		fmt.Fprintf(stderr, "ferry: unknown command %q (want run, once or version; see 'ferry help')\n", cmd)
		return exitUsage
	}
	o, err := parse(cmd, args[1:], lookupEnv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		printErrors(stderr, err)
		return exitUsage
	}
	log, err := newLogger(o, stderr)
	if err != nil {
		printErrors(stderr, err)
		return exitUsage
	}
	d, err := build(o, cmd, log)
	if err != nil {
		printErrors(stderr, err)
		return exitUsage
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

func topUsage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  ferry run  --source [NAME=]URL ... --root DIR [flags]   sync forever
  ferry once --source [NAME=]URL ... --root DIR [flags]   sync once, exit
  ferry version

Run 'ferry run --help' for the flags.
`)
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
	ho := &slog.HandlerOptions{Level: level}
	if o.logFormat == "text" {
		return slog.New(slog.NewTextHandler(w, ho)), nil
	}
	return slog.New(slog.NewJSONHandler(w, ho)), nil
}

// daemon is a configured ferry, ready to run.
type daemon struct {
	opts     *options
	log      *slog.Logger
	registry *prometheus.Registry
	root     string
	limits   fetch.Limits
	sources  []sync.Source
	notify   *signal.Notifiers
	store    *sync.Store
	syncer   *sync.Syncer
}

// build turns options into a daemon. Every source URL and option is checked
// here, before the first network access; problems come back together.
func build(o *options, cmd string, log *slog.Logger) (*daemon, error) {
	named, err := o.namedSources()
	if err != nil {
		return nil, err
	}
	root, err := filepath.Abs(o.root)
	if err != nil {
		return nil, fmt.Errorf("--root: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d := &daemon{opts: o, log: log, registry: reg, root: root}

	limits := o.limits.WithDefaults()
	registry := sources(o)
	var srcs []sync.Source
	// The scopes of the settings this run uses, for the secret-file
	// warnings: those of its source kinds, and the endpoints'.
	inUse := map[string]bool{"api": cmd == "run" && o.httpAddr != ""}
	var errs []error
	// One set of checks for every source, until a configuration file
	// gives each its own.
	var checks sync.Validator
	if o.checks.Enabled() {
		c, err := validate.New(o.checks)
		if err != nil {
			errs = append(errs, errors.New(describe(o, "validate", err)))
		} else {
			checks = c
		}
	}
	ignore := o.ignore.split()
	if err := sync.CheckIgnore(ignore); err != nil {
		errs = append(errs, fmt.Errorf("--ignore: %w", err))
	}
	for _, n := range named {
		env := fetch.Env{StateDir: sync.StateDir(root, n.name), Logger: log.With("source", n.name), Limits: limits, Root: root}
		src, u, err := registry.Open(n.url, env)
		if err != nil {
			scope := ""
			if u != nil {
				scope = u.Kind
			}
			errs = append(errs, fmt.Errorf("--source %s: %s", n.name, describe(o, scope, err)))
			continue
		}
		srcs = append(srcs, sync.Source{Name: n.name, URL: u.String(), Backend: src, Validator: checks, Ignore: ignore})
		inUse[u.Kind] = true
	}

	// In 'once' mode the app has not started: there is no one to tell.
	var tell signal.Options
	if cmd == "run" {
		tell = o.notify
		if o.rollout.RollbackOnReject {
			// open sets d.syncer before Run of the notifiers starts, the
			// only place a refusal comes from.
			tell.Refused = func(r signal.Refusal) { d.syncer.Refused(r) }
		}
	}
	tell.Logger, tell.Registerer = log, reg
	notify, err := signal.New(tell)
	if err != nil {
		errs = append(errs, errors.New(describe(o, "signal", err)))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	warnExposedSecrets(o, inUse, log)
	d.limits, d.sources, d.notify = limits, srcs, notify
	return d, nil
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
		VerifyPeriod: o.verifyPeriod, ReleaseMemory: true, Rollout: o.rollout,
		Notifiers: []sync.Notifier{d.notify}, Logger: d.log, Registerer: d.registry,
	})
	if err != nil {
		store.Close()
		return err
	}
	d.store = store
	return nil
}

func (d *daemon) once(ctx context.Context) int {
	start := time.Now()
	if err := d.syncer.Once(ctx); err != nil {
		d.log.Error("sync failed", "error", err)
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
				Gatherer: d.registry, TokenFile: d.opts.syncTokenFile, Logger: d.log,
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

	d.log.Info("ferry started", "version", version, "root", d.opts.root, "sources", len(d.opts.sources), "period", d.opts.period)
	err := d.syncer.Run(ctx)
	if cause := context.Cause(ctx); err == nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause // the notifiers stopped the loop
	}
	if err != nil {
		d.log.Error("giving up", "error", err)
		return exitFailed
	}
	d.log.Info("shutting down")
	return exitOK
}
