package http_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"cmp"
	"compress/flate"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io/fs"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/fetch"
	fhttp "github.com/ferrysync/ferry/fetch/http"
	"github.com/ferrysync/ferry/internal/sourcetest"
)

// zeroMember is one gzip member of 16 MiB of zeros (about 20 KiB). Gzip
// members concatenate, so repeating it makes a bomb of any size cheaply.
// The fastest level: with the race detector, the best takes seconds.
var zeroMember = gosync.OnceValue(func() []byte { return gzipped(make([]byte, 16<<20), gzip.BestSpeed) })

// gzipBomb is a tar.gz whose entry name claims size bytes of zeros: tiny on
// the wire, gigabytes expanded. The stream ends without the rest of the
// archive, which the extractor must never reach.
func gzipBomb(t testing.TB, name string, size int64) []byte {
	t.Helper()
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Flush()
	out := gzipped(hdr.Bytes(), gzip.DefaultCompression)
	for n := int64(0); n < size; n += 16 << 20 {
		out = append(out, zeroMember()...)
	}
	return out
}

// headerBomb is a tar.gz of many empty files, each with a large PAX
// record: nothing to write, but a lot of headers to read.
func headerBomb(t *testing.T, n int) []byte {
	t.Helper()
	pad := strings.Repeat("x", 512<<10)
	es := make([]entry, n)
	for i := range es {
		es[i] = entry{name: "junk/f" + strconv.Itoa(i), pax: map[string]string{"comment": pad}}
	}
	return gzipped(tarOf(t, false, es...), gzip.BestSpeed)
}

