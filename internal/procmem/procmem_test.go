package procmem

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// written lives in the executable's writable data: ReleaseImage must
// leave what the process wrote there alone.
var written = [4096]byte{0: 1}

// touchImage maps every page of the executable's read-only mappings, as
// a process that ran all of its code would have, by reading them through
// /proc/self/mem.
func touchImage(t *testing.T) {
	t.Helper()
	ms, err := imageMappings()
	if err != nil {
		t.Fatal(err)
	}
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	var b [1]byte
	for _, m := range ms {
		for a := m.start; a < m.end; a += 4096 {
			if _, err := mem.ReadAt(b[:], int64(a)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// imageRSS sums the resident kilobytes of the executable's read-only
// mappings, from /proc/self/smaps.
func imageRSS(t *testing.T) (kb int) {
	t.Helper()
	ms, err := imageMappings()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 2 {
		t.Fatalf("%d read-only mappings of the executable, want its code and its constants", len(ms))
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	in := false
	for line := range strings.Lines(string(smaps)) {
		if m, ok := parseMapping([]byte(line)); ok {
			in = slices.ContainsFunc(ms, func(r mapping) bool { return r.start == m.start })
			continue
		}
		if rest, ok := strings.CutPrefix(line, "Rss:"); ok && in {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			kb += n
		}
	}
	return kb
}

func TestReleaseImageUnmapsCodeAndKeepsData(t *testing.T) {
	for i := range written {
		written[i] = byte(i*7 + 3)
	}
	touchImage(t)
	before := imageRSS(t)
	if before < 1024 {
		t.Fatalf("the test binary's code and constants hold only %d KiB: nothing to measure", before)
	}
	if err := ReleaseImage(); err != nil {
		t.Fatal(err)
	}
	after := imageRSS(t)
	// What runs between the release and the reading (this test, the
	// runtime, the testing package) maps much of this small binary again.
	if after > before-256 {
		t.Fatalf("resident image %d KiB before, %d KiB after: not released", before, after)
	}
	t.Logf("resident image: %d KiB before, %d KiB after", before, after)
	for i := range written {
		if written[i] != byte(i*7+3) {
			t.Fatalf("byte %d of the writable data changed: %d", i, written[i])
		}
	}
	// Code runs on: a second release and a lot of work after it.
	if err := ReleaseImage(); err != nil {
		t.Fatal(err)
	}
	if s := strings.Repeat("ab", 1000); strconv.Itoa(len(s)) != "2000" {
		t.Fatal("the code after a release misbehaves")
	}
}

func TestParseMapping(t *testing.T) {
	for _, tc := range []struct {
		line string
		want mapping
		ok   bool
	}{
		{"00400000-01202000 r-xp 00000000 fd:01 1234567 /usr/local/bin/ferry",
			mapping{start: 0x400000, end: 0x1202000, major: 0xfd, minor: 1, inode: 1234567}, true},
		{"01fe6000-02083000 rw-p 01be6000 fd:01 1234567 /usr/local/bin/ferry (deleted)",
			mapping{start: 0x1fe6000, end: 0x2083000, writable: true, major: 0xfd, minor: 1, inode: 1234567}, true},
		{"7f0000000000-7f0000021000 rw-p 00000000 00:00 0 ", mapping{start: 0x7f0000000000, end: 0x7f0000021000, writable: true}, true},
		{"7ffd1000-7ffd3000 r-xp 00000000 00:00 0 [vdso]", mapping{start: 0x7ffd1000, end: 0x7ffd3000}, true},
		{"Rss:                 128 kB", mapping{}, false},
		{"zz-01 r-xp 0 fd:01 1 x", mapping{}, false},
		{"02000000-01000000 r-xp 0 fd:01 1 x", mapping{}, false},
	} {
		got, ok := parseMapping([]byte(tc.line))
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseMapping(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

// TestReleaseImageInAPIE builds a position-independent program that
// releases its image and then runs code reading what the loader
// relocated: the relocated read-only pages (RELRO) are the process's own,
// and dropping them crashed it. It must run to its end.
func TestReleaseImageInAPIE(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building the test program needs the go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "pie")
	build := exec.Command(gobin, "build", "-buildmode=pie", "-o", bin, "./testdata/pie")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -buildmode=pie: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "OK 10000 ") {
		t.Fatalf("the PIE program after its release: %v\n%s", err, out)
	}
}

// TestHoldsAnonymousAcrossChunks maps a private file of 3,000 pages, more
// than one read of pagemap holds: read, it holds no page of its own;
// written at page 2,500 and made read-only, it does, and the range that
// ends before that page still does not.
func TestHoldsAnonymousAcrossChunks(t *testing.T) {
	page := os.Getpagesize()
	const pages = 3000
	f, err := os.CreateTemp(t.TempDir(), "mapped")
	if err == nil {
		err = f.Truncate(int64(pages * page))
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := unix.Mmap(int(f.Fd()), 0, pages*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(b)
	var sum byte
	for i := 0; i < pages; i += 7 {
		sum += b[i*page] // read: file pages, mapped
	}
	pagemap, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer pagemap.Close()
	start := uintptr(unsafe.Pointer(&b[0]))
	whole := mapping{start: start, end: start + uintptr(pages*page)}
	before := mapping{start: start, end: start + uintptr(2500*page)}
	if w, err := holdsAnonymous(pagemap, whole); err != nil || w {
		t.Fatalf("a mapping only read: holds a page of its own %v, %v", w, err)
	}
	b[2500*page] = sum + 1
	if err := unix.Mprotect(b, unix.PROT_READ); err != nil {
		t.Fatal(err)
	}
	if w, err := holdsAnonymous(pagemap, whole); err != nil || !w {
		t.Fatalf("a page written past the first read of pagemap: found %v, %v", w, err)
	}
	if w, err := holdsAnonymous(pagemap, before); err != nil || w {
		t.Fatalf("the range before the written page: holds a page of its own %v, %v", w, err)
	}
}
