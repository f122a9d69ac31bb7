package s3_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/fetch"
	s3src "github.com/ferrysync/ferry/fetch/s3"
	"github.com/ferrysync/ferry/internal/sourcetest"
	"github.com/ferrysync/ferry/sync"
)

// The benchmark prefix: 2,000 objects of 25 KB (50 MB) in 40 directories,
// random content from a fixed seed.
const (
	benchObjects = 2000
	benchSize    = 25_000
)

func benchTree() map[string][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	files := make(map[string][]byte, benchObjects)
	for i := range benchObjects {
		b := make([]byte, benchSize)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		files[fmt.Sprintf("conf/dir%02d/file%04d.yaml", i%40, i)] = b
	}
	return files
}

// BenchmarkS3 measures, against each local S3 server: a full sync of the
// 50 MB prefix (time, and the peak RSS of a process doing only that), a
// sync after one object changed (requests, bytes written) and an idle poll
// (requests: the target is one List page per 1,000 keys and no GET).
func BenchmarkS3(b *testing.B) {
	files := benchTree()
	for _, k := range serverKinds {
		b.Run(k.name, func(b *testing.B) {
			s := k.start(b)
			bucket := s.newBucket(b, false)
			s.putMany(b, bucket, files)
			url := s.url(bucket, "conf/")

			b.Run("full-sync", func(b *testing.B) {
				src := newSource(b, url, fetch.Env{}, nil)
				b.SetBytes(benchObjects * benchSize)
				s.counts.take()
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					store := newStore(b, fetch.Limits{})
					b.StartTimer()
					if r := sourcetest.MustSync(b, store, "c", src); r.Stats.Files != benchObjects {
						b.Fatalf("%d files, want %d", r.Stats.Files, benchObjects)
					}
					b.StopTimer()
					os.RemoveAll(store.Root())
					b.StartTimer()
				}
				reportRequests(b, s.counts.take())
			})

			b.Run("full-sync-peak-RSS", func(b *testing.B) {
				for range b.N {
					kb, err := childPeakRSS(b, url, 0)
					if err != nil {
						b.Fatalf("child sync: %v", err)
					}
					b.ReportMetric(float64(kb)/1024, "MiB-peak-RSS")
				}
			})

			b.Run("one-object-changed", func(b *testing.B) {
				store, src := newStore(b, fetch.Limits{}), newSource(b, url, fetch.Env{}, nil)
				sourcetest.MustSync(b, store, "c", src)
				var written int64
				s.counts.take()
				b.ResetTimer()
				for i := range b.N {
					b.StopTimer()
					// Unique across the rounds the benchmark framework runs.
					s.put(b, bucket, "conf/dir00/file0000.yaml", fmt.Sprintf("change %d %d\n", i, time.Now().UnixNano()))
					b.StartTimer()
					stats := sourcetest.MustSync(b, store, "c", src).Stats
					if stats.Reused != benchObjects-1 {
						b.Fatalf("reused %d objects, want %d", stats.Reused, benchObjects-1)
					}
					written += stats.BytesWritten
				}
				n := s.counts.take()
				n["PUT"] = 0 // the benchmark's own change
				reportRequests(b, n)
				b.ReportMetric(float64(written)/float64(b.N), "bytes-written/op")
			})

			b.Run("idle-poll", func(b *testing.B) {
				store, src := newStore(b, fetch.Limits{}), newSource(b, url, fetch.Env{}, nil)
				sourcetest.MustSync(b, store, "c", src)
				s.counts.take()
				b.ResetTimer()
				for range b.N {
					if r := sourcetest.MustSync(b, store, "c", src); r.Stats.BytesWritten != 0 {
						b.Fatal("an idle poll wrote bytes")
					}
				}
				reportRequests(b, s.counts.take())
			})
		})
	}
}

