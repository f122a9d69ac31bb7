package http_test

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/fetch"
	fhttp "github.com/ferrysync/ferry/fetch/http"
	"github.com/ferrysync/ferry/internal/sourcetest"
)

// BenchmarkNotModifiedPoll is the steady state: one conditional GET
// answered 304 per poll.
func BenchmarkNotModifiedPoll(b *testing.B) {
	o := newOrigin(b, false)
	o.set(tarOf(b, true, file("a", strings.Repeat("x", 64<<10))))
	v := newVolume(b, fetch.Limits{})
	s := v.source(b, o.url("/b.tgz"), fhttp.Options{})
	sourcetest.MustSync(b, v.store, "c", s)
	reqs, sent := o.requests.Load(), o.bodyBytes.Load()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := sourcetest.MustSync(b, v.store, "c", s); r.Rev != r.Prev {
			b.Fatalf("poll published %s", r.Rev)
		}
	}
	b.ReportMetric(float64(o.requests.Load()-reqs)/float64(b.N), "requests/op")
	b.ReportMetric(float64(o.bodyBytes.Load()-sent)/float64(b.N), "body-bytes/op")
	o.srv.Close()
}

// BenchmarkPublishTarGz downloads, extracts and publishes a changed
// 1,000-file (4 MiB) tar.gz on every op.
func BenchmarkPublishTarGz(b *testing.B) {
	bodies := make([][]byte, 2)
	var expanded int64
	for v := range bodies {
		es := make([]entry, 1000)
		expanded = 0
		for i := range es {
			content := strings.Repeat(strconv.Itoa(i+v*7)+" ", 4096)[:4096]
			es[i] = file("d"+strconv.Itoa(i%20)+"/f"+strconv.Itoa(i)+".conf", content)
			expanded += int64(len(content))
		}
		bodies[v] = tarOf(b, true, es...)
	}
	o := newOrigin(b, false)
	v := newVolume(b, fetch.Limits{})
	s := v.source(b, o.url("/b.tgz"), fhttp.Options{})
	b.SetBytes(expanded)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		o.set(bodies[i%2])
		sourcetest.MustSync(b, v.store, "c", s)
		if err := v.store.GC("c", 2); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(len(bodies[0])), "wire-bytes/op")
	b.ReportMetric(maxRSSMiB(), "peak-RSS-MiB")
	o.srv.Close()
}

// BenchmarkBombRefusedAtDefaultLimit measures the worst case of the
// decompression bound: a 4 GiB gzip bomb outside the published sub-tree,
// so no Writer limit applies and only the http-max-body limit (1 GiB) stops it.
func BenchmarkBombRefusedAtDefaultLimit(b *testing.B) {
	o := newOrigin(b, false)
	o.set(tarOf(b, true, file("conf/a", "1")))
	v := newVolume(b, fetch.Limits{})
	s := v.source(b, o.url("/b.tgz//conf"), fhttp.Options{})
	sourcetest.MustSync(b, v.store, "c", s)
	o.set(gzipBomb(b, "junk/zeros", 4<<30))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := sourcetest.Sync(b, v.store, "c", s); r.Err == nil || !strings.Contains(r.Err.Error(), "http-max-body limit") {
			b.Fatalf("err = %v", r.Err)
		}
	}
	b.StopTimer()
	b.ReportMetric(maxRSSMiB(), "peak-RSS-MiB")
	o.srv.Close()
}

// maxRSSMiB is the process's peak resident set so far (the whole test
// binary, so run one benchmark at a time for a meaningful figure). It is
// read from VmHWM: the rusage of a process counts the peak of the process
// that started it (the go tool, which forked it), 24 MB for a binary that
// does nothing.
func maxRSSMiB() float64 {
	status, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(v, "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}
