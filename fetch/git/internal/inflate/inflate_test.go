package inflate

import (
	"bufio"
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"testing"
)

// readerSizes are the bufio.Reader sizes streams are read through: the
// smallest bufio allows, odd ones, and the index pass's and read-back's.
var readerSizes = []int{16, 17, 61, 4096, 16 << 10, 64 << 10}

// trailer follows each stream: the next object's bytes, which Decode
// must leave in the reader.
const trailer = "\xab\xcd\xef"

// decode decodes stream (followed by trailer) into a buffer of dstLen
// bytes through a reader of size bufSize; rest is what is left to read.
func decode(stream []byte, dstLen, bufSize int) (out, rest []byte, err error) {
	br := bufio.NewReaderSize(bytes.NewReader(append(bytes.Clone(stream), trailer...)), bufSize)
	var d Decoder
	dst := make([]byte, dstLen)
	n, err := d.Decode(dst, br)
	rest, _ = io.ReadAll(br)
	return dst[:n], rest, err
}

// flateDecode is compress/flate's decoding of stream, the reference.
func flateDecode(stream []byte) ([]byte, error) {
	return io.ReadAll(flate.NewReader(bytes.NewReader(stream)))
}

// TestDecodeInflatesWhatEncodersWrite: every input, deflated by every
// encoder at every level, decodes to itself through readers of every
// size, and leaves the reader at the byte after the stream; into a buffer
// a byte short, it is too long.
func TestDecodeInflatesWhatEncodersWrite(t *testing.T) {
	for name, src := range inputs() {
		for _, c := range compressors() {
			stream := c.compress(src)
			for _, size := range readerSizes {
				out, rest, err := decode(stream, len(src), size)
				if err != nil || !bytes.Equal(out, src) {
					t.Fatalf("%s, %s, reader of %d: %d of %d bytes, %v", name, c.name, size, len(out), len(src), err)
				}
				if string(rest) != trailer {
					t.Fatalf("%s, %s, reader of %d: left %x after the stream, want %x", name, c.name, size, rest, trailer)
				}
			}
			if out, rest, err := decode(stream, len(src)+100, 4096); err != nil || !bytes.Equal(out, src) || string(rest) != trailer {
				t.Fatalf("%s, %s, into a larger buffer: %d of %d bytes, %v, left %x", name, c.name, len(out), len(src), err, rest)
			}
			if len(src) > 0 {
				if _, _, err := decode(stream, len(src)-1, 4096); !errors.Is(err, ErrTooLong) {
					t.Fatalf("%s, %s, into a buffer a byte short: %v, want ErrTooLong", name, c.name, err)
				}
			}
		}
	}
}

