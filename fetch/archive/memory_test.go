package archive

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"runtime"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/fetchtest"
)

// heapWriter is the in-memory Writer that measures the live heap (after a
// GC) the first time the extractor hands it an entry, and again each time
// it hands it a file named "last": what the extractor holds at that
// moment, beyond what the test held before.
type heapWriter struct {
	*fetchtest.Writer
	base uint64
	peak uint64
}

func (h *heapWriter) measure() {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ms.HeapAlloc > h.base && ms.HeapAlloc-h.base > h.peak {
		h.peak = ms.HeapAlloc - h.base
	}
}

func (h *heapWriter) WriteFile(name string, mode fs.FileMode, key string, open fetch.Opener) error {
	if h.peak == 0 || strings.HasSuffix(name, "last") {
		h.measure()
	}
	return h.Writer.WriteFile(name, mode, key, open)
}

func newHeapWriter(l fetch.Limits) *heapWriter {
	h := &heapWriter{Writer: fetchtest.NewWriter(l)}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h.base = ms.HeapAlloc
	return h
}

// maxHeld is what one extraction may hold in memory in these tests, far
// above what the entries published need (two small files).
const maxHeld = 24 << 20

// TestTarEntriesOutsideTheSubdirDoNotGrowMemory: with a //subdir, the
// entries outside it are never handed to the Writer, so max-files does not
// count them, and the first pass must not remember them either: only the
// names in the sub-tree are kept for hard links (a link to a file outside
// it is resolved by a pass over the headers that keeps only the names the
// links want). Before, every regular entry's name was kept, up to the
// decompressed stream bound (1 GiB by default): 512-byte headers with
// 255-byte names, about 2 million entries per GiB, 650 MiB held, from a
// tar.gz of about 16 MiB. Here 150,000 such entries (1.2 MiB of tar.gz)
// held 46 MiB when the sub-tree's last file was written, with max-files
// 1,000.
func TestTarEntriesOutsideTheSubdirDoNotGrowMemory(t *testing.T) {
	const n = 150_000
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	tw := tar.NewWriter(gz)
	dir := strings.Repeat("d", 150)
	for i := range n {
		name := fmt.Sprintf("junk/%s/%s%09d", dir, strings.Repeat("f", 88), i)
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Format: tar.FormatUSTAR}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"conf/first", "conf/last"} {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: 2, Format: tar.FormatUSTAR})
		tw.Write([]byte("x\n"))
	}
	tw.Close()
	gz.Close()
	body := buf.Bytes()
	t.Logf("tar.gz of %d entries: %d KiB on the wire", n+2, len(body)>>10)

	w := newHeapWriter(fetch.Limits{MaxFiles: 1000})
	err := Extract(context.Background(), w, bytes.NewReader(body), int64(len(body)), TarGzip,
		Options{Subdir: "conf", MaxBytes: fetch.DefaultMaxBytes, LimitName: "http-max-body", TmpDir: t.TempDir()})
	if err != nil {
		t.Fatalf("extract: %v", err)
	}
	t.Logf("held %d MiB while writing conf/last", w.peak>>20)
	if w.peak > maxHeld {
		t.Fatalf("extraction held %d MiB for %d entries it never publishes (max-files 1000): memory grows with the archive, not with ferry's limits", w.peak>>20, n)
	}
}

// TestTarHardLinksAreBoundedByMaxFiles: hard links in the sub-tree are held
// until the pass that copies their targets; each becomes a file, so past
// max-files of them the archive is refused at once, rather than held.
func TestTarHardLinksAreBoundedByMaxFiles(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "conf/a", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2})
	tw.Write([]byte("x\n"))
	for i := range 50 {
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("conf/l%d", i), Typeflag: tar.TypeLink, Linkname: "conf/a"})
	}
	tw.Close()
	body := buf.Bytes()
	extract := func(maxFiles int) error {
		w := newHeapWriter(fetch.Limits{MaxFiles: maxFiles})
		return Extract(context.Background(), w, bytes.NewReader(body), int64(len(body)), Tar,
			Options{MaxBytes: fetch.DefaultMaxBytes, MaxFiles: maxFiles, LimitName: "http-max-body", TmpDir: t.TempDir()})
	}
	if err := extract(100); err != nil {
		t.Fatalf("51 files under max-files 100: %v", err)
	}
	if err := extract(20); err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), "hard links") {
		t.Fatalf("50 hard links under max-files 20: %v, want a permanent refusal naming them", err)
	}
}

