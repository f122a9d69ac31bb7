package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
)

// Where a setting's value came from, as 'ferry check' shows it.
const (
	fromDefault = "default"
	fromFlag    = "flag"
	fromEnv     = "env"
	fromFile    = "file"
)

// value is a setting as given, before it is parsed into options: one
// string, or one per element of a list.
type value struct {
	vals  []string
	from  string // fromFlag, fromEnv or fromFile
	where string // --root, FERRY_ROOT or FILE:LINE:COL
}

// config is a command's effective configuration: the global options and
// each source with its own options.
type config struct {
	cmd  string
	file *fileConfig // nil without --config
	// values are the settings given by flags, environment and the file's
	// top level: the global ones, and the defaults of every source.
	values map[string]value
	global *options
	flags  *flag.FlagSet // bound to global
	// unused are the flags given that cmd has no use for.
	unused  []string
	sources []sourceConfig
}

// sourceConfig is one source and the options it runs with.
type sourceConfig struct {
	name, url string
	where     string // FILE:LINE:COL of a file's source
	// label introduces the source in errors: "--source NAME" or
	// "FILE:LINE:COL: source NAME".
	label string
	opts  *options
	flags *flag.FlagSet // bound to opts
	// own are the settings the source's entry in the file gives.
	own map[string]value
	// key names a setting in this source's errors: "--git-password-file"
	// for a source of the command line, "git-password-file" in a file.
	key func(flag string) string
	// shared says that opts are the global options, which every source of
	// the command line shares: their problems are not the source's.
	shared bool
}

// errorf returns a problem of the source's options, introduced by its
// label unless the options are shared.
func (sc sourceConfig) errorf(msg string) error {
	if sc.shared {
		return errors.New(msg)
	}
	return labelled(sc.label, msg)
}

// labelled puts label in front of every line of msg: one line is one
// problem, and each must say where it is.
func labelled(label, msg string) error {
	lines := strings.Split(msg, "\n")
	for i, l := range lines {
		lines[i] = label + ": " + l
	}
	return errors.New(strings.Join(lines, "\n"))
}

func flagName(flag string) string { return "--" + flag }
func keyName(flag string) string  { return flag }

// parse reads cmd's flags, then the environment (FERRY_<FLAG>, for every
// setting: a pod's environment is often shared by 'once' and 'run'), then
// the --config file, and resolves them into each source's options. All
// problems are collected and returned together. --help prints cmd's usage
// to help and returns flag.ErrHelp; a bad flag is returned as one line.
func parse(cmd string, args []string, lookupEnv func(string) (string, bool), help io.Writer) (*config, error) {
	// Every command accepts every flag, so that one argument list serves
	// an init container's 'once' and its sidecar's 'run'; its help lists
	// only its own, and main warns about the others.
	fs := flagSet(&options{}, cmdCheck, io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(flagSet(&options{}, cmd, help), cmd)
			return nil, err
		}
		// The flag package says "flag -period" and "parse error"; the
		// help says --period, and the environment's errors what a value
		// looks like.
		msg := err.Error()
		if m := badValue.FindStringSubmatch(msg); m != nil {
			msg = fmt.Sprintf("--%s: %q does not parse (want a value like %q)", m[2], m[1], fs.Lookup(m[2]).DefValue)
		}
		msg = unknownFlag.ReplaceAllString(msg, "unknown flag --$1")
		msg = strings.ReplaceAll(msg, "for flag -", "for flag --")
		return nil, fmt.Errorf("%s (see 'ferry %s --help')", msg, cmd)
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	c := &config{cmd: cmd, values: map[string]value{}}
	used := flagSet(&options{}, cmd, io.Discard)
	fs.Visit(func(f *flag.Flag) {
		c.values[f.Name] = value{vals: valuesOf(f.Value), from: fromFlag, where: flagName(f.Name)}
		if used.Lookup(f.Name) == nil {
			c.unused = append(c.unused, flagName(f.Name))
		}
	})
	flagSet(&options{}, cmdCheck, io.Discard).VisitAll(func(f *flag.Flag) {
		if _, given := c.values[f.Name]; given {
			return
		}
		env := envName(f.Name)
		// Set but empty counts: FERRY_HTTP_ADDR= turns the endpoints off.
		v, ok := lookupEnv(env)
		if !ok {
			return
		}
		vals := []string{v}
		if _, isList := f.Value.(*listFlag); isList {
			if vals = splitLines(v); len(vals) == 0 {
				return
			}
		}
		c.values[f.Name] = value{vals: vals, from: fromEnv, where: env}
	})
	if v, ok := c.values["config"]; ok && v.vals[0] != "" {
		file, ferrs := readConfigFile(v.vals[0])
		errs = append(errs, ferrs...)
		if file != nil {
			c.file = file
			errs = append(errs, c.merge()...)
		}
	}
	errs = append(errs, c.resolve()...)
	return c, errors.Join(errs...)
}

// unknownFlag is the flag package's error for a flag it does not know.
var unknownFlag = regexp.MustCompile(`flag provided but not defined: -+(\S+)`)

// badValue is the flag package's error for a value its parser refused.
var badValue = regexp.MustCompile(`^invalid value "(.*)" for flag -([a-z0-9-]+): parse error$`)