// handBuilt are streams written bit by bit, for what encoders rarely
// write: fixed codes, the longest distance and length, codes of 15 bits,
// a distance code of a single one-bit code, blocks of every kind in turn.
func handBuilt() map[string]*streamWriter {
	r := rand.New(rand.NewPCG(5, 6))
	random := make([]byte, 40_000)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	s := map[string]*streamWriter{}

	w := &streamWriter{}
	w.stored(false, random)
	w.header(true, 1)
	w.match(258, 32768)
	w.match(3, 32768)
	w.match(258, 1)
	w.fixedLit(256)
	s["the longest distance and length"] = w

	w = &streamWriter{}
	w.header(true, 1)
	w.literal('x')
	for range 5 {
		w.match(258, 1)
	}
	w.literal('y')
	w.match(10, 2)
	w.match(7, 12)
	w.fixedLit(256)
	s["fixed runs"] = w

	w = &streamWriter{}
	w.header(true, 1)
	w.fixedLit(256)
	s["an empty fixed block"] = w

	w = &streamWriter{}
	w.stored(true, nil)
	s["an empty stored block"] = w

	w = &streamWriter{}
	w.stored(false, nil)
	w.header(false, 1)
	for _, c := range []byte("hello, hello") {
		w.literal(c)
	}
	w.fixedLit(256)
	w.stored(false, []byte("stored"))
	w.header(false, 1)
	w.match(20, 17) // reaches back across blocks
	w.fixedLit(256)
	lit, dist := make([]uint8, 258), make([]uint8, 1)
	lit['a'], lit['b'], lit[256], lit[257] = 2, 2, 2, 2
	dist[0] = 1 // one code of one bit: its other half is no code
	lc, dc := w.dynamic(false, lit, dist)
	w.code(lc['a'], 2)
	w.code(lc['b'], 2)
	w.code(lc[257], 2) // length 3
	w.code(dc[0], 1)   // distance 1
	w.code(lc[256], 2)
	w.want = append(w.want, "abbbb"...)
	w.stored(true, []byte("end"))
	s["blocks of every kind"] = w

	// Codes of 1 to 15 bits: the longest need the subtables.
	w = &streamWriter{}
	lit, dist = make([]uint8, 286), make([]uint8, 30)
	lit[0], lit[257], lit[256] = 1, 2, 3
	for i := 1; i <= 12; i++ {
		lit[i] = uint8(i + 3)
	}
	lit[13] = 15
	for i := range 15 {
		dist[i] = uint8(i + 1)
	}
	dist[15] = 15
	lc, dc = w.dynamic(true, lit, dist)
	for range 300 {
		w.code(lc[0], 1)
		w.want = append(w.want, 0)
	}
	for i := 1; i <= 13; i++ {
		w.code(lc[i], uint(lit[i]))
		w.want = append(w.want, byte(i))
	}
	for _, d := range []int{1, 2, 5, 100, 193, 200, 256} {
		sym, x, n := distCode(d)
		w.code(lc[257], 2)
		w.code(dc[sym], uint(dist[sym]))
		w.bits(x, n)
		for range 3 {
			w.want = append(w.want, w.want[len(w.want)-d])
		}
	}
	w.code(lc[256], 3)
	s["codes of 15 bits"] = w
	return s
}

// TestDecodeHandBuiltStreams: each hand-built stream decodes to what it
// was written to hold, as compress/flate decodes it, through readers of
// every size, and leaves the reader after it.
func TestDecodeHandBuiltStreams(t *testing.T) {
	for name, w := range handBuilt() {
		stream := w.bytes()
		if ref, err := flateDecode(stream); err != nil || !bytes.Equal(ref, w.want) {
			t.Fatalf("%s: compress/flate decodes %d of %d bytes, %v: the test writes it wrong", name, len(ref), len(w.want), err)
		}
		for _, size := range readerSizes {
			out, rest, err := decode(stream, len(w.want), size)
			if err != nil || !bytes.Equal(out, w.want) || string(rest) != trailer {
				t.Fatalf("%s, reader of %d: %d of %d bytes, %v, left %x", name, size, len(out), len(w.want), err, rest)
			}
		}
	}
}

