// Command benchcompare measures ferry against the git CLI, back to back in
// one run, on repositories it generates and serves itself over smart HTTP
// (git http-backend on 127.0.0.1): the figures issue 19 sets goals on.
// `make bench-compare` runs it; -scenarios and -runs pick a quick subset.
//
// Every command it measures runs under tools/measure, which it builds with
// the go command: a small process, so that the peak RSS read from the
// rusage is the command's own, not this program's (see tools/measure).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// options say what to measure and how often.
type options struct {
	ferry     string        // the ferry binary measured
	scenarios []string      // names from scenarios(), in the order given
	runs      int           // measured runs of each comparison
	warmups   int           // runs before those, not counted
	idleFor   time.Duration // how long ferry run idles before its RSS is read
	fleetSize int           // ferry run processes the fleet scenario aims at
	fleetFor  time.Duration // how long the fleet is observed
	workDir   string        // parent of the scratch directory
	versitygw string        // the S3 server of the s3 scenario
}

// scenario is one measurement and the table it prints. run keeps its
// data under dir, which is removed after it.
type scenario struct {
	name, about string
	run         func(b *bench, ctx context.Context, dir string) error
}

func scenarios() []scenario {
	return []scenario{
		{"small", "one-shot sync of the small repository: ferry once vs git clone --depth 1 + symlink", (*bench).oneShotSmall},
		{"large", "one-shot sync of the large repository: ferry once vs git clone --depth 1 + symlink", (*bench).oneShotLarge},
		{"ready", "ferry run, start -> /readyz 200 on the large repository, vs git clone --depth 1 + symlink", (*bench).ready},
		{"idle", "ferry run idle after a large sync: RSS and CPU at --period 1s and 30s", (*bench).idle},
		{"notify", "ferry run on the large repository: from the link swap to the app's notify (one file changed)", (*bench).notify},
		{"s3", "one-shot sync of an S3 prefix (versitygw on loopback): ferry once vs rclone sync + symlink", (*bench).s3},
		{"poll", "bytes and requests per idle poll of a 10,000-ref repository: ferry vs git ls-remote (protocol v2)", (*bench).poll},
		{"fleet", "many ferry run processes polling one origin every second (make bench)", (*bench).fleet},
	}
}

// defaultScenarios are what `make bench-compare` runs: all but the fleet.
const defaultScenarios = "small,large,ready,idle,notify,s3,poll"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o, err := parseOptions(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err == nil {
		err = run(ctx, o, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchcompare:", err)
		os.Exit(1)
	}
}

func parseOptions(args []string, out io.Writer) (options, error) {
	var o options
	var names string
	fs := flag.NewFlagSet("benchcompare", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.ferry, "ferry", "bin/ferry", "the ferry binary to measure (make build)")
	fs.StringVar(&names, "scenarios", defaultScenarios, "comma-separated scenarios: "+strings.Join(scenarioNames(), ", "))
	fs.IntVar(&o.runs, "runs", 5, "measured runs of each comparison")
	fs.IntVar(&o.warmups, "warmups", 1, "runs before the measured ones, not counted")
	fs.DurationVar(&o.idleFor, "idle", 30*time.Second, "how long ferry run idles after its sync before its RSS is read")
	fs.IntVar(&o.fleetSize, "fleet", 200, "ferry run processes the fleet scenario aims at (fewer when memory runs short)")
	fs.DurationVar(&o.fleetFor, "fleet-duration", 30*time.Second, "how long the fleet is observed")
	fs.StringVar(&o.versitygw, "versitygw", os.Getenv("FERRY_TEST_VERSITYGW"), "the versitygw binary the s3 scenario serves S3 with (make bench-compare builds it)")
	fs.StringVar(&o.workDir, "workdir", os.TempDir(), "where the scratch directory goes (a disk, not tmpfs: fsync costs count)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, n := range strings.Split(names, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if !slices.Contains(scenarioNames(), n) {
			return o, fmt.Errorf("-scenarios: unknown %q (want some of %s)", n, strings.Join(scenarioNames(), ", "))
		}
		o.scenarios = append(o.scenarios, n)
	}
	switch {
	case len(o.scenarios) == 0:
		return o, errors.New("-scenarios names none")
	case o.runs < 1 || o.warmups < 0:
		return o, errors.New("-runs must be at least 1 and -warmups not negative")
	case o.fleetSize < 1 || o.idleFor <= 0 || o.fleetFor <= 0:
		return o, errors.New("-fleet, -idle and -fleet-duration must be positive")
	}
	return o, nil
}

func scenarioNames() []string {
	var names []string
	for _, s := range scenarios() {
		names = append(names, s.name)
	}
	return names
}

// run measures every scenario of o in turn, printing each table as it is
// done. The scratch directory is removed at the end, whatever happens.
func run(ctx context.Context, o options, out io.Writer) error {
	b, err := newBench(ctx, o, out)
	if err != nil {
		return err
	}
	defer b.close()
	b.header()
	for _, s := range scenarios() {
		if !slices.Contains(o.scenarios, s.name) {
			continue
		}
		fmt.Fprintf(out, "\n== %s: %s\n", s.name, s.about)
		start := time.Now()
		dir := filepath.Join(b.scratch, s.name)
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			err = s.run(b, ctx, dir)
		}
		if rmErr := os.RemoveAll(dir); err == nil {
			err = rmErr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		fmt.Fprintf(out, "(%s took %s; %s)\n", s.name, time.Since(start).Round(time.Second), machineLoad())
	}
	return nil
}