// TestZipCentralDirectoryIsBoundedBeforeItIsRead: archive/zip's NewReader
// decodes the whole central directory into a *zip.File per record (about
// 200 bytes of heap each, plus the name) before the extractor looks at a
// single entry, and reads records for as long as they follow one another,
// whatever count the end record declares (it checks only the low 16 bits).
// A record is 46 bytes plus its name and needs no content, so memory was
// about 4-5 times the body, bounded only by http-max-body or max-bytes:
// 300,000 records (14 MiB of body) held 54 MiB with max-files 1,000. The
// directory is now refused before it is read, past twice max-files entries
// (files and directories) or 1 KiB of directory per max-files, whether the
// end record declares it or understates it.
func TestZipCentralDirectoryIsBoundedBeforeItIsRead(t *testing.T) {
	for _, tc := range []struct {
		name              string
		records, declared int
		nameLen           int
		want              string
	}{
		// More than 65,535 records, declared modulo 65,536 as zip files
		// made without zip64 have it.
		{"DeclaredCount", 300_000, 300_000 % 65536, 2, "zip archive lists more than 2000 entries, the most max-files allows (1000 files and as many directories)"},
		// 65,541 records declared as 5: archive/zip reads them all.
		{"UnderstatedCount", 65_541, 5, 2, "zip archive lists more than 2000 entries"},
		{"LongNames", 20, 20, 60_000, "zip central directory is larger than 1024000 bytes, 1024 for each of max-files"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := repeatedRecords(t, tc.nameLen, tc.records, tc.declared)
			t.Logf("zip of %d records: %d KiB", tc.records, len(body)>>10)
			w := newHeapWriter(fetch.Limits{MaxFiles: 1000})
			err := Extract(context.Background(), w, bytes.NewReader(body), int64(len(body)), Zip,
				Options{MaxBytes: fetch.DefaultMaxBytes, LimitName: "http-max-body", MaxFiles: 1000, TmpDir: t.TempDir()})
			t.Logf("extract: %v; held %d MiB at the first entry", err, w.peak>>20)
			if w.peak > maxHeld {
				t.Fatalf("extraction held %d MiB before its first entry, for a %d KiB zip (max-files 1000): memory grows with the archive's directory, not with ferry's limits", w.peak>>20, len(body)>>10)
			}
			if err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a permanent refusal saying %q", err, tc.want)
			}
		})
	}
}

// repeatedRecords is a zip of one small file whose central directory
// record (its name nameLen bytes long) is repeated n times, names ending
// in 0 to 9, with an end record that declares only the first declared
// records (and their size) but the directory's true offset: archive/zip
// then reads from that offset, as long as records follow.
func repeatedRecords(t *testing.T, nameLen, n, declared int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w0, err := zw.Create(strings.Repeat("f", nameLen-1) + "0")
	if err != nil {
		t.Fatal(err)
	}
	w0.Write([]byte("x\n"))
	zw.Close()
	b := buf.Bytes()
	const eocdLen = 22
	eocd := b[len(b)-eocdLen:]
	cdStart := int(binary.LittleEndian.Uint32(eocd[16:]))
	record := b[cdStart : len(b)-eocdLen]
	out := append([]byte(nil), b[:cdStart]...)
	for i := range n {
		r := append([]byte(nil), record...)
		r[len(r)-1] = byte('0' + i%10) // duplicate names past the tenth
		out = append(out, r...)
	}
	end := append([]byte(nil), eocd...)
	binary.LittleEndian.PutUint16(end[8:], uint16(declared))
	binary.LittleEndian.PutUint16(end[10:], uint16(declared))
	binary.LittleEndian.PutUint32(end[12:], uint32(declared*len(record)))
	return append(out, end...)
}

// TestZipDirectoryIsWalkedAsArchiveZipReadsIt: the check reads the end
// records and walks the directory from where archive/zip starts, so that
// it counts at least the records archive/zip will decode: in a plain zip,
// a zip64 one, one behind a prefix (a self-extracting archive) and one
// whose end record understates its records.
func TestZipDirectoryIsWalkedAsArchiveZipReadsIt(t *testing.T) {
	zipOf := func(n int) []byte {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		for i := range n {
			// Stored, not deflated: a compressor per entry made the
			// 70,000 of the zip64 case take a minute under -race.
			zw.CreateHeader(&zip.FileHeader{Name: fmt.Sprintf("d/f%d", i), Method: zip.Store})
		}
		zw.Close()
		return buf.Bytes()
	}
	for name, body := range map[string][]byte{
		"Plain":            zipOf(3),
		"Zip64":            zipOf(70_000),
		"Prefixed":         append(bytes.Repeat([]byte("#!/bin/sh\n"), 100), zipOf(3)...),
		"UnderstatedCount": repeatedRecords(t, 2, 65_541, 5),
	} {
		t.Run(name, func(t *testing.T) {
			zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
			if err != nil {
				t.Fatal(err)
			}
			end, ok := readZipEnd(bytes.NewReader(body), int64(len(body)))
			if !ok {
				t.Fatal("end record not found")
			}
			walked := uint64(0)
			for _, start := range end.starts {
				n, _ := walkZipDirectory(bytes.NewReader(body), start, int64(len(body)), 1<<20, 1<<40)
				walked = max(walked, n)
			}
			t.Logf("declared %d, walked %d, archive/zip read %d", end.records, walked, len(zr.File))
			if walked < uint64(len(zr.File)) {
				t.Fatalf("walked %d records, archive/zip read %d", walked, len(zr.File))
			}
			if name != "UnderstatedCount" && end.records != uint64(len(zr.File)) {
				t.Fatalf("the end records declare %d records, archive/zip read %d", end.records, len(zr.File))
			}
		})
	}
}
