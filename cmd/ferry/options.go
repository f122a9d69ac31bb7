package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/git"
	fhttp "github.com/ferrysync/ferry/fetch/http"
	"github.com/ferrysync/ferry/fetch/s3"
	"github.com/ferrysync/ferry/signal"
	"github.com/ferrysync/ferry/sync"
	"github.com/ferrysync/ferry/validate"
)

// Defaults that are not the sync package's.
const (
	defaultLink = "current"
	envPrefix   = "FERRY_"
)

// options is everything the command line and environment can say.
type options struct {
	sources      listFlag
	root         string
	link         string
	period       time.Duration
	keep         int
	timeout      time.Duration
	onceTimeout  time.Duration
	maxFailures  int
	maxStaleness time.Duration
	verifyPeriod time.Duration
	limits       fetch.Limits
	ignore       listFlag

	httpAddr      string
	syncTokenFile string

	notify  signal.Options
	checks  validate.Options
	rollout sync.Rollout

	logFormat string
	logLevel  string

	http fhttp.Options
	s3   s3.Options
	git  git.Options
}

// flagSet declares every setting of the table as a flag.
func flagSet(o *options, cmd string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ferry "+cmd, flag.ContinueOnError)
	fs.SetOutput(out)
	for _, s := range settings(o) {
		s.declare(fs, s.flag)
	}
	return fs
}

