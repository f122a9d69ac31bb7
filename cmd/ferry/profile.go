//go:build pprof

package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
)

// A binary built with -tags pprof writes profiles of its whole run:
// FERRY_CPUPROFILE=FILE a CPU profile, FERRY_BLOCKPROFILE=FILE where
// goroutines waited, FERRY_MEMPROFILE=FILE what was allocated (and what
// the last collection found live), for the commands run and once. The image's binary
// carries none of this (see the README's Development section).
func init() {
	if len(os.Args) > 1 && (os.Args[1] == "run" || os.Args[1] == "once") {
		stopProfiles = startProfiles()
	}
}

func startProfiles() func() {
	var stops []func()
	if p := os.Getenv("FERRY_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "ferry: FERRY_CPUPROFILE:", err)
		} else {
			stops = append(stops, func() { pprof.StopCPUProfile(); f.Close() })
		}
	}
	if p := os.Getenv("FERRY_BLOCKPROFILE"); p != "" {
		runtime.SetBlockProfileRate(int(1e6)) // a sample per millisecond blocked
		stops = append(stops, func() {
			f, err := os.Create(p)
			if err == nil {
				err = pprof.Lookup("block").WriteTo(f, 0)
				f.Close()
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "ferry: FERRY_BLOCKPROFILE:", err)
			}
		})
	}
	if p := os.Getenv("FERRY_MEMPROFILE"); p != "" {
		stops = append(stops, func() {
			f, err := os.Create(p)
			if err == nil {
				err = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "ferry: FERRY_MEMPROFILE:", err)
			}
		})
	}
	return func() {
		for _, stop := range stops {
			stop()
		}
	}
}
