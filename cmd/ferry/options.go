package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/git"
	fhttp "github.com/ferrysync/ferry/fetch/http"
	"github.com/ferrysync/ferry/fetch/oci"
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
	config       string
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
	settle       time.Duration
	genLink      string
	publishMode  string
	limits       fetch.Limits
	ignore       listFlag

	httpAddr      string
	syncTokenFile string
	apiTokenFile  string

	notify  signal.Options
	checks  validate.Options
	rollout sync.Rollout

	logFormat string
	logLevel  string

	http fhttp.Options
	s3   s3.Options
	git  git.Options
	oci  oci.Options
}

// flagSet declares the settings cmd uses as flags, bound to o; for
// cmdCheck, every setting of the table.
func flagSet(o *options, cmd string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ferry "+cmd, flag.ContinueOnError)
	fs.SetOutput(out)
	for _, s := range settings(o) {
		if s.usedBy(cmd) {
			s.declare(fs, s.flag)
		}
	}
	return fs
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

// validateGlobal checks the settings that hold for the whole process;
// fileSources says that a --config file lists the sources.
func (o *options) validateGlobal(fileSources bool) []error {
	var errs []error
	if len(o.sources) == 0 && !fileSources {
		errs = append(errs, errors.New("--source is required (or sources in a --config file)"))
	}
	if o.root == "" {
		errs = append(errs, errors.New("--root is required"))
	}
	if !sync.ValidName(o.link) {
		errs = append(errs, fmt.Errorf("--link %q: want %s", o.link, sync.NameRule))
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
	if o.settle <= 0 {
		errs = append(errs, errors.New("--settle must be positive"))
	}
	if o.genLink != "" && !sync.ValidName(o.genLink) {
		errs = append(errs, fmt.Errorf("--generation-link %q: want %s", o.genLink, sync.NameRule))
	}
	if o.maxFailures < 0 || o.maxStaleness < 0 {
		errs = append(errs, errors.New("--max-failures and --max-staleness must not be negative (0: never)"))
	}
	if err := o.rollout.Validate(); err != nil {
		errs = append(errs, errors.New(describe(o, "sync", err, flagName)))
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

// validateSource checks the settings each source may have its own of,
// naming them with key.
func (o *options) validateSource(key func(string) string) []error {
	var errs []error
	if o.limits.MaxFiles < 1 || o.limits.MaxBytes < 1 || o.limits.MaxFileSize < 1 {
		errs = append(errs, fmt.Errorf("%s, %s and %s must be positive", key("max-bytes"), key("max-files"), key("max-file-size")))
	}
	if o.http.MaxBodyBytes < 1 {
		errs = append(errs, fmt.Errorf("%s must be positive", key("http-max-body")))
	}
	// 'once' tells no one, but these are checked all the same: the
	// environment or file it reads is often the one 'run' reads.
	if err := o.notify.Validate(); err != nil {
		errs = append(errs, errors.New(describe(o, "signal", err, key)))
	}
	if err := o.checks.Validate(); err != nil {
		errs = append(errs, errors.New(describe(o, "validate", err, key)))
	}
	if err := sync.PublishMode(o.publishMode).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%s %q: want symlink or exchange", key("publish-mode"), o.publishMode))
	}
	if o.rollout.RollbackOnReject {
		// Only an HTTP endpoint or a command answers; a signal or a touched
		// file cannot say no.
		if len(o.notify.URLs) == 0 && o.notify.ExecCommand == "" {
			errs = append(errs, fmt.Errorf("%s needs %s or %s: only an app's reload endpoint or a reload command can refuse a revision", key("rollback-on-reject"), key("notify-url"), key("exec-command")))
		}
		if o.keep < 2 {
			errs = append(errs, fmt.Errorf("%s needs %s of at least 2: the previous revision is what it puts back", key("rollback-on-reject"), flagName("keep")))
		}
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
		m := sourceName.FindStringSubmatch(s)
		if m == nil {
			// NAME=URL with a name that cannot be one ("../evil=https://..."):
			// a bad name, not a URL without a scheme.
			if name, url, ok := strings.Cut(s, "="); ok && !strings.Contains(name, ":") && (strings.Contains(url, "://") || strings.Contains(url, "::")) {
				m = []string{s, name, url}
			}
		}
		if m != nil {
			if !sync.ValidName(m[1]) {
				errs = append(errs, fmt.Errorf("--source %s: invalid name %q (%s)", fetch.RedactString(m[2]), m[1], sync.NameRule))
			}
			out = append(out, namedSource{m[1], m[2]})
			continue
		}
		unnamed++
		out = append(out, namedSource{o.link, s})
	}
	if unnamed > 0 && len(o.sources) > 1 {
		// One mistake, one line: the names the unnamed would share are
		// not reported as used twice too.
		return out, errors.Join(append(errs, errors.New("--source: name each source (NAME=URL) when there are several"))...)
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