// refused are streams compress/flate refuses, each for another reason.
func refused() map[string][]byte {
	s := map[string][]byte{}
	add := func(name string, build func(w *streamWriter)) {
		w := &streamWriter{}
		build(w)
		s[name] = w.bytes()
	}
	add("reserved block type", func(w *streamWriter) { w.header(true, 3) })
	add("stored length check", func(w *streamWriter) {
		w.header(true, 0)
		w.align()
		w.bits(5|5<<16, 32)
		w.out = append(w.out, "hello"...)
	})
	add("distance before the start", func(w *streamWriter) {
		w.header(true, 1)
		w.literal('a')
		w.match(3, 2)
		w.fixedLit(256)
	})
	add("length symbol 286", func(w *streamWriter) {
		w.header(true, 1)
		w.fixedLit(286)
	})
	add("length symbol 287", func(w *streamWriter) {
		w.header(true, 1)
		w.fixedLit(287)
	})
	for _, sym := range []uint32{30, 31} {
		add("distance symbol "+strconv.Itoa(int(sym)), func(w *streamWriter) {
			w.header(true, 1)
			w.literal('a')
			w.fixedLit(257)
			w.code(sym, 5)
			w.fixedLit(256)
		})
	}
	dyn := func(name string, lit, dist []uint8, body func(w *streamWriter, lc, dc []uint32)) {
		add(name, func(w *streamWriter) {
			lc, dc := w.dynamic(true, lit, dist)
			body(w, lc, dc)
		})
	}
	complete := func() []uint8 {
		l := make([]uint8, 257)
		l['a'], l[256] = 1, 1
		return l
	}
	eob := func(w *streamWriter, lc, dc []uint32) { w.code(lc[256], 1) }
	dyn("287 literal/length codes", append(complete(), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), []uint8{1}, eob)
	dyn("31 distance codes", complete(), make([]uint8, 31), eob)
	over := complete()
	over['b'] = 1
	dyn("over-subscribed literal/length code", over, []uint8{1}, eob)
	incomplete := complete()
	incomplete['a'] = 2
	dyn("incomplete literal/length code", incomplete, []uint8{1}, eob)
	single := make([]uint8, 257)
	single[256] = 2
	dyn("a single literal/length code of two bits", single, []uint8{1}, func(w *streamWriter, lc, dc []uint32) { w.code(0, 2) })
	dyn("incomplete distance code", complete(), []uint8{2, 2, 2}, eob)
	withLen := func() []uint8 {
		l := make([]uint8, 258)
		l['a'], l[256], l[257] = 1, 2, 2
		return l
	}
	dyn("the other half of a one-bit distance code", withLen(), []uint8{1}, func(w *streamWriter, lc, dc []uint32) {
		w.code(lc['a'], 1)
		w.code(lc[257], 2)
		w.code(1, 1)
		w.code(lc[256], 2)
	})
	dyn("a length with no distance code", withLen(), []uint8{0}, func(w *streamWriter, lc, dc []uint32) {
		w.code(lc['a'], 1)
		w.code(lc[257], 2)
		w.code(0, 1)
		w.code(lc[256], 2)
	})
	dyn("the other half of a one-bit literal/length code", []uint8{256: 1}, []uint8{1}, func(w *streamWriter, lc, dc []uint32) {
		w.code(1, 1)
	})
	code := func(name string, lens [19]uint8, syms func(w *streamWriter)) {
		add(name, func(w *streamWriter) {
			w.header(true, 2)
			w.bits(0, 5)
			w.bits(0, 5)
			w.bits(19-4, 4)
			for _, s := range codeOrder {
				w.bits(uint64(lens[s]), 3)
			}
			syms(w)
		})
	}
	var four [19]uint8
	for i := range 16 {
		four[i] = 4
	}
	code("incomplete code lengths code", [19]uint8{1: 2, 2: 2, 3: 2}, func(w *streamWriter) {})
	code("over-subscribed code lengths code", [19]uint8{1: 1, 2: 1, 3: 1}, func(w *streamWriter) {})
	withRepeat := [19]uint8{0: 2, 1: 2, 16: 2, 18: 2}
	code("a repeat of no length", withRepeat, func(w *streamWriter) { w.code(2, 2) }) // symbol 16 first
	code("zeros past the last length", withRepeat, func(w *streamWriter) {
		for range 3 {
			w.code(3, 2) // symbol 18
			w.bits(127, 7)
		}
	})
	code("lengths past the last one", withRepeat, func(w *streamWriter) {
		w.code(1, 2) // a length of 1
		for range 200 {
			w.code(2, 2) // symbol 16: three more
			w.bits(0, 2)
		}
	})
	add("no final block", func(w *streamWriter) {
		w.header(false, 1)
		w.fixedLit(256)
	})
	s["no stream"] = nil
	return s
}

// TestDecodeRefusesWhatFlateRefuses: each stream compress/flate refuses
// is refused, through readers of every size.
func TestDecodeRefusesWhatFlateRefuses(t *testing.T) {
	for name, stream := range refused() {
		if _, err := flateDecode(stream); err == nil {
			t.Fatalf("%s: compress/flate accepts it: the test writes it wrong", name)
		}
		for _, size := range readerSizes {
			if out, _, err := decode(stream, 1<<16, size); err == nil {
				t.Fatalf("%s, reader of %d: accepted, %d bytes", name, size, len(out))
			}
		}
	}
}

