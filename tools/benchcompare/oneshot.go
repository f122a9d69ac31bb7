package main

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/ferrysync/ferry/internal/gittest"
)

func (b *bench) oneShotSmall(ctx context.Context, dir string) error {
	return b.oneShot(ctx, dir, "small")
}
func (b *bench) oneShotLarge(ctx context.Context, dir string) error {
	return b.oneShot(ctx, dir, "large")
}

// oneShot compares a first sync of repository name by `ferry once` with
// what git-sync does, `git clone --depth 1` into a fresh directory and a
// symlink swap, each into a root of its own.
func (b *bench) oneShot(ctx context.Context, dir, name string) error {
	tree, url, err := b.repo(ctx, name)
	if err != nil {
		return err
	}
	ferryJob := func(i int) job {
		root := filepath.Join(dir, fmt.Sprintf("ferry-%d", i))
		return job{
			Argv: []string{b.ferry, "once", "--source", "git::" + url, "--root", root, "--log-format", "json"},
			Env:  b.ferryEnv(),
			Log:  root + ".log",
		}
	}
	ferry, git, err := b.backToBack(ctx,
		func(i int) (sample, error) { return b.measure(ctx, ferryJob(i)) },
		func(i int) (sample, error) { return b.measure(ctx, b.cloneJob(dir, url, i)) })
	if err != nil {
		return err
	}
	if err := b.checkRoots(dir, tree); err != nil {
		return err
	}
	b.printCommands(ferryJob(0), b.cloneJob(dir, url, 0))
	t := newTable("", "ferry once", "git clone + symlink", "ferry/git")
	t.compare(ferry, git)
	t.print(b.out)
	b.printFloor(ferry, git)
	return nil
}

// cloneJob is git-sync's first sync, run i: a shallow clone into a new
// directory, then a symlink swapped to it.
func (b *bench) cloneJob(dir, url string, i int) job {
	root := filepath.Join(dir, fmt.Sprintf("git-%d", i))
	return job{
		Argv: []string{"git", "clone", "-q", "--depth", "1", url, filepath.Join(root, "rev")},
		Env:  b.gitEnv(),
		Log:  root + ".log",
		Link: filepath.Join(root, "current"), LinkTarget: "rev",
	}
}

// backToBack runs ferry and git in turn, warm-ups first, swapping which
// goes first every run, and returns the samples of the measured runs,
// with the origin's CPU time. Run i of either writes into a root of its
// own, named after i; a command must have been reaped when run returns.
func (b *bench) backToBack(ctx context.Context, ferry, git func(i int) (sample, error)) (f, g []sample, err error) {
	for i := range b.warmups + b.runs {
		pair := []func(int) (sample, error){ferry, git}
		if i%2 == 1 {
			pair[0], pair[1] = git, ferry
		}
		var s [2]sample
		for k, run := range pair {
			served, cpu := b.origin.settled(ctx), originCPU()
			if s[k], err = run(i); err != nil {
				return nil, nil, err
			}
			s[k].Served = b.origin.settled(ctx).sub(served)
			// What this program and its children spent, but the command.
			s[k].Origin = originCPU() - cpu - s[k].User - s[k].Sys
		}
		if i%2 == 1 {
			s[0], s[1] = s[1], s[0]
		}
		if i >= b.warmups {
			f, g = append(f, s[0]), append(g, s[1])
		}
	}
	return f, g, nil
}

// originCPU is the CPU time the origin has used so far: this program's
// (the HTTP server) and that of the children it reaped, which are the git
// processes the CGI handler starts, and the commands measured (which
// callers subtract).
func originCPU() time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if syscall.Getrusage(who, &ru) == nil {
			total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return total
}

// checkRoots checks that every run published the whole tree: the link
// "current" of every root under dir leads to tree's files (a git clone's
// .git aside).
func (b *bench) checkRoots(dir string, tree gittest.Tree) error {
	links, err := filepath.Glob(filepath.Join(dir, "*", "current"))
	if err != nil {
		return err
	}
	if len(links) != 2*(b.warmups+b.runs) {
		return fmt.Errorf("%d roots hold a link, want %d", len(links), 2*(b.warmups+b.runs))
	}
	for _, link := range links {
		n, err := countFiles(link)
		if err != nil {
			return err
		}
		if n != tree.Files {
			return fmt.Errorf("%s holds %d files, want %d", link, n, tree.Files)
		}
	}
	return nil
}

// countFiles counts the regular files of the tree link leads to, but
// those of a .git directory.
func countFiles(link string) (int, error) {
	dir, err := filepath.EvalSymlinks(link)
	if err != nil {
		return 0, err
	}
	n := 0
	err = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && d.Name() == ".git":
			return filepath.SkipDir
		case d.Type().IsRegular():
			n++
		}
		return nil
	})
	return n, err
}

// printCommands prints the commands of run 0 of a comparison with git.
func (b *bench) printCommands(ferry, git job) {
	fmt.Fprintf(b.out, "ferry: %s\ngit:   %s\n", ferry.line(), git.line())
}

// line is the job as one would type it.
func (j job) line() string {
	line := shellLine(j.Argv)
	if j.Link != "" {
		line += fmt.Sprintf(", then %s -> %s (a new symlink renamed over it)", j.Link, j.LinkTarget)
	}
	return line
}

// shellLine is argv as one would type it.
func shellLine(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = a
		if a == "" || strings.ContainsAny(a, " '\"$&;|<>*?") {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}

// printFloor explains the cells: what peak RSS cannot go below (see
// tools/measure), what the CPU and the origin CPU count.
func (b *bench) printFloor(samples ...[]sample) {
	var floor int64
	for _, ss := range samples {
		for _, s := range ss {
			floor = max(floor, s.Floor)
		}
	}
	fmt.Fprintf(b.out, "peak RSS: the rusage's, of the largest process (git: of those it waited for too); none can show less than %s,\n"+
		"the measuring process's own peak when it started the command. CPU: the process and those it waited for.\n"+
		"origin CPU: git http-backend and upload-pack serving the command, on the same %d cores.\n", mib.format(float64(floor)), runtime.NumCPU())
}
