package validate

import (
	"context"
	"fmt"
	"time"

	"github.com/ferrysync/ferry/internal/report"
	"github.com/ferrysync/ferry/internal/runcmd"
)

// detailLimit bounds the output quoted in an Error's one-line message; the
// log gets up to OutputLimit.
const detailLimit = 300

// command is Options.Command, split and found.
type command struct {
	*runcmd.Command
	timeout time.Duration
}

// parseCommand splits a command line into words as a POSIX shell would
// (quotes, backslashes), and refuses what only a shell could run: the
// distroless image has none.
func parseCommand(line string) ([]string, error) {
	argv, err := runcmd.Split(line)
	if err != nil {
		return nil, report.Fieldf("{Command} %q: %v", line, err)
	}
	return argv, nil
}

// newCommand returns nil for an empty line. A program named without a
// slash is looked up on PATH now; one with a slash is taken as written,
// relative to the staged tree when it is relative (a script in the
// revision).
func newCommand(line string, timeout time.Duration) (*command, error) {
	c, err := runcmd.Parse(line)
	if err != nil {
		return nil, report.Fieldf("{Command} %q: %v", line, err)
	}
	if c == nil {
		return nil, nil
	}
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	return &command{Command: c, timeout: timeout}, nil
}

// run runs the command on c. Exit status 0 accepts the revision; any other
// status, a signal, a failure to start it, or the timeout refuses it with
// an *Error. When ctx ends first, that is returned instead: the revision
// was not judged.
func (cm *command) run(ctx context.Context, c Candidate) error {
	out, err := cm.Run(ctx, runcmd.Run{
		Dir:         c.Dir,
		Env:         []string{"FERRY_STAGED_DIR=" + c.Dir, "FERRY_SOURCE=" + c.Source, "FERRY_REVISION=" + c.Revision},
		Timeout:     cm.timeout,
		OutputLimit: OutputLimit,
	})
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("validate command %w", err)
	}
	detail := fmt.Sprintf("%s: %v", cm, err)
	if o := runcmd.OneLine(out, detailLimit); o != "" {
		detail += ": " + o
	}
	return &Error{Check: CheckCommand, Detail: detail, Printed: out, Err: err}
}