// TestDecodeTruncatedStreamIsUnexpectedEOF cuts streams of every kind
// at every byte: each cut is an unexpected end, whatever the reader.
func TestDecodeTruncatedStreamIsUnexpectedEOF(t *testing.T) {
	streams := map[string][]byte{}
	sizes := map[string]int{} // what each decodes to whole
	for name, w := range handBuilt() {
		if len(w.want) < 10_000 {
			streams[name], sizes[name] = w.bytes(), len(w.want)
		}
	}
	text := textFor(t, 3000, 9)
	random := bytes.Repeat(text[:1000], 2)
	r := rand.New(rand.NewPCG(1, 1))
	for i := range random[:1000] {
		random[i] = byte(r.Uint32())
	}
	for _, c := range compressors() {
		if c.name == "flate/6" || c.name == "flate/-2" || c.name == "flate/0" || c.name == "klauspost/1" {
			streams[c.name+" text"], sizes[c.name+" text"] = c.compress(text), len(text)
			streams[c.name+" partly random"], sizes[c.name+" partly random"] = c.compress(random), len(random)
		}
	}
	for name, stream := range streams {
		for cut := range len(stream) {
			// Into a buffer with room to spare, and into one of the
			// size the whole stream fills: the zeros read past the end
			// of input must not make a literal too many or a distance
			// code invalid.
			for _, dst := range []int{1 << 16, sizes[name]} {
				for _, size := range []int{16, 4096} {
					br := bufio.NewReaderSize(bytes.NewReader(stream[:cut]), size)
					var d Decoder
					if _, err := d.Decode(make([]byte, dst), br); err != io.ErrUnexpectedEOF {
						t.Fatalf("%s cut at %d of %d, into %d bytes, reader of %d: %v, want io.ErrUnexpectedEOF", name, cut, len(stream), dst, size, err)
					}
				}
			}
		}
	}
	// A fixed block cut inside a distance code: the zeros after its
	// four 1-bits would read as code 30, which deflate reserves.
	var d Decoder
	if _, err := d.Decode(make([]byte, 64), bufio.NewReader(bytes.NewReader([]byte{0x4b, 0x3c, 0x71, 0x12, 0xf8}))); err != io.ErrUnexpectedEOF {
		t.Errorf("cut inside a distance code: %v, want io.ErrUnexpectedEOF", err)
	}
}

// failing reads a stream, then fails.
type failing struct{ r io.Reader }

var errRead = errors.New("connection reset")

func (f *failing) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		err = errRead
	}
	return n, err
}

// TestDecodeReportsItsReadersError: a stream cut by a failing read gives
// the read's error, not an unexpected end.
func TestDecodeReportsItsReadersError(t *testing.T) {
	src := textFor(t, 50_000, 2)
	stream := compressors()[2*8].compress(src) // flate/6
	for _, size := range []int{16, 4096} {
		br := bufio.NewReaderSize(&failing{bytes.NewReader(stream[:len(stream)/2])}, size)
		var d Decoder
		if _, err := d.Decode(make([]byte, len(src)), br); !errors.Is(err, errRead) {
			t.Fatalf("reader of %d: %v, want %v", size, err, errRead)
		}
	}
}

// TestDecoderIsReusable: one Decoder decodes streams of every kind in
// turn, tables from one block never leaking into the next stream.
func TestDecoderIsReusable(t *testing.T) {
	var all bytes.Buffer
	var want [][]byte
	for _, w := range handBuilt() {
		all.Write(w.bytes())
		want = append(want, w.want)
	}
	for _, src := range inputs() {
		all.Write(compressors()[2*8].compress(src))
		want = append(want, src)
	}
	all.WriteString(trailer)
	var d Decoder
	for _, size := range readerSizes {
		br := bufio.NewReaderSize(bytes.NewReader(all.Bytes()), size)
		for i, w := range want {
			dst := make([]byte, len(w))
			if n, err := d.Decode(dst, br); err != nil || !bytes.Equal(dst[:n], w) {
				t.Fatalf("reader of %d, stream %d: %d of %d bytes, %v", size, i, n, len(w), err)
			}
		}
		if rest, _ := io.ReadAll(br); string(rest) != trailer {
			t.Fatalf("reader of %d: left %x", size, rest)
		}
	}
}
