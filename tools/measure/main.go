// Command measure runs a command and prints, as one JSON object, its wall
// time, CPU time and peak RSS, like GNU time -v: the measuring process of
// benchcompare (make bench-compare).
//
//	measure [-log FILE] [-link PATH -link-target TARGET] -- COMMAND [ARG...]
//
// It is a program of its own, and a small one, because Linux starts a
// child's peak RSS (ru_maxrss) at the peak of the memory it was started
// from, and Go starts children with vfork: a child of a large process
// reports that process's peak when its own is lower. measure's peak when
// it starts the command is printed as "floor": the command's peak RSS
// cannot be read below it.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

func main() {
	log := flag.String("log", "", "file for the command's stdout and stderr (default: measure's stderr)")
	link := flag.String("link", "", "after the command succeeds, point this symlink at -link-target (a new link renamed over it); the time counts")
	target := flag.String("link-target", "", "what -link points at")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: measure [-log FILE] [-link PATH -link-target TARGET] -- COMMAND [ARG...]")
		os.Exit(2)
	}
	res, err := measure(flag.Args(), *log, *link, *target)
	if err != nil {
		fmt.Fprintln(os.Stderr, "measure:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(res)
}

// measure runs argv and returns what it cost: "wall", "user" and "sys"
// time in nanoseconds, "maxrss" and "floor" in bytes.
func measure(argv []string, log, link, target string) (map[string]int64, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if log != "" {
		f, err := os.Create(log)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
	}
	// The command dies with measure, whoever kills it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	floor := peakRSS()
	start := time.Now()
	err := cmd.Run()
	if err == nil && link != "" {
		err = swapLink(target, link)
	}
	wall := time.Since(start)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return map[string]int64{"wall": int64(wall), "user": ru.Utime.Nano(), "sys": ru.Stime.Nano(),
		"maxrss": ru.Maxrss << 10, "floor": floor}, nil
}

// swapLink points link at target as git-sync publishes: a new symlink
// beside it, renamed over it.
func swapLink(target, link string) error {
	tmp := link + ".tmp"
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, link)
}

// peakRSS is this process's peak RSS (VmHWM), in bytes. (Not through
// internal/localproc: its imports would add 2 MiB to the floor.)
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int64
		if n, _ := fmt.Sscanf(sc.Text(), "VmHWM: %d kB", &kb); n == 1 {
			return kb << 10
		}
	}
	return 0
}
