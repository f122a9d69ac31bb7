package validate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	gosync "sync"
	"syscall"
	"time"

	"github.com/mattn/go-shellwords"

	"github.com/ferrysync/ferry/internal/report"
)

const (
	// waitDelay is how long a finished or killed command's output pipes
	// may stay open (held by a process it left behind) before ferry stops
	// reading them.
	waitDelay = 2 * time.Second
	// detailLimit bounds the output quoted in an Error's one-line message;
	// the log gets up to OutputLimit.
	detailLimit = 300
)

// command is Options.Command, split and found.
type command struct {
	argv    []string
	path    string // argv[0] resolved on PATH, or as written when it has a slash
	timeout time.Duration
}

// parseCommand splits a command line into words as a POSIX shell would
// (quotes, backslashes), and refuses what only a shell could run: the
// distroless image has none.
func parseCommand(line string) ([]string, error) {
	if strings.TrimSpace(line) == "" {
		return nil, nil
	}
	p := shellwords.NewParser()
	argv, err := p.Parse(line)
	if err != nil {
		return nil, report.Fieldf("{Command} %q: %v", line, err)
	}
	if p.Position >= 0 {
		return nil, report.Fieldf("{Command} %q: %q needs a shell, and the command runs without one (run a shell yourself, e.g. sh -c '...', where the image has one)", line, line[p.Position:])
	}
	if len(argv) == 0 {
		return nil, report.Fieldf("{Command} %q: no program", line)
	}
	return argv, nil
}

// newCommand returns nil for an empty line. A program named without a
// slash is looked up on PATH now; one with a slash is taken as written,
// relative to the staged tree when it is relative (a script in the
// revision).
func newCommand(line string, timeout time.Duration) (*command, error) {
	argv, err := parseCommand(line)
	if err != nil || argv == nil {
		return nil, err
	}
	c := &command{argv: argv, path: argv[0], timeout: timeout}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if !strings.Contains(argv[0], "/") {
		if c.path, err = exec.LookPath(argv[0]); err != nil {
			return nil, report.Fieldf("{Command} %q: %s: not found on PATH", line, argv[0])
		}
	}
	return c, nil
}

// run runs the command on c. Exit status 0 accepts the revision; any other
// status, a signal, a failure to start it, or the timeout refuses it with
// an *Error. When ctx ends first, that is returned instead: the revision
// was not judged.
func (cm *command) run(ctx context.Context, c Candidate) error {
	tctx, cancel := context.WithTimeout(ctx, cm.timeout)
	defer cancel()
	cmd := exec.CommandContext(tctx, cm.path, cm.argv[1:]...)
	cmd.Args[0] = cm.argv[0]
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(),
		"FERRY_STAGED_DIR="+c.Dir, "FERRY_SOURCE="+c.Source, "FERRY_REVISION="+c.Revision)
	out := &capped{limit: OutputLimit}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so that the timeout ends whatever it started
	// (a shell script's children), not just the program ferry ran.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killGroup(cmd) }
	cmd.WaitDelay = waitDelay
	err := cmd.Run()
	if cmd.Process != nil {
		_ = killGroup(cmd) // leave nothing running behind it
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil // it exited 0; something it left held its output
	}
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("validate command %s: %w", cm.argv[0], ctx.Err())
	}
	why := err.Error()
	switch {
	case tctx.Err() != nil:
		why = fmt.Sprintf("timed out after %s", cm.timeout)
	case cmd.ProcessState == nil:
		// It did not start: not found in the tree, not executable.
		why = strings.TrimPrefix(why, "fork/exec ")
	}
	detail := fmt.Sprintf("%s: %s", strings.Join(cm.argv, " "), why)
	if o := oneLine(out.String(), detailLimit); o != "" {
		detail += ": " + o
	}
	return &Error{Check: CheckCommand, Detail: detail, Printed: out.String(), Err: err}
}

// killGroup kills the command's process group.
func killGroup(cmd *exec.Cmd) error {
	err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// oneLine joins the non-blank lines of s with " | " and cuts the result to
// about limit bytes: what a check printed, fit for one log line.
func oneLine(s string, limit int) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	j := strings.Join(parts, " | ")
	if len(j) > limit {
		cut := limit
		for cut > 0 && j[cut]&0xC0 == 0x80 { // not inside a UTF-8 sequence
			cut--
		}
		j = j[:cut] + "…"
	}
	return j
}

// capped keeps the first limit bytes written to it and counts the rest.
type capped struct {
	mu      gosync.Mutex
	limit   int
	buf     []byte
	dropped int64
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.limit - len(c.buf)
	take := min(room, len(p))
	c.buf = append(c.buf, p[:take]...)
	c.dropped += int64(len(p) - take)
	return len(p), nil
}

// String returns what was kept, with a note of what was not.
func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dropped > 0 {
		return fmt.Sprintf("%s\n[%d more bytes not kept]", c.buf, c.dropped)
	}
	return string(c.buf)
}
