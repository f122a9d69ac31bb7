package main

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ferrysync/ferry/internal/localproc"
)

// readyLimit bounds a first sync of ferry run.
const readyLimit = 5 * time.Minute

// ready measures `ferry run` from its start to /readyz 200 on the large
// repository (what a native sidecar's startupProbe makes the pod wait
// for), back to back with git-sync's clone and symlink.
func (b *bench) ready(ctx context.Context, dir string) error {
	tree, url, err := b.repo(ctx, "large")
	if err != nil {
		return err
	}
	args := []string{"--source", "git::" + url, "--period", "30s"}
	ferryRun := func(i int) (sample, error) {
		syscall.Sync()
		root := filepath.Join(dir, fmt.Sprintf("ferry-%d", i))
		d, err := b.startDaemon(root, root+".log", true, args...)
		if err != nil {
			return sample{}, err
		}
		defer d.stop()
		wall, err := d.waitReady(ctx, readyLimit)
		if err != nil {
			return sample{}, err
		}
		st, err := localproc.Status(d.cmd.Process.Pid, "VmHWM")
		if err != nil {
			return sample{}, err
		}
		d.stop()
		ru := d.cmd.ProcessState.SysUsage().(*syscall.Rusage)
		return sample{Wall: wall, User: time.Duration(ru.Utime.Nano()), Sys: time.Duration(ru.Stime.Nano()), MaxRSS: st["VmHWM"]}, nil
	}
	ferry, git, err := b.backToBack(ctx, ferryRun,
		func(i int) (sample, error) { return b.measure(ctx, b.cloneJob(dir, url, i)) })
	if err != nil {
		return err
	}
	if err := b.checkRoots(dir, tree); err != nil {
		return err
	}
	fmt.Fprintf(b.out, "ferry: %s run --root DIR/ferry-N --log-format json %s --http-addr 127.0.0.1:PORT; GET /readyz once DIR/ferry-N/current exists (inotify)\n", b.ferry, shellLine(args))
	fmt.Fprintf(b.out, "git:   %s\n", b.cloneJob(dir, url, 0).line())
	t := newTable("", "ferry run: start -> ready", "git clone + symlink", "ferry/git")
	t.compare(ferry, git)
	t.print(b.out)
	fmt.Fprintln(b.out, "ferry run is killed once ready: its peak RSS is VmHWM read just before, its CPU the rusage.")
	b.printFloor(git)
	return nil
}

// idleReading is one ferry run's memory and CPU, idle after a large sync.
type idleReading struct {
	rss, anon, file, hwm float64 // bytes
	cpu                  float64 // share of one core while idle
}

// idle measures what `ferry run` keeps after a first sync of the large
// repository, b.idleFor later, at --period 1s and 30s: b.runs processes of
// each, started one after the other (their syncs do not overlap; their
// idle times do).
func (b *bench) idle(ctx context.Context, dir string) error {
	_, url, err := b.repo(ctx, "large")
	if err != nil {
		return err
	}
	periods := []string{"1s", "30s"}
	type running struct {
		d      *daemon
		period int
		ready  time.Time
		cpu    time.Duration
	}
	var all []running
	defer func() {
		for _, r := range all {
			r.d.stop()
		}
	}()
	for i := range b.runs {
		for p, period := range periods {
			root := filepath.Join(dir, fmt.Sprintf("ferry-%s-%d", period, i))
			d, err := b.startDaemon(root, root+".log", true, "--source", "git::"+url, "--period", period)
			if err != nil {
				return err
			}
			all = append(all, running{d: d, period: p})
			if _, err := d.waitReady(ctx, readyLimit); err != nil {
				return err
			}
			user, sys, err := readCPU(d.cmd.Process.Pid)
			if err != nil {
				return err
			}
			all[len(all)-1].ready, all[len(all)-1].cpu = time.Now(), user+sys
		}
	}
	readings := make([][]idleReading, len(periods))
	for _, r := range all {
		if err := sleep(ctx, time.Until(r.ready.Add(b.idleFor))); err != nil {
			return err
		}
		pid := r.d.cmd.Process.Pid
		st, err := localproc.Status(pid, "VmRSS", "RssAnon", "RssFile", "VmHWM")
		if err != nil {
			return err
		}
		user, sys, err := readCPU(pid)
		if err != nil {
			return err
		}
		cpu := float64(user+sys-r.cpu) / float64(time.Since(r.ready))
		readings[r.period] = append(readings[r.period], idleReading{float64(st["VmRSS"]), float64(st["RssAnon"]), float64(st["RssFile"]), float64(st["VmHWM"]), cpu})
	}
	fmt.Fprintf(b.out, "ferry: %s run --root DIR/ferry-PERIOD-N --log-format json --source git::%s --period PERIOD --http-addr 127.0.0.1:PORT\n", b.ferry, url)
	fmt.Fprintf(b.out, "read from /proc/PID/status and /proc/PID/stat %s after /readyz first answered 200; %d processes for each period\n", b.idleFor, b.runs)
	t := newTable("", "--period "+periods[0], "--period "+periods[1])
	rows := []struct {
		name string
		u    unit
		f    func(idleReading) float64
	}{
		{"VmRSS", mib, func(r idleReading) float64 { return r.rss }},
		{"  RssAnon (heap, stacks)", mib, func(r idleReading) float64 { return r.anon }},
		{"  RssFile (the binary's pages)", mib, func(r idleReading) float64 { return r.file }},
		{"VmHWM (peak, during the sync)", mib, func(r idleReading) float64 { return r.hwm }},
		{"CPU while idle, of one core", pct, func(r idleReading) float64 { return r.cpu }},
	}
	for _, row := range rows {
		t.add(row.name, row.u.cell(of(readings[0], row.f)), row.u.cell(of(readings[1], row.f)))
	}
	t.print(b.out)
	return nil
}
