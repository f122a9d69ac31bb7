package inflate

import (
	"bufio"
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"testing"
)

// FuzzDecodeAgreesWithFlate: on any input, Decode accepts what
// compress/flate accepts, with the same output and the same bytes
// consumed, and refuses what it refuses; it never panics and never
// writes past its buffer.
func FuzzDecodeAgreesWithFlate(f *testing.F) {
	for _, w := range handBuilt() {
		if len(w.want) < 1000 {
			f.Add(w.bytes(), uint16(0))
		}
	}
	for _, stream := range refused() {
		f.Add(stream, uint16(1))
	}
	text := textFor(f, 2000, 3)
	for i, c := range compressors() {
		if i%5 == 0 {
			f.Add(c.compress(text), uint16(i*7))
		}
	}
	f.Fuzz(agreesWithFlate)
}

// agreesWithFlate is the fuzz test's check of one input.
func agreesWithFlate(t *testing.T, stream []byte, bufSize uint16) {
	{
		const limit = 64 << 10
		src := bytes.NewReader(stream) // an io.ByteReader: flate reads no byte past the stream
		want, werr := io.ReadAll(io.LimitReader(flate.NewReader(src), limit+1))
		used := len(stream) - src.Len()

		decode := func(dstLen, size int) (out []byte, used int, err error) {
			buf := make([]byte, dstLen+64)
			for i := range buf[dstLen:] {
				buf[dstLen+i] = 0x5a
			}
			r := bytes.NewReader(stream)
			br := bufio.NewReaderSize(r, size)
			var d Decoder
			n, err := d.Decode(buf[:dstLen], br)
			if n < 0 || n > dstLen {
				t.Fatalf("wrote %d bytes into a buffer of %d", n, dstLen)
			}
			for _, c := range buf[dstLen:] {
				if c != 0x5a {
					t.Fatalf("wrote past the buffer of %d bytes", dstLen)
				}
			}
			if err != nil && !errors.Is(err, ErrTooLong) && !errors.Is(err, ErrCorrupt) && err != io.ErrUnexpectedEOF {
				t.Fatalf("error of no known kind: %v", err)
			}
			return buf[:n], len(stream) - r.Len() - br.Buffered(), err
		}
		sizes := []int{16, 16 + int(bufSize)}
		switch {
		case len(want) > limit:
			for _, size := range sizes {
				if _, _, err := decode(limit, size); !errors.Is(err, ErrTooLong) {
					t.Fatalf("compress/flate decodes more than %d bytes; into that many, reader of %d: %v", limit, size, err)
				}
			}
		case werr != nil:
			// Refused for the same reason: a truncated stream is not
			// called corrupt, nor a corrupt one truncated.
			var ce flate.CorruptInputError
			for _, size := range sizes {
				out, _, err := decode(limit, size)
				switch {
				case err == nil:
					t.Fatalf("compress/flate refuses it (%v); reader of %d: accepted, %d bytes", werr, size, len(out))
				case werr == io.ErrUnexpectedEOF && err != io.ErrUnexpectedEOF,
					errors.As(werr, &ce) && !errors.Is(err, ErrCorrupt):
					t.Fatalf("compress/flate: %v; reader of %d: %v", werr, size, err)
				}
			}
		default:
			for _, size := range sizes {
				for _, extra := range []int{0, 1, 100} {
					out, n, err := decode(len(want)+extra, size)
					if err != nil || !bytes.Equal(out, want) {
						t.Fatalf("reader of %d, buffer %d bytes over: %d of %d bytes, %v", size, extra, len(out), len(want), err)
					}
					if n != used {
						t.Fatalf("reader of %d: consumed %d bytes, compress/flate %d", size, n, used)
					}
				}
				if len(want) > 0 {
					if _, _, err := decode(len(want)-1, size); !errors.Is(err, ErrTooLong) {
						t.Fatalf("reader of %d, a byte short: %v, want ErrTooLong", size, err)
					}
				}
			}
		}
	}
}