// sparseTar is a tar.gz whose entry "big" is a GNU sparse file (PAX
// format 1.0) of logical size bytes, all hole, stored in one 512-byte map
// block, followed by a hard link to it from link unless link is empty.
// Go's tar writer cannot write sparse files, so the PAX header is patched
// in by hand.
func sparseTar(t testing.TB, size int64, link string) []byte {
	t.Helper()
	record := func(k, v string) string {
		s := " " + k + "=" + v + "\n"
		for n := len(s); ; n++ {
			if len(strconv.Itoa(n))+len(s) == n {
				return strconv.Itoa(n) + s
			}
		}
	}
	recs := record("GNU.sparse.major", "1") + record("GNU.sparse.minor", "0") +
		record("GNU.sparse.name", "big") + record("GNU.sparse.realsize", strconv.FormatInt(size, 10))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "pax", Typeflag: tar.TypeReg, Size: int64(len(recs)), Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(recs))
	tw.Flush()
	b := buf.Bytes()
	b[156] = tar.TypeXHeader
	setChecksum(b[:512])
	sparseMap := make([]byte, 512)
	copy(sparseMap, "1\n0\n0\n") // one data region of length 0: all hole
	if err := tw.WriteHeader(&tar.Header{Name: "GNUSparseFile.0/big", Typeflag: tar.TypeReg, Size: 512, Mode: 0o644, Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	tw.Write(sparseMap)
	if link != "" {
		if err := tw.WriteHeader(&tar.Header{Name: link, Typeflag: tar.TypeLink, Linkname: "big", Mode: 0o644, Format: tar.FormatUSTAR}); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	return gzipped(buf.Bytes(), gzip.DefaultCompression)
}

// setChecksum writes the checksum of a tar header block patched by hand.
func setChecksum(b []byte) {
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

// hardlinkFanOut is a tar.gz of one file of size bytes and n hard links
// to it: each link is published as a copy, so the tree holds (n+1) * size
// bytes while the stream holds size once.
func hardlinkFanOut(t testing.TB, size, n int) []byte {
	t.Helper()
	es := []entry{file("base", strings.Repeat("x", size))}
	for i := range n {
		es = append(es, entry{name: "l" + strconv.Itoa(i), typeflag: tar.TypeLink, link: "base"})
	}
	return tarOf(t, true, es...)
}

// zipOverlap is a zip whose n central-directory entries ("f0", "f1"...)
// all point at the same local file, size bytes of zeros deflated: the
// "better zip bomb" construction, where each entry expands the same
// compressed bytes again.
func zipOverlap(t testing.TB, n int, size int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create("f0")
	if err != nil {
		t.Fatal(err)
	}
	w.Write(make([]byte, size))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	const eocdLen = 22
	eocd := b[len(b)-eocdLen:]
	cdStart := int(binary.LittleEndian.Uint32(eocd[16:]))
	record := b[cdStart : len(b)-eocdLen] // the one central record
	out := append([]byte(nil), b[:cdStart]...)
	for i := range n {
		r := append([]byte(nil), record...)
		r[len(r)-1] = byte('0' + i%10) // the name "fN" ends the record
		out = append(out, r...)
	}
	end := append([]byte(nil), eocd...)
	binary.LittleEndian.PutUint16(end[8:], uint16(n))
	binary.LittleEndian.PutUint16(end[10:], uint16(n))
	binary.LittleEndian.PutUint32(end[12:], uint32(n*len(record)))
	return append(out, end...)
}

// zipLyingSize is a zip whose one entry declares 16 bytes uncompressed but
// inflates to size bytes.
func zipLyingSize(t testing.TB, size int) []byte {
	t.Helper()
	data := make([]byte, size)
	var comp bytes.Buffer
	fw, _ := flate.NewWriter(&comp, flate.BestCompression)
	fw.Write(data)
	fw.Close()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateRaw(&zip.FileHeader{Name: "small.conf", Method: zip.Deflate,
		CRC32: crc32.ChecksumIEEE(data), CompressedSize64: uint64(comp.Len()), UncompressedSize64: 16})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(comp.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// manyFiles is a tar.gz of about n empty files, written by hand: the
// header of an empty file is all there is to it. Only the first 4,096
// names differ, past any limit a test sets; the rest repeat one gzip
// member, as members concatenate. With the race detector, writing and
// compressing 100,000 distinct headers would take seconds.
func manyFiles(t testing.TB, n int) []byte {
	t.Helper()
	const group = 4096
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	if err := tw.WriteHeader(&tar.Header{Name: "d00/f000000", Mode: 0o644, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	tw.Flush()
	block := hdr.Bytes()[:512]
	var first bytes.Buffer
	for i := range group {
		copy(block, fmt.Sprintf("d%02d/f%06d", i%100, i))
		setChecksum(block)
		first.Write(block)
	}
	out := gzipped(first.Bytes(), gzip.BestSpeed)
	filler := gzipped(bytes.Repeat(block, group), gzip.BestSpeed)
	for i := group; i < n; i += group {
		out = append(out, filler...)
	}
	return append(out, gzipped(make([]byte, 1024), gzip.BestSpeed)...) // end of archive
}

func TestHostileArchivesAreRefused(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "outside") // an absolute path a hostile entry aims at
	good := map[string]string{"app.yaml": "good\n"}
	cases := []struct {
		name   string
		path   string // URL path, default /b.tar.gz
		limits fetch.Limits
		opts   fhttp.Options
		body   func(t *testing.T) []byte
		want   string
	}{
		{name: "TarDotDot", body: func(t *testing.T) []byte {
			return tarOf(t, true, file("ok", "1"), file("../../../../escaped", "x"))
		}, want: `"../../../../escaped": path leaves the revision`},
		{name: "TarDotDotInside", body: func(t *testing.T) []byte {
			return tarOf(t, true, file("a/../../escaped", "x"))
		}, want: `"a/../../escaped": path leaves the revision`},
		{name: "TarDotGit", body: func(t *testing.T) []byte {
			return tarOf(t, true, file("ok", "1"), file("sub/.git/config", "x"))
		}, want: `"sub/.git/config": a .git entry is never published`},
		{name: "TarAbsolute", body: func(t *testing.T) []byte {
			return tarOf(t, true, file(outside, "x"))
		}, want: `absolute path`},
		{name: "TarSymlinkToEtcPasswd", body: func(t *testing.T) []byte {
			return tarOf(t, true, entry{name: "passwd", typeflag: tar.TypeSymlink, link: "/etc/passwd"})
		}, want: `"passwd": symlink to absolute path "/etc/passwd"`},
		{name: "TarSymlinkUpAndOut", body: func(t *testing.T) []byte {
			return tarOf(t, true, entry{name: "d/passwd", typeflag: tar.TypeSymlink, link: "../../../../../etc/passwd"})
		}, want: `"d/passwd": symlink to "../../../../../etc/passwd" leaves the revision`},
		{name: "TarSymlinkThenWriteThrough", body: func(t *testing.T) []byte {
			return tarOf(t, true, entry{name: "d", typeflag: tar.TypeSymlink, link: "."}, file("d/x", "1"))
		}, want: `parent "d" is a symlink`},
		{name: "TarHardlinkOutside", body: func(t *testing.T) []byte {
			return tarOf(t, true, entry{name: "hl", typeflag: tar.TypeLink, link: "../../../../etc/passwd"})
		}, want: `"hl": hard link to "../../../../etc/passwd" leaves the archive`},
		{name: "TarHardlinkAbsolute", body: func(t *testing.T) []byte {
			return tarOf(t, true, entry{name: "hl", typeflag: tar.TypeLink, link: "/etc/passwd"})
		}, want: `"hl": hard link to "/etc/passwd" leaves the archive`},
		{name: "TarHardlinkToMissing", body: func(t *testing.T) []byte {
			return tarOf(t, true, entry{name: "hl", typeflag: tar.TypeLink, link: "later"}, file("later", "x"))
		}, want: `"hl": hard link to "later", which is not an earlier regular file`},
		{name: "TarHardlinkToLaterOutsideSubdir", path: "/b.tar.gz//conf", body: func(t *testing.T) []byte {
			return tarOf(t, true, file("conf/app.yaml", "x"), entry{name: "conf/hl", typeflag: tar.TypeLink, link: "shared/later"}, file("shared/later", "x"))
		}, want: `"conf/hl": hard link to "shared/later", which is not an earlier regular file`},
		{name: "TarHardlinkToSymlink", body: func(t *testing.T) []byte {
			return tarOf(t, true, entry{name: "s", typeflag: tar.TypeSymlink, link: "x"}, entry{name: "hl", typeflag: tar.TypeLink, link: "s"})
		}, want: `"hl": hard link to "s", which is not an earlier regular file`},
		{name: "TarCharDevice", body: func(t *testing.T) []byte {
			return tarOf(t, true, entry{name: "null", typeflag: tar.TypeChar})
		}, want: `"null": device or FIFO entries are not allowed`},
		{name: "TarFifoOutsideSubdir", path: "/b.tar.gz//conf", body: func(t *testing.T) []byte {
			return tarOf(t, true, file("conf/app.yaml", "x"), entry{name: "other/pipe", typeflag: tar.TypeFifo})
		}, want: `"other/pipe": device or FIFO entries are not allowed`},
		{name: "TarDuplicate", body: func(t *testing.T) []byte {
			return tarOf(t, true, file("a", "1"), file("a", "2"))
		}, want: `"a": duplicate entry`},
		{name: "ZipSlip", path: "/b.zip", body: func(t *testing.T) []byte {
			return zipOf(t, file("ok", "1"), file("../../../../escaped", "x"))
		}, want: `"../../../../escaped": path leaves the revision`},
		{name: "ZipAbsolute", path: "/b.zip", body: func(t *testing.T) []byte {
			return zipOf(t, file(outside, "x"))
		}, want: `absolute path`},
		{name: "ZipBackslash", path: "/b.zip", body: func(t *testing.T) []byte {
			return zipOf(t, file(`..\..\escaped`, "x"))
		}, want: `backslash in name`},
		{name: "ZipSymlinkToEtcPasswd", path: "/b.zip", body: func(t *testing.T) []byte {
			return zipOf(t, entry{name: "passwd", body: "/etc/passwd", mode: int64(fs.ModeSymlink | 0o777)})
		}, want: `"passwd": symlink to absolute path "/etc/passwd"`},
		{name: "ZipFifo", path: "/b.zip", body: func(t *testing.T) []byte {
			return zipOf(t, entry{name: "pipe", mode: int64(fs.ModeNamedPipe | 0o644)})
		}, want: `"pipe": FIFO entries are not allowed`},
		{name: "CorruptGzip", body: func(t *testing.T) []byte {
			return []byte("this is not gzip at all")
		}, want: `corrupt archive: gzip: invalid header`},
		{name: "TruncatedGzip", body: func(t *testing.T) []byte {
			b := tarOf(t, true, file("a", strings.Repeat("config ", 2000)))
			return b[:len(b)/2]
		}, want: `corrupt archive`},
		{name: "CorruptZip", path: "/b.zip", body: func(t *testing.T) []byte {
			return []byte("PK not really")
		}, want: `corrupt archive: zip: not a valid zip file`},
		{
			name:   "GzipBombSingleEntry",
			limits: fetch.Limits{MaxFileSize: 8 << 20},
			opts:   fhttp.Options{MaxBodyBytes: 32 << 20},
			body:   func(t *testing.T) []byte { return gzipBomb(t, "zeros", 4<<30) },
			want:   `"zeros": file exceeds 8388608 bytes (max-file-size)`,
		},
		{
			name: "GzipBombOutsideSubdir", path: "/b.tar.gz//conf",
			opts: fhttp.Options{MaxBodyBytes: 32 << 20},
			body: func(t *testing.T) []byte { return gzipBomb(t, "junk/zeros", 4<<30) },
			want: `archive expands past the http-max-body limit of 33554432 bytes`,
		},
		{
			name: "HeaderBomb", path: "/b.tar.gz//conf",
			opts: fhttp.Options{MaxBodyBytes: 8 << 20},
			body: func(t *testing.T) []byte { return headerBomb(t, 20) },
			want: `archive expands past the http-max-body limit of 8388608 bytes`,
		},
		{
			name: "SparseHardlinkBomb", path: "/b.tar.gz//conf",
			opts: fhttp.Options{MaxBodyBytes: 8 << 20},
			body: func(t *testing.T) []byte { return sparseTar(t, 1<<40, "conf/hl") },
			want: `"big": hard-link target expands past the http-max-body limit of 8388608 bytes`,
		},
		{
			name:   "SparseFileBomb",
			limits: fetch.Limits{MaxFileSize: 8 << 20},
			body:   func(t *testing.T) []byte { return sparseTar(t, 1<<40, "hl") },
			want:   `"big": file exceeds 8388608 bytes (max-file-size)`,
		},
		{
			// archive/tar makes up the holes without reading the stream:
			// 200 MiB of file from a 1 KB body, under every default limit.
			name: "SparseFileExpandsPastBodyLimit",
			opts: fhttp.Options{MaxBodyBytes: 1 << 20},
			body: func(t *testing.T) []byte { return sparseTar(t, 200<<20, "") },
			want: `"big": archive expands past the http-max-body limit of 1048576 bytes`,
		},
		{
			name: "HardlinkFanOut",
			opts: fhttp.Options{MaxBodyBytes: 1 << 20},
			body: func(t *testing.T) []byte { return hardlinkFanOut(t, 600<<10, 8) },
			want: `"l0": archive expands past the http-max-body limit of 1048576 bytes`,
		},
		{
			name: "ZipOverlappingEntries", path: "/b.zip",
			opts: fhttp.Options{MaxBodyBytes: 8 << 20},
			body: func(t *testing.T) []byte { return zipOverlap(t, 6, 4<<20) },
			want: `"f2": archive expands past the http-max-body limit of 8388608 bytes`,
		},
		{
			name: "ZipEntryLargerThanDeclared", path: "/b.zip",
			body: func(t *testing.T) []byte { return zipLyingSize(t, 1<<20) },
			want: `corrupt archive: zip: not a valid zip file`,
		},
		{
			name:   "HundredThousandFiles",
			limits: fetch.Limits{MaxFiles: 2000},
			body:   func(t *testing.T) []byte { return manyFiles(t, 100_000) },
			want:   `revision has more than 2000 files (max-files)`,
		},
		{
			name: "BodyOverLimit", path: "/big.conf",
			opts: fhttp.Options{MaxBodyBytes: 1 << 20},
			body: func(t *testing.T) []byte { return bytes.Repeat([]byte("x"), 2<<20) },
			want: `body of 2097152 bytes is over the http-max-body limit of 1048576 bytes`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := cmp.Or(tc.path, "/b.tar.gz")
			_, subdir, _ := strings.Cut(p, "//")
			o := newOrigin(t, false)
			switch {
			case strings.HasPrefix(p, "/b.zip"):
				o.set(zipOf(t, filesOf(prefixed(subdir, good))...))
			case strings.HasSuffix(p, ".conf"):
				o.set([]byte(good["app.yaml"]))
			default:
				o.set(tarOf(t, true, filesOf(prefixed(subdir, good))...))
			}
			v := newVolume(t, tc.limits)
			s := v.source(t, o.url(p), tc.opts)
			first := v.sync(t, s)
			if first.Err != nil {
				t.Fatal(first.Err)
			}
			before := v.tree(t)

			bomb := tc.body(t)
			if tc.name == "GzipBombSingleEntry" && len(bomb) > 8<<20 {
				t.Fatalf("bomb is %d bytes on the wire; it should be small", len(bomb))
			}
			o.set(bomb)
			start := time.Now()
			r := v.sync(t, s)
			t.Logf("refused: %v", r.Err)
			assertError(t, r.Err, tc.want, true)
			if d := time.Since(start); d > 20*time.Second {
				t.Fatalf("refusal took %v", d)
			}
			if cur, _ := v.store.Current("c"); cur != first.Rev {
				t.Fatalf("current revision %q, want the previous %q", cur, first.Rev)
			}
			sourcetest.AssertTree(t, v.tree(t), before)
			assertNothingOutside(t, v, first.Rev, outside)
			assertStateDirClean(t, v.stateDir)
		})
	}
}

// prefixed puts files under dir.
func prefixed(dir string, files map[string]string) map[string]string {
	if dir == "" {
		return files
	}
	out := map[string]string{}
	for p, c := range files {
		out[dir+"/"+p] = c
	}
	return out
}

// assertNothingOutside checks that the test's base directory holds only
// the store's own files: the link, the published revision, its manifest
// and the state file. No staging is left either.
func assertNothingOutside(t *testing.T, h *volume, rev, outside string) {
	t.Helper()
	if _, err := os.Lstat(outside); err == nil {
		t.Fatalf("%s was created", outside)
	}
	revDir := filepath.Join(h.root, ".ferry", "c", rev)
	err := filepath.WalkDir(h.base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case p == revDir || d.IsDir() && strings.HasPrefix(revDir, p+string(filepath.Separator)):
			if p == revDir {
				return filepath.SkipDir
			}
			return nil
		case p == h.store.LinkPath("c"),
			p == filepath.Join(h.root, ".ferry", "lock"),
			p == filepath.Join(h.root, ".ferry", "c", ".meta", rev),
			p == filepath.Join(h.root, ".ferry", "c", ".meta"),
			p == h.stateDir,
			p == filepath.Join(h.stateDir, "http.json"):
			return nil
		}
		t.Errorf("unexpected %s", p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestHardlinkToEarlierEntryIsWrittenAsCopy(t *testing.T) {
	o := newOrigin(t, false)
	o.set(tarOf(t, true,
		file("shared/base.conf", "v1\n"),
		file("shared/base.conf", "v2\n"), // a later version of the same name wins
		entry{name: "conf/a.conf", typeflag: tar.TypeLink, link: "shared/base.conf"},
		entry{name: "conf/b.conf", typeflag: tar.TypeLink, link: "./shared/base.conf"},
		file("conf/own.conf", "own\n"),
		file("shared/base.conf", "v3\n"), // after the links: not theirs
	))
	f := newFixture(t)
	r := mustFetch(t, f.source(t, o.url("/b.tgz//conf"), fhttp.Options{}), "")
	sourcetest.AssertTree(t, r.w.Tree(), map[string]string{"a.conf": "v2\n", "b.conf": "v2\n", "own.conf": "own\n"})
	assertStateDirClean(t, f.stateDir)
}

func TestBodyOverLimitWithoutContentLengthFails(t *testing.T) {
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		// Chunked: the size is known only by reading.
		for i := 0; i < 64; i++ {
			w.Write(bytes.Repeat([]byte("x"), 32<<10))
			w.(nethttp.Flusher).Flush()
		}
	}))
	defer srv.Close()
	f := newFixture(t)
	r := fetchFrom(t, f.source(t, srv.URL+"/big.conf", fhttp.Options{MaxBodyBytes: 1 << 20}), "")
	assertError(t, r.err, "body is over the http-max-body limit of 1048576 bytes", true)
	assertStateDirClean(t, f.stateDir)
}

func TestStalledServerTimesOut(t *testing.T) {
	var stall gosync.Map // path -> true once stalling
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if _, ok := stall.Load(r.URL.Path); !ok {
			w.Write([]byte("good\n"))
			return
		}
		if r.URL.Query().Get("where") == "headers" {
			select { // never answers
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		w.Header().Set("Content-Length", "1048576")
		w.Write(bytes.Repeat([]byte("x"), 1024))
		w.(nethttp.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	for _, where := range []string{"body", "headers"} {
		t.Run(where, func(t *testing.T) {
			f := newFixture(t)
			p := "/" + where + "/app.conf"
			s := f.source(t, srv.URL+p+"?where="+where, fhttp.Options{})
			first := mustFetch(t, s, "")
			stall.Store(p, true)
			start := time.Now()
			r := fetchWithin(t, s, first.rev, 500*time.Millisecond)
			assertError(t, r.err, "timed out", false)
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("timeout took %v", d)
			}
			assertStateDirClean(t, f.stateDir)
		})
	}
}

func TestTruncatedBodyIsAnError(t *testing.T) {
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		conn, buf, err := w.(nethttp.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n")
		buf.WriteString(strings.Repeat("y", 50))
		buf.Flush()
	}))
	defer srv.Close()
	f := newFixture(t)
	r := fetchFrom(t, f.source(t, srv.URL+"/app.conf", fhttp.Options{}), "")
	assertError(t, r.err, "truncated body: got 50 of 100 bytes", false)
	if !r.w.Empty() {
		t.Fatal("a truncated body was written")
	}
	assertStateDirClean(t, f.stateDir)
}
