package inflate

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	kflate "github.com/klauspost/compress/flate"
)

// benchObjects is what the benchmark repository's pack holds: files of
// about 10 KB, YAML-like text, every fifth one random bytes, each
// deflated at zlib's default level as git does. It returns the raw
// deflate streams laid end to end and each one's size inflated.
func benchObjects(n int) (packed []byte, sizes []int) {
	r := rand.New(rand.NewPCG(7, 8))
	var buf bytes.Buffer
	for i := range n {
		obj := make([]byte, 9000+r.IntN(2000))
		if i%5 == 4 {
			for j := range obj {
				obj[j] = byte(r.Uint32())
			}
		} else {
			fillText(r, obj)
		}
		var z bytes.Buffer
		zw := zlib.NewWriter(&z)
		zw.Write(obj)
		zw.Close()
		buf.Write(z.Bytes()[2 : z.Len()-4]) // the deflate stream inside
		sizes = append(sizes, len(obj))
	}
	return buf.Bytes(), sizes
}

var words = [...]string{
	"replicas", "image", "port", "timeout", "enabled", "region", "limit", "cache",
	"backend", "frontend", "service", "route", "weight", "retries", "level", "queue",
	"cluster", "zone", "primary", "replica", "secret", "volume", "mount", "probe",
}

// fillText fills b with config-file lines such as "route_probe: shard-48213".
func fillText(r *rand.Rand, b []byte) {
	var line []byte
	for off := 0; off < len(b); {
		line = fmt.Appendf(line[:0], "%s_%s: %s-%d\n",
			words[r.IntN(len(words))], words[r.IntN(len(words))], words[r.IntN(len(words))], r.IntN(100_000))
		off += copy(b[off:], line)
	}
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