// reportRequests reports requests per operation by kind.
func reportRequests(b *testing.B, n map[string]int) {
	for _, kind := range []string{"LIST", "GET", "GET-304"} {
		b.ReportMetric(float64(n[kind])/float64(b.N), kind+"/op")
	}
	other := 0
	for k, v := range n {
		if k != "LIST" && k != "GET" && k != "GET-304" {
			other += v
		}
	}
	b.ReportMetric(float64(other)/float64(b.N), "other-requests/op")
}

// BenchmarkHostileListingPeakRSS measures the peak RSS of a process that
// syncs (default limits) from an S3 endpoint that never stops paginating,
// from one that sends 300,000 keys in one page, and from one whose error
// body never ends. Each sync is bounded
// by a 60 s timeout, standing for --timeout.
func BenchmarkHostileListingPeakRSS(b *testing.B) {
	for _, tc := range []struct {
		name  string
		front *listingFront
	}{
		{"endless-pages", &listingFront{pageKeys: 1000}},
		{"one-300k-key-page", &listingFront{pageKeys: 300_000, pages: 1}},
		{"endless-error-body", &listingFront{failWith: 500}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			f := newListingFront(b, tc.front)
			for range b.N {
				kb, err := childPeakRSS(b, f.url(), time.Minute)
				b.Logf("sync error: %v", err)
				b.ReportMetric(float64(kb)/1024, "MiB-peak-RSS")
				b.ReportMetric(float64(f.lists.Swap(0)), "LIST/op")
			}
		})
	}
}

// childPeakRSS syncs url once in a child process (a re-run of the test
// binary, see runChild), so that the peak RSS is the sync's alone, not
// the in-process server's or the benchmark's. It returns the child's peak
// in KiB and the sync's error. timeout 0 means the child's default.
func childPeakRSS(b *testing.B, url string, timeout time.Duration) (int64, error) {
	a, sec := keyFiles(b, testAccess, testSecret)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+url, childRootEnv+"="+b.TempDir(),
		childKeysEnv+"="+a+"\n"+sec, childTimeoutEnv+"="+timeout.String())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	// VmHWM, not the rusage: Linux carries the parent's peak into the
	// child's ru_maxrss across fork and exec.
	kb, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		b.Fatalf("child said %q (%v): %s", out, runErr, stderr.String())
	}
	if runErr != nil {
		return kb, fmt.Errorf("%v: %s", runErr, strings.TrimSpace(stderr.String()))
	}
	return kb, nil
}

// The child's parameters, from the environment.
const (
	childEnv        = "FERRY_S3_BENCH_CHILD" // the source URL
	childRootEnv    = "FERRY_S3_BENCH_ROOT"
	childKeysEnv    = "FERRY_S3_BENCH_KEYS"    // access and secret key files, one per line
	childTimeoutEnv = "FERRY_S3_BENCH_TIMEOUT" // of the sync; "0s" is 5 minutes
)

// runChild syncs once, then prints its peak RSS in KiB on stdout, also
// when the sync failed (it then exits 1 with the error on stderr).
func runChild() int {
	keys := strings.SplitN(os.Getenv(childKeysEnv), "\n", 2)
	if len(keys) != 2 {
		fmt.Fprintln(os.Stderr, "child: no key files")
		return 2
	}
	u, err := fetch.Parse("s3::" + os.Getenv(childEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	src, err := s3src.New(u, s3src.Options{AccessKeyFile: keys[0], SecretKeyFile: keys[1]}, fetch.Env{Limits: fetch.Limits{}.WithDefaults()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	store, err := sync.OpenStore(os.Getenv(childRootEnv), fetch.Limits{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	timeout, _ := time.ParseDuration(os.Getenv(childTimeoutEnv))
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	st := store.Begin("c", "")
	defer st.Discard()
	rev, syncErr := src.Fetch(ctx, "", st)
	if syncErr == nil {
		syncErr = st.Publish(rev)
	}
	hwm, err := vmHWM()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(hwm)
	if syncErr != nil {
		fmt.Fprintln(os.Stderr, syncErr)
		return 1
	}
	return 0
}

// vmHWM returns this process's peak resident set size in KiB.
func vmHWM() (int64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/self/status")
}
