// Package runcmd runs a command line the way ferry's hooks do: split into
// words as a POSIX shell would, run without one (the distroless image has
// none), in a process group of its own that a timeout kills whole, with its
// output kept up to a limit. The validate command and the exec hook share it.
package runcmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mattn/go-shellwords"
)

// waitDelay is how long a finished or killed command's output pipes may
// stay open (held by a process it left behind) before ferry stops reading
// them.
const waitDelay = 2 * time.Second

// ErrTimeout is wrapped by the error of a run that outlasted its timeout.
var ErrTimeout = errors.New("timed out")

// Split splits a command line into words as a POSIX shell would (quotes,
// backslashes) and refuses what only a shell could run: operators,
// redirections, substitutions. An empty line gives no words and no error.
// The error does not repeat line: the caller names it with its field.
func Split(line string) ([]string, error) {
	if strings.TrimSpace(line) == "" {
		return nil, nil
	}
	p := shellwords.NewParser()
	argv, err := p.Parse(line)
	if err != nil {
		return nil, err
	}
	if p.Position >= 0 {
		return nil, fmt.Errorf("%q needs a shell, and the command runs without one (run a shell yourself, e.g. sh -c '...', where the image has one)", line[p.Position:])
	}
	if len(argv) == 0 {
		return nil, errors.New("no program")
	}
	return argv, nil
}

// Command is a command line, split and its program found.
type Command struct {
	// Argv is the command line's words; Argv[0] is the program as written.
	Argv []string
	// Path is the program: Argv[0] found on PATH, or as written when it
	// holds a slash (then relative to the working directory of each run).
	Path string
}

// Parse splits line and looks up a program named without a slash on PATH,
// now, so that a missing one is a configuration error at start. It returns
// nil for an empty line.
func Parse(line string) (*Command, error) {
	argv, err := Split(line)
	if err != nil || argv == nil {
		return nil, err
	}
	c := &Command{Argv: argv, Path: argv[0]}
	if !strings.Contains(argv[0], "/") {
		if c.Path, err = exec.LookPath(argv[0]); err != nil {
			return nil, fmt.Errorf("%s: not found on PATH", argv[0])
		}
	}
	return c, nil
}

// String is the command line, its words joined by spaces.
func (c *Command) String() string { return strings.Join(c.Argv, " ") }

// Run says how to run a Command once.
type Run struct {
	// Dir is the working directory; "" is ferry's.
	Dir string
	// Env is added to ferry's environment; a name given here wins.
	Env []string
	// Timeout bounds the run; the process group is killed when it passes.
	// It must be positive.
	Timeout time.Duration
	// OutputLimit is how many bytes of stdout and stderr together are
	// kept; the rest is read and dropped.
	OutputLimit int
}

// Run runs c and returns what it printed (stdout and stderr as they came,
// up to r.OutputLimit, with a note of what was dropped) and nil for exit
// status 0. Otherwise the error says why in a few words: "exit status 3",
// "timed out after 30s" (wrapping ErrTimeout), or why it could not start.
// When ctx ends first its error is returned, wrapped. Whatever the command
// left running in its process group is killed when it is done.
func (c *Command) Run(ctx context.Context, r Run) (output string, err error) {
	tctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	cmd := exec.CommandContext(tctx, c.Path, c.Argv[1:]...)
	cmd.Args[0] = c.Argv[0]
	cmd.Dir = r.Dir
	cmd.Env = append(os.Environ(), r.Env...)
	out := &capped{limit: r.OutputLimit}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so that the timeout ends whatever it started
	// (a shell script's children), not just the program ferry ran.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killGroup(cmd) }
	cmd.WaitDelay = waitDelay
	err = cmd.Run()
	if cmd.Process != nil {
		_ = killGroup(cmd) // leave nothing running behind it
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil // it exited 0; something it left held its output
	}
	switch {
	case err == nil:
		return out.String(), nil
	case ctx.Err() != nil:
		return out.String(), fmt.Errorf("%s: %w", c.Argv[0], ctx.Err())
	case tctx.Err() != nil:
		return out.String(), fmt.Errorf("%w after %s", ErrTimeout, r.Timeout)
	case cmd.ProcessState == nil:
		// It did not start: not found, not executable.
		return out.String(), errors.New(strings.TrimPrefix(err.Error(), "fork/exec "))
	}
	return out.String(), err
}

// killGroup kills the command's process group.
func killGroup(cmd *exec.Cmd) error {
	err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// OneLine joins the non-blank lines of s with " | " and cuts the result to
// about limit bytes: what a command printed, fit for one log line.
func OneLine(s string, limit int) string {
	return cut(strings.Join(lines(s), " | "), limit)
}

// Excerpt is OneLine for a long output: its first line, then as many of
// its last lines as fit in about limit bytes, where an error usually is.
func Excerpt(s string, limit int) string {
	ls := lines(s)
	if all := strings.Join(ls, " | "); len(all) <= limit || len(ls) < 2 {
		return cut(all, limit)
	}
	const gap = " | … | "
	head := cut(ls[0], limit/3)
	room := limit - len(head) - len(gap)
	var tail []string
	for i := len(ls) - 1; i > 0 && len(ls[i]) <= room; i-- {
		room -= len(ls[i]) + len(" | ")
		tail = append(tail, ls[i])
	}
	if len(tail) == 0 {
		tail = append(tail, cut(ls[len(ls)-1], max(room, limit/3)))
	}
	slices.Reverse(tail)
	return head + gap + strings.Join(tail, " | ")
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// cut shortens s to about limit bytes, not inside a UTF-8 sequence.
func cut(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	n := max(limit, 0)
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

// capped keeps the first limit bytes written to it and counts the rest.
type capped struct {
	mu      sync.Mutex
	limit   int
	buf     []byte
	dropped int64
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	take := min(max(c.limit-len(c.buf), 0), len(p))
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