// valuesOf returns what a parsed flag holds as the strings that give it
// back: each element of a list, the one value of anything else.
func valuesOf(v flag.Value) []string {
	if l, ok := v.(*listFlag); ok {
		return slices.Clone(*l)
	}
	return []string{v.String()}
}

// merge takes the file's top level into the values. A setting given both
// there and by a flag or the environment must say the same thing, and a
// file that lists sources leaves no room for --source.
func (c *config) merge() []error {
	var errs []error
	if src, ok := c.values["source"]; ok && len(c.file.sources) > 0 {
		errs = append(errs, fmt.Errorf("%s: sources conflicts with %s: give the sources in the file or on the command line, not both", c.file.sourcesAt, src.where))
	}
	for _, s := range settings(&options{}) {
		fv, inFile := c.file.top[s.flag]
		if !inFile {
			continue
		}
		given, ok := c.values[s.flag]
		if !ok {
			c.values[s.flag] = fv
			continue
		}
		if a, b := canonical(s.flag, fv), canonical(s.flag, given); a != b {
			errs = append(errs, fmt.Errorf("%s: %s %q conflicts with %s %q: set it one way", fv.where, s.flag, a, given.where, b))
		}
	}
	return errs
}

// canonical is v as its flag prints it once parsed ("1m0s" for "60s"),
// so that two spellings of one value do not conflict.
func canonical(name string, v value) string {
	fs := flagSet(&options{}, cmdCheck, io.Discard)
	for _, s := range v.vals {
		if fs.Set(name, s) != nil {
			return strings.Join(v.vals, ",")
		}
	}
	return fs.Lookup(name).Value.String()
}

// newOptions returns options with every default, and the flags bound to
// them: the only way to set them later (declaring a flag again would reset
// its field to the default).
func newOptions() (*options, *flag.FlagSet) {
	o := &options{}
	return o, flagSet(o, cmdCheck, io.Discard)
}

// apply sets every value of vals on o through fs, its flags, in the
// table's order, and returns what does not parse, each problem named by
// where its value came from.
func apply(o *options, fs *flag.FlagSet, vals map[string]value) []error {
	var errs []error
	for _, s := range settings(o) {
		v, ok := vals[s.flag]
		if !ok {
			continue
		}
		if l, isList := fs.Lookup(s.flag).Value.(*listFlag); isList {
			*l = nil // a source's list replaces the one it inherits
		}
		f := fs.Lookup(s.flag)
		for _, x := range v.vals {
			before := f.Value.String()
			if err := fs.Set(s.flag, x); err != nil {
				// The flag package leaves a zero behind: put back what was
				// there, so the one mistake is reported once, not again as
				// the zero it left ("must be positive").
				if _, isList := f.Value.(*listFlag); !isList {
					f.Value.Set(before)
				}
				if err.Error() == "parse error" { // the flag package's word for it
					err = fmt.Errorf("%q does not parse (want a value like %q)", x, f.DefValue)
				}
				if v.from == fromFile {
					err = fmt.Errorf("%s: %s: %w", v.where, s.flag, err)
				} else {
					err = fmt.Errorf("%s: %w", v.where, err)
				}
				errs = append(errs, err)
			}
		}
	}
	if o.rollout.InstanceID == "" {
		// The pod's name in Kubernetes: distinct across a Deployment.
		o.rollout.InstanceID, _ = os.Hostname()
	}
	return errs
}

// resolve builds the global options and each source's, and checks them.
func (c *config) resolve() []error {
	c.global, c.flags = newOptions()
	errs := apply(c.global, c.flags, c.values)
	errs = append(errs, c.global.validateGlobal(c.fileSources())...)
	if !c.fileSources() {
		named, err := c.global.namedSources()
		if err != nil {
			errs = append(errs, err)
		}
		for _, n := range named {
			c.sources = append(c.sources, sourceConfig{name: n.name, url: n.url, label: "--source " + n.name, opts: c.global, flags: c.flags, key: flagName, shared: true})
		}
		return append(errs, c.global.validateSource(flagName)...)
	}
	// Each source's own problems, and those of what it inherits, once per
	// problem: a bad top-level default is not repeated for every source.
	var order []string
	bySource := map[string][]string{}
	for _, fsrc := range c.file.sources {
		name := fsrc.name
		if name == "" {
			name = c.global.link
		}
		o, fs := newOptions()
		apply(o, fs, c.values) // checked above, as the global options
		errs = append(errs, apply(o, fs, fsrc.values)...)
		sc := sourceConfig{name: name, url: fsrc.url, where: fsrc.where, label: fsrc.where + ": source " + name, opts: o, flags: fs, own: fsrc.values, key: keyName}
		c.sources = append(c.sources, sc)
		for _, err := range o.validateSource(keyName) {
			msg := err.Error()
			if _, seen := bySource[msg]; !seen {
				order = append(order, msg)
			}
			bySource[msg] = append(bySource[msg], sc.label)
		}
	}
	for _, msg := range order {
		labels := bySource[msg]
		label := labels[0]
		if len(labels) > 1 {
			label = fmt.Sprintf("%s (and %d more sources)", labels[0], len(labels)-1)
		}
		errs = append(errs, labelled(label, msg))
	}
	return errs
}

// fileSources reports whether the sources come from the file.
func (c *config) fileSources() bool { return c.file != nil && len(c.file.sources) > 0 }
