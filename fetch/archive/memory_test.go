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
	t.Logf("extract: %v; held %d MiB while writing conf/last", err, w.peak>>20)
	if err == nil && w.peak > maxHeld {
		t.Fatalf("extraction held %d MiB for %d entries it never publishes (max-files 1000): memory grows with the archive, not with ferry's limits", w.peak>>20, n)
	}
}

// TestZipCentralDirectoryIsBoundedBeforeItIsRead: archive/zip's NewReader
// decodes the whole central directory into a *zip.File per record (about
// 200 bytes of heap each, plus the name) before the extractor looks at a
// single entry. A record is 46 bytes plus its name and needs no content,
// so memory is about 4-5 times the body, bounded only by http-max-body
// (1 GiB by default) or max-bytes, never by max-files: a 200 MB zip costs
// about 1 GB of heap before the first entry is refused. The test uses
// 300,000 records (about 16 MiB of body), all pointing at one local file,
// against max-files 1,000.
func TestZipCentralDirectoryIsBoundedBeforeItIsRead(t *testing.T) {
	const n = 300_000
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w0, err := zw.Create("f0")
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
		r[len(r)-1] = byte('0' + i%10) // names f0..f9: duplicates past the tenth
		out = append(out, r...)
	}
	end := append([]byte(nil), eocd...)
	// More than 65,535 records: archive/zip reads them all and checks
	// only the count's low 16 bits, as zip files made without zip64 have it.
	binary.LittleEndian.PutUint16(end[8:], uint16(n%65536))
	binary.LittleEndian.PutUint16(end[10:], uint16(n%65536))
	binary.LittleEndian.PutUint32(end[12:], uint32(n*len(record)))
	body := append(out, end...)
	t.Logf("zip of %d records: %d KiB", n, len(body)>>10)

	w := newHeapWriter(fetch.Limits{MaxFiles: 1000})
	err = Extract(context.Background(), w, bytes.NewReader(body), int64(len(body)), Zip,
		Options{MaxBytes: fetch.DefaultMaxBytes, LimitName: "http-max-body", TmpDir: t.TempDir()})
	t.Logf("extract: %v; held %d MiB at the first entry", err, w.peak>>20)
	if w.peak > maxHeld {
		t.Fatalf("extraction held %d MiB before its first entry, for a %d KiB zip (max-files 1000): memory grows with the archive's directory, not with ferry's limits", w.peak>>20, len(body)>>10)
	}
}