// parse reads flags, then fills every flag not given from FERRY_<FLAG>. All
// problems are collected and returned together.
// --help prints the usage to help; a bad flag is returned as one line.
func parse(cmd string, args []string, lookupEnv func(string) (string, bool), help io.Writer) (*options, error) {
	o := &options{}
	fs := flagSet(o, cmd, io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(help)
			usage(fs, cmd)
			return nil, err
		}
		return nil, fmt.Errorf("%w (see 'ferry %s --help')", err, cmd)
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		env := envName(f.Name)
		// Set but empty counts: FERRY_HTTP_ADDR= turns the endpoints off.
		v, ok := lookupEnv(env)
		if !ok {
			return
		}
		values := []string{v}
		if _, ok := f.Value.(*listFlag); ok {
			values = splitLines(v)
		}
		for _, val := range values {
			if err := f.Value.Set(val); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
		}
	})
	if o.rollout.InstanceID == "" {
		// The pod's name in Kubernetes: distinct across a Deployment.
		o.rollout.InstanceID, _ = os.Hostname()
	}
	errs = append(errs, o.validate()...)
	return o, errors.Join(errs...)
}

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func splitLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func (o *options) validate() []error {
	var errs []error
	if len(o.sources) == 0 {
		errs = append(errs, errors.New("--source is required"))
	}
	if o.root == "" {
		errs = append(errs, errors.New("--root is required"))
	}
	if !sync.ValidName(o.link) {
		errs = append(errs, fmt.Errorf("--link %q: must match [A-Za-z0-9._-]+ and not be ., .. or .ferry", o.link))
	}
	if o.httpAddr != "" {
		if _, _, err := net.SplitHostPort(o.httpAddr); err != nil {
			errs = append(errs, fmt.Errorf("--http-addr %q: want HOST:PORT or :PORT", o.httpAddr))
		}
	}
	if o.period <= 0 {
		errs = append(errs, errors.New("--period must be positive"))
	}
	if o.keep < 1 {
		errs = append(errs, errors.New("--keep must be at least 1"))
	}
	if o.timeout <= 0 || o.onceTimeout <= 0 {
		errs = append(errs, errors.New("--timeout and --once-timeout must be positive"))
	}
	if o.verifyPeriod < 0 {
		errs = append(errs, errors.New("--verify-period must not be negative (0 turns the deep check off)"))
	}
	if o.maxFailures < 0 || o.maxStaleness < 0 || o.limits.MaxFiles < 1 || o.limits.MaxBytes < 1 || o.limits.MaxFileSize < 1 || o.http.MaxBodyBytes < 1 {
		errs = append(errs, errors.New("--max-* limits must be positive (--max-failures and --max-staleness may be 0)"))
	}
	// 'once' tells no one, but its flags are checked all the same.
	if err := o.notify.Validate(); err != nil {
		errs = append(errs, errors.New(describe(o, "signal", err)))
	}
	if err := o.checks.Validate(); err != nil {
		errs = append(errs, errors.New(describe(o, "validate", err)))
	}
	if err := o.rollout.Validate(); err != nil {
		errs = append(errs, errors.New(describe(o, "sync", err)))
	}
	if o.rollout.RollbackOnReject {
		// Only an HTTP endpoint answers; a signal cannot say no.
		if len(o.notify.URLs) == 0 {
			errs = append(errs, errors.New("--rollback-on-reject needs --notify-url: only an app's reload endpoint can refuse a revision"))
		}
		if o.keep < 2 {
			errs = append(errs, errors.New("--rollback-on-reject needs --keep of at least 2: the previous revision is what it puts back"))
		}
	}
	switch o.logFormat {
	case "json", "text":
	default:
		errs = append(errs, fmt.Errorf("--log-format %q: want json or text", o.logFormat))
	}
	if _, err := parseLevel(o.logLevel); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// namedSource is one --source, split into its link name and URL.
type namedSource struct{ name, url string }

var sourceName = regexp.MustCompile(`^([A-Za-z0-9._-]+)=(.+)$`)

// namedSources splits NAME=URL; a single unnamed source takes --link.
func (o *options) namedSources() ([]namedSource, error) {
	var out []namedSource
	var errs []error
	unnamed := 0
	for _, s := range o.sources {
		if m := sourceName.FindStringSubmatch(s); m != nil {
			if !sync.ValidName(m[1]) {
				errs = append(errs, fmt.Errorf("--source %s: invalid name %q", fetch.RedactString(m[2]), m[1]))
			}
			out = append(out, namedSource{m[1], m[2]})
			continue
		}
		unnamed++
		out = append(out, namedSource{o.link, s})
	}
	if unnamed > 0 && len(o.sources) > 1 {
		errs = append(errs, errors.New("--source: name each source (NAME=URL) when there are several"))
	}
	seen := map[string]bool{}
	for _, s := range out {
		if seen[s.name] {
			errs = append(errs, fmt.Errorf("--source: name %q used twice", s.name))
		}
		seen[s.name] = true
	}
	return out, errors.Join(errs...)
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	if strings.TrimSpace(v) == "" {
		return errors.New("empty value")
	}
	*l = append(*l, strings.TrimSpace(v))
	return nil
}

// split returns the values, each cut at its commas (--ignore 'a,b').
func (l *listFlag) split() []string {
	var out []string
	for _, v := range *l {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// sizeFlag is a byte count with an optional unit suffix.
type sizeFlag int64

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9,
	"ki": 1 << 10, "kib": 1 << 10, "mi": 1 << 20, "mib": 1 << 20, "gi": 1 << 30, "gib": 1 << 30,
}

var sizePattern = regexp.MustCompile(`^\s*([0-9]+)\s*([A-Za-z]*)\s*$`)

// String prints the largest binary unit that divides the size evenly, so
// --help shows 1Gi, not 1073741824.
func (s *sizeFlag) String() string {
	n := int64(*s)
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}
func (s *sizeFlag) Set(v string) error {
	m := sizePattern.FindStringSubmatch(v)
	if m == nil {
		return fmt.Errorf("invalid size %q", v)
	}
	unit, ok := sizeUnits[strings.ToLower(m[2])]
	if !ok {
		return fmt.Errorf("invalid size unit %q", m[2])
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n > (1<<62)/unit {
		return fmt.Errorf("invalid size %q", v)
	}
	*s = sizeFlag(n * unit)
	return nil
}

func usage(fs *flag.FlagSet, cmd string) {
	w := fs.Output()
	fmt.Fprintf(w, "Usage: ferry %s --source [NAME=]URL ... --root DIR [flags]\n\n", cmd)
	fmt.Fprintf(w, "Every flag may also come from the environment as %sFLAG (upper case, dashes\n", envPrefix)
	fmt.Fprintf(w, "to underscores); the command line wins.\n\n%s\nFlags:\n", sourceHelp)
	fs.PrintDefaults()
}
