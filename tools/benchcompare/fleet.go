package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ferrysync/ferry/internal/localproc"
)

const (
	// fleetReserve is the memory left to the machine's other users.
	fleetReserve = 4 << 30
	// fleetAllowance is the memory counted for each process when deciding
	// how many fit: more than one takes at its peak.
	fleetAllowance = 40 << 20
	// fleetStagger spaces the starts. They are close together: processes
	// started early would otherwise poll, and slow the others' first sync.
	fleetStagger = 10 * time.Millisecond
	// fleetSettle bounds the time from the first start to every
	// process's first publish.
	fleetSettle = 90 * time.Second
)

// fleet runs as many `ferry run` processes as fit, up to b.fleetSize,
// polling the 10,000-ref repository every second, and reads at the origin
// what they cost it over b.fleetFor: the load a fleet of pods puts on a
// git host. Every process is killed at the end, whatever happens (and by
// the kernel, should this program die).
func (b *bench) fleet(ctx context.Context, dir string) error {
	_, url, err := b.repo(ctx, "refs")
	if err != nil {
		return err
	}
	args := []string{"--source", "git::" + url + "?ref=main", "--period", "1s", "--log-level", "warn"}
	var fleet []*daemon
	defer func() {
		for _, d := range fleet {
			d.stop()
		}
	}()
	size, stopped := b.fleetSize, ""
	if fit := int((memAvailable() - fleetReserve) / fleetAllowance); fit < size {
		size, stopped = max(fit, 0), fmt.Sprintf("; memory for %d only (%s each, %s left over)", fit, mib.format(fleetAllowance), mib.format(fleetReserve))
	}
	start := time.Now()
	for i := range size {
		if avail := memAvailable(); avail < fleetReserve {
			stopped = fmt.Sprintf("; stopped at %d: %s available, the reserve is %s", i, mib.format(float64(avail)), mib.format(fleetReserve))
			break
		}
		root := filepath.Join(dir, strconv.Itoa(i))
		d, err := b.startDaemon(root, root+".log", false, args...)
		if err != nil {
			stopped = fmt.Sprintf("; stopped at %d: %v", i, err)
			break
		}
		fleet = append(fleet, d)
		if err := sleep(ctx, fleetStagger); err != nil {
			return err
		}
	}
	published, err := waitPublished(ctx, dir, fleet, start.Add(fleetSettle))
	if err != nil {
		return err
	}
	settled := time.Since(start)
	r, err := b.observe(ctx, fleet)
	if err != nil {
		return err
	}

	fmt.Fprintf(b.out, "ferry: %s run --root DIR/N --log-format json %s --http-addr ''\n", b.ferry, shellLine(args))
	fmt.Fprintf(b.out, "started %s apart; %d of %d had published %s after the first start (the wait is bounded by %s);\n"+
		"then observed for %s\n", fleetStagger, published, len(fleet), settled.Round(time.Second), fleetSettle, b.fleetFor)
	perSecond := func(n float64) float64 { return n / r.took.Seconds() }
	perRequest := func(d time.Duration) string {
		return fmt.Sprintf("%.1f ms", d.Seconds()*1e3/float64(max(r.served.requests, 1)))
	}
	var total float64
	for _, v := range r.rss {
		total += v
	}
	t := newTable("fleet, --period 1s", "")
	t.add("ferry run processes", fmt.Sprintf("%d started (target %d%s), %d running at the end", len(fleet), b.fleetSize, stopped, len(r.rss)))
	t.add("origin requests", fmt.Sprintf("%.1f /s (one poll a second each would be %d /s)", perSecond(float64(r.served.requests)), len(r.rss)))
	t.add("origin bytes sent", fmt.Sprintf("%.2f MB/s (%s a request)", perSecond(float64(r.served.bytes))/1e6, byt.format(float64(r.served.bytes)/float64(max(r.served.requests, 1)))))
	t.add("origin CPU", fmt.Sprintf("%.2f cores (git http-backend and upload-pack, and this program's server)", perSecond(r.originCPU.Seconds())))
	t.add("ferry CPU, all processes", fmt.Sprintf("%.2f cores", perSecond(r.ferryCPU.Seconds())))
	t.add("CPU per request", fmt.Sprintf("origin %s, ferry %s", perRequest(r.originCPU), perRequest(r.ferryCPU)))
	t.add("ferry RSS, sum of VmRSS", fmt.Sprintf("%s (%s a process)", mib.format(total), mib.cell(r.rss)))
	t.print(b.out)
	return nil
}

// fleetReading is what a fleet cost over b.fleetFor.
type fleetReading struct {
	took                time.Duration
	served              traffic
	originCPU, ferryCPU time.Duration
	rss                 series // VmRSS of each process still running at the end
}

// observe reads what the fleet and the origin spend over b.fleetFor.
func (b *bench) observe(ctx context.Context, fleet []*daemon) (fleetReading, error) {
	t0, origin0, ferry0, start := b.origin.traffic(), originCPU(), fleetCPU(fleet), time.Now()
	if err := sleep(ctx, b.fleetFor); err != nil {
		return fleetReading{}, err
	}
	r := fleetReading{served: b.origin.traffic().sub(t0), originCPU: originCPU() - origin0, ferryCPU: fleetCPU(fleet) - ferry0, took: time.Since(start)}
	for _, d := range fleet {
		// A process that ended has been reaped: it has no status.
		if st, err := localproc.Status(d.cmd.Process.Pid, "VmRSS"); err == nil {
			r.rss = append(r.rss, float64(st["VmRSS"]))
		}
	}
	return r, nil
}

// waitPublished waits until every process of the fleet has published its
// first revision (its link exists), or deadline, and returns how many did.
func waitPublished(ctx context.Context, dir string, fleet []*daemon, deadline time.Time) (int, error) {
	for {
		n := 0
		for i := range fleet {
			if _, err := os.Lstat(filepath.Join(dir, strconv.Itoa(i), "current")); err == nil {
				n++
			}
		}
		if n == len(fleet) || time.Now().After(deadline) {
			return n, nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return n, err
		}
	}
}

// fleetCPU is the CPU time the running processes of the fleet have used.
func fleetCPU(fleet []*daemon) time.Duration {
	var total time.Duration
	for _, d := range fleet {
		if user, sys, err := readCPU(d.cmd.Process.Pid); err == nil {
			total += user + sys
		}
	}
	return total
}

// memAvailable is MemAvailable of /proc/meminfo, in bytes.
func memAvailable() int64 {
	var kb int64
	fmt.Sscanf(procField("/proc/meminfo", "MemAvailable"), "%d", &kb)
	return kb << 10
}
