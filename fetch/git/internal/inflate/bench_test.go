package inflate

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"io"
	"testing"

	kflate "github.com/klauspost/compress/flate"

	"github.com/ferrysync/ferry/internal/gittest"
)

// benchObjects is what the benchmark repository's pack holds
// (gittest.Blobs), each deflated at zlib's default level as git does (by compress/zlib,
// not git's C zlib). It returns the raw deflate streams laid end to end
// and each one's size inflated.
func benchObjects(n int) (packed []byte, sizes []int) {
	var buf bytes.Buffer
	for _, obj := range gittest.Blobs(n) {
		var z bytes.Buffer
		zw := zlib.NewWriter(&z)
		zw.Write(obj)
		zw.Close()
		buf.Write(z.Bytes()[2 : z.Len()-4]) // the deflate stream inside
		sizes = append(sizes, len(obj))
	}
	return buf.Bytes(), sizes
}

// BenchmarkDecodeObjects decodes benchObjects through a 64 KiB
// bufio.Reader, as the index pass does: with Decode, and with
// klauspost's flate reader, reset for each object and read whole.
func BenchmarkDecodeObjects(b *testing.B) {
	packed, sizes := benchObjects(500)
	total := 0
	for _, s := range sizes {
		total += s
	}
	dst := make([]byte, 16<<10)
	br := bufio.NewReaderSize(nil, 64<<10)
	b.Run("inflate", func(b *testing.B) {
		b.SetBytes(int64(total))
		var d Decoder
		for b.Loop() {
			br.Reset(bytes.NewReader(packed))
			for _, s := range sizes {
				if n, err := d.Decode(dst[:s], br); err != nil || n != s {
					b.Fatal(n, err)
				}
			}
		}
	})
	b.Run("klauspost", func(b *testing.B) {
		b.SetBytes(int64(total))
		fr := kflate.NewReader(nil)
		var one [1]byte
		for b.Loop() {
			br.Reset(bytes.NewReader(packed))
			for _, s := range sizes {
				fr.(kflate.Resetter).Reset(br, nil)
				if n, err := io.ReadFull(fr, dst[:s]); err != nil {
					b.Fatal(n, err)
				}
				if n, err := fr.Read(one[:]); n != 0 || err != io.EOF {
					b.Fatal(n, err)
				}
			}
		}
	})
}
