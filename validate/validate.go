package validate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ferrysync/ferry/internal/report"
	"github.com/ferrysync/ferry/internal/runcmd"
)

// Defaults the command line starts from.
const (
	// DefaultTimeout bounds one run of the check command.
	DefaultTimeout = 30 * time.Second
	// OutputLimit is how much of the command's output is kept for the log;
	// the rest is read and dropped, so a chatty check cannot fill memory.
	OutputLimit = 64 << 10
)

// The checks, as Options.Checks names them and as Error.Check reports them.
// They are also the reasons of ferry_rejected_total.
const (
	CheckSyntax  = "syntax"
	CheckSchema  = "schema"
	CheckCommand = "command"
)

// Options says which checks a staged revision must pass. The zero value
// checks nothing.
type Options struct {
	// Checks is a comma-separated list of built-in checks: "syntax" parses
	// every .json, .yaml, .yml (each document) and .toml file.
	Checks string
	// Schemas are rules "GLOB=FILE": every file of the tree whose path
	// (slash-separated, relative to the tree) matches GLOB must validate
	// against the JSON Schema (draft 2020-12 unless it says otherwise) in
	// FILE, a path on ferry's own filesystem read once, when the Checker
	// is built. GLOB is path.Match's, where "**" also matches any number
	// of directories. YAML and TOML files are checked as the JSON values
	// they decode to.
	Schemas []string
	// Command is a command line, split into words as a POSIX shell would
	// but run without one. It runs with the staged tree as its working
	// directory and FERRY_STAGED_DIR, FERRY_SOURCE and FERRY_REVISION
	// added to ferry's environment; exit status 0 accepts the revision.
	Command string
	// Timeout bounds one run of Command; zero takes DefaultTimeout. The
	// command's whole process group is killed when it passes.
	Timeout time.Duration
}

// Validate reports every problem of o together, naming fields with {Field}
// (report.FieldError). It reads no file and runs nothing.
func (o Options) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, report.Fieldf(format, args...)) }
	for _, c := range splitChecks(o.Checks) {
		if c != CheckSyntax {
			add("{Checks} %q: unknown check (want %s)", c, CheckSyntax)
		}
	}
	for _, s := range o.Schemas {
		if _, err := parseRule(s); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := parseCommand(o.Command); err != nil {
		errs = append(errs, err)
	}
	if o.Timeout < 0 {
		add("{Timeout} must not be negative")
	}
	return errors.Join(errs...)
}

// Enabled reports whether o asks for any check at all.
func (o Options) Enabled() bool {
	return len(splitChecks(o.Checks)) > 0 || len(o.Schemas) > 0 || strings.TrimSpace(o.Command) != ""
}

func splitChecks(s string) []string {
	var out []string
	for _, c := range strings.Split(s, ",") {
		if c = strings.TrimSpace(c); c != "" {
			out = append(out, c)
		}
	}
	return out
}

// Candidate is a staged revision about to be published. The tree under
// Dir is complete; checks read it and must not change it.
type Candidate struct {
	Source   string // the source's name, ROOT/NAME's NAME
	Revision string
	Dir      string // the staged tree
}

// Checker runs the checks of its Options on a Candidate. It is safe for
// concurrent use: one Checker may serve several sources.
type Checker struct {
	syntax  bool
	schemas []*schemaRule
	command *command
}

// New checks o, compiles its schemas and finds its command. A schema that
// does not compile or a command that is not on PATH is reported here, as a
// configuration error, before any revision is fetched.
func New(o Options) (*Checker, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	c := &Checker{syntax: len(splitChecks(o.Checks)) > 0}
	var errs []error
	for _, s := range o.Schemas {
		r, err := compileRule(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.schemas = append(c.schemas, r)
	}
	cmd, err := newCommand(o.Command, o.Timeout)
	if err != nil {
		errs = append(errs, err)
	}
	c.command = cmd
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// Validate runs the checks on c, cheapest first, and returns the first
// refusal as an *Error. Any other error (the tree could not be read, ctx
// ended) says the checks could not run, not that the revision is bad.
func (ch *Checker) Validate(ctx context.Context, c Candidate) error {
	if ch.syntax || len(ch.schemas) > 0 {
		if err := ch.checkFiles(ctx, c.Dir); err != nil {
			return err
		}
	}
	if ch.command != nil {
		return ch.command.run(ctx, c)
	}
	return nil
}

// Error is a revision refused by a check. Its message is one line that
// starts with the check's name: "syntax: conf/app.yaml:3:1: found
// character that cannot start any token".
type Error struct {
	// Check is the check that refused it: CheckSyntax, CheckSchema or
	// CheckCommand.
	Check string
	// File is the refused file, relative to the tree ("" for the command),
	// with its Line and Column when the parser knows them (else 0).
	File         string
	Line, Column int
	// Detail says what is wrong, in one line.
	Detail string
	// Printed is what the command printed, up to OutputLimit.
	Printed string
	// Err is the library's or the process's own error, when there is one.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Check)
	b.WriteString(": ")
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
			if e.Column > 0 {
				fmt.Fprintf(&b, ":%d", e.Column)
			}
		}
		b.WriteString(": ")
	}
	// The detail may quote the document (a value a pattern refused, a
	// duplicate key): it is cut, as a command's output is.
	b.WriteString(runcmd.OneLine(report.FirstLine(e.Detail), detailLimit))
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Reason is the check's name: the revision was refused for its content.
func (e *Error) Reason() string { return e.Check }

// Output returns what the command printed, for the log.
func (e *Error) Output() string { return e.Printed }
