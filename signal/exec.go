package signal

import (
	"cmp"
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/ferrysync/ferry/internal/report"
	"github.com/ferrysync/ferry/internal/runcmd"
)

const (
	// execOutputLimit is how much of a hook's output is kept for the log;
	// the rest is read and dropped, so a chatty hook cannot fill memory.
	execOutputLimit = 64 << 10
	// excerptLimit bounds the output quoted in a WARN line, and
	// detailLimit what an error (and so /status) quotes of it.
	excerptLimit = 1 << 10
	detailLimit  = 300
)

// execHook runs a command for each change: a queue with one target, so
// that it is newest-wins per source and retried like an HTTP request, and
// never runs twice at once.
type execHook struct {
	*queue
	cmd     *runcmd.Command
	timeout time.Duration
}

// newExec returns the hook of o.ExecCommand, which o.Validate accepted.
func newExec(o Options, m *metrics) *execHook {
	cmd, _ := runcmd.Parse(o.ExecCommand)
	e := &execHook{queue: newQueue(o, m), cmd: cmd, timeout: cmp.Or(o.ExecTimeout, DefaultExecTimeout)}
	// The program only: its arguments are the user's to show.
	e.add("exec:"+cmd.Argv[0], slog.String("command", cmd.Argv[0]), e.exec)
	return e
}

// exec runs the command once for cs. It logs what the command printed: a
// failure at WARN, its first and last lines; the whole output (up to
// execOutputLimit) at DEBUG.
func (e *execHook) exec(ctx context.Context, cs Changes) error {
	start := time.Now()
	dir := cs[0].Path // the published tree of a single change
	if len(cs) > 1 {
		dir = filepath.Dir(dir) // the root, above every source's link
	}
	out, err := e.cmd.Run(ctx, runcmd.Run{
		Dir:         dir,
		Env:         execEnv(cs),
		Timeout:     e.timeout,
		OutputLimit: execOutputLimit,
	})
	if ctx.Err() != nil {
		return err // shutting down: not the hook's failure
	}
	attrs := append(append([]any{"command", e.cmd.Argv[0]}, cs.logAttrs()...),
		"duration", time.Since(start).Round(time.Millisecond))
	if err == nil {
		e.log.Debug("exec hook done", append(attrs, "output", out)...)
		return nil
	}
	e.log.Warn("exec hook failed", append(attrs, "error", err.Error(), "output", runcmd.Excerpt(out, excerptLimit))...)
	if len(out) > excerptLimit {
		e.log.Debug("exec hook output", append(attrs, "output", out)...)
	}
	// Target names the program in logs and in a Refusal.
	msg := err.Error()
	if o := runcmd.OneLine(out, detailLimit); o != "" {
		msg += ": " + o
	}
	return report.Errorf(err, "%s", msg)
}

// execEnv is what the hook's environment says of cs: each field of a single
// change, or of every change, comma-separated in the same order; and the
// notification's JSON body in FERRY_CHANGES. All are set, empty or not: a
// value from ferry's own environment (FERRY_SOURCE configures it) must not
// pass for the change's.
func execEnv(cs Changes) []string {
	return []string{
		"FERRY_SOURCE=" + cs.sources(),
		"FERRY_REVISION=" + cs.revisions(),
		"FERRY_PREVIOUS_REVISION=" + cs.join(func(c Change) string { return c.Previous }),
		"FERRY_PATH=" + cs.join(func(c Change) string { return c.Path }),
		"FERRY_ORIGIN_REVISION=" + cs.join(func(c Change) string { return c.OriginRevision }),
		"FERRY_ROLLBACK_OF=" + cs.join(func(c Change) string { return c.RollbackOf }),
		"FERRY_CHANGES=" + string(cs.body()),
	}
}
