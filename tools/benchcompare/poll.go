package main

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"time"
)

// poll measures what one poll that finds nothing new costs the origin,
// on a repository with 10,000 refs: `ferry run` (polls triggered by POST
// /sync, with the period too long to add any) against `git ls-remote`.
func (b *bench) poll(ctx context.Context, dir string) error {
	_, url, err := b.repo(ctx, "refs")
	if err != nil {
		return err
	}
	root := filepath.Join(dir, "ferry")
	args := []string{"--source", "git::" + url + "?ref=main", "--period", "1h"}
	d, err := b.startDaemon(root, root+".log", true, args...)
	if err != nil {
		return err
	}
	defer d.stop()
	if _, err := d.waitReady(ctx, readyLimit); err != nil {
		return err
	}
	var ferry []traffic
	for i := range b.warmups + b.runs {
		t, err := b.triggeredPoll(ctx, d)
		if err != nil {
			return err
		}
		if i >= b.warmups {
			ferry = append(ferry, t)
		}
	}
	// git ls-remote sends no ref-prefix for its patterns (they match
	// ref names by their tail), so even in v2 it lists every ref; a fetch
	// of a ref already there, without tags, is v2's one-ref poll.
	clone := filepath.Join(dir, "clone")
	if _, err := b.git(ctx, "clone", "-q", "--depth", "1", "--no-tags", url, clone); err != nil {
		return err
	}
	gitRuns := []struct {
		name string
		argv []string
	}{
		{"git ls-remote, v2", []string{"git", "-c", "protocol.version=2", "ls-remote", url, "refs/heads/main"}},
		{"git fetch of main, v2 (ref-prefix)", []string{"git", "-C", clone, "-c", "protocol.version=2", "fetch", "-q", "--no-tags", "origin", "main"}},
		{"git ls-remote, v0", []string{"git", "-c", "protocol.version=0", "ls-remote", url, "refs/heads/main"}},
	}
	git := make([][]traffic, len(gitRuns))
	for k, g := range gitRuns {
		for i := range b.warmups + b.runs {
			start := b.origin.settled(ctx)
			if _, err := b.git(ctx, g.argv[1:]...); err != nil {
				return err
			}
			if i >= b.warmups {
				git[k] = append(git[k], b.origin.settled(ctx).sub(start))
			}
		}
	}
	fmt.Fprintf(b.out, "ferry: %s run --root DIR --log-format json %s --http-addr 127.0.0.1:PORT; each poll triggered by POST /sync\n", b.ferry, shellLine(args))
	for _, g := range gitRuns {
		fmt.Fprintf(b.out, "git:   %s\n", shellLine(g.argv))
	}
	fmt.Fprintf(b.out, "counted at the origin (response bodies, headers aside), %d polls each; git's fetch runs in an up-to-date clone\n", b.runs)
	bytesOf := func(t traffic) float64 { return float64(t.bytes) }
	requestsOf := func(t traffic) float64 { return float64(t.requests) }
	t := newTable("one idle poll, 10,000 refs", "bytes sent by the origin", "requests", "ferry/this, bytes")
	t.add("ferry run", byt.cell(of(ferry, bytesOf)), num.cell(of(ferry, requestsOf)), "")
	for k, g := range gitRuns {
		t.add(g.name, byt.cell(of(git[k], bytesOf)), num.cell(of(git[k], requestsOf)), ratio(of(ferry, bytesOf), of(git[k], bytesOf)))
	}
	t.print(b.out)
	return nil
}

// triggeredPoll makes d poll once, through POST /sync, and returns what
// the origin served meanwhile. The poll is over when ferry_syncs_total
// counts it.
func (b *bench) triggeredPoll(ctx context.Context, d *daemon) (traffic, error) {
	before, err := d.metric("ferry_syncs_total")
	if err != nil {
		return traffic{}, err
	}
	start := b.origin.settled(ctx)
	resp, err := http.Post("http://"+d.addr+"/sync", "", nil)
	if err != nil {
		return traffic{}, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return traffic{}, fmt.Errorf("POST /sync: %s", resp.Status)
	}
	for deadline := time.Now().Add(time.Minute); ; {
		n, err := d.metric("ferry_syncs_total")
		if err != nil {
			return traffic{}, err
		}
		if n > before {
			return b.origin.settled(ctx).sub(start), nil
		}
		if time.Now().After(deadline) {
			return traffic{}, fmt.Errorf("a triggered poll did not end within a minute (log: %s)", tail(d.log.Name(), 5))
		}
		if err := sleep(ctx, 5*time.Millisecond); err != nil {
			return traffic{}, err
		}
	}
}

// git runs git with args and returns its output.
func (b *bench) git(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = b.gitEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("git %s: %w: %s", shellLine(args), err, out)
	}
	return out, nil
}
