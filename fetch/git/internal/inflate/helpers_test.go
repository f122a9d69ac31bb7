package inflate

import (
	"bytes"
	"compress/flate"
	"math/bits"
	"math/rand/v2"
	"strconv"
	"testing"

	kflate "github.com/klauspost/compress/flate"

	"github.com/ferrysync/ferry/internal/gittest"
)

// compressor is a DEFLATE encoder at one level.
type compressor struct {
	name     string
	compress func(src []byte) []byte
}

// compressors are compress/flate's and klauspost's encoders at every
// level, stored (0) and Huffman-only (-2) included.
func compressors() []compressor {
	var cs []compressor
	for level := -2; level <= 9; level++ {
		cs = append(cs,
			compressor{"flate/" + strconv.Itoa(level), func(src []byte) []byte {
				var b bytes.Buffer
				w, err := flate.NewWriter(&b, level)
				if err != nil {
					panic(err)
				}
				w.Write(src)
				w.Close()
				return b.Bytes()
			}},
			compressor{"klauspost/" + strconv.Itoa(level), func(src []byte) []byte {
				var b bytes.Buffer
				w, err := kflate.NewWriter(&b, level)
				if err != nil {
					panic(err)
				}
				w.Write(src)
				w.Close()
				return b.Bytes()
			}})
	}
	return cs
}

// inputs are data of the shapes a pack holds, and sizes around the
// window's and the readers' boundaries.
func inputs() map[string][]byte {
	r := rand.New(rand.NewPCG(3, 4))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	text := func(n int) []byte {
		b := make([]byte, n)
		gittest.FillText(r, b)
		return b
	}
	mixed := func(n int) []byte {
		var b []byte
		for len(b) < n {
			if r.IntN(5) == 0 {
				b = append(b, random(r.IntN(3000))...)
			} else {
				b = append(b, text(r.IntN(20000))...)
			}
		}
		return b[:n]
	}
	in := map[string][]byte{
		"empty":      {},
		"one byte":   {'x'},
		"text":       text(10_000),
		"random":     random(10_000),
		"repetitive": bytes.Repeat([]byte("a"), 100_000),
		"pattern":    bytes.Repeat([]byte("abcdefghijk"), 9000),
	}
	for _, n := range []int{32<<10 - 1, 32 << 10, 32<<10 + 1, 64<<10 - 1, 64 << 10, 64<<10 + 1, 200_000} {
		in["mixed/"+strconv.Itoa(n)] = mixed(n)
	}
	return in
}

// streamWriter writes DEFLATE by hand, bit by bit, and keeps what it
// should decode to.
type streamWriter struct {
	out  []byte
	acc  uint64
	n    uint
	want []byte
}

// bits writes the n low bits of v, lowest first.
func (w *streamWriter) bits(v uint64, n uint) {
	w.acc |= v << w.n
	w.n += n
	for w.n >= 8 {
		w.out = append(w.out, byte(w.acc))
		w.acc >>= 8
		w.n -= 8
	}
}

// code writes a Huffman code of n bits, which go highest first.
func (w *streamWriter) code(c uint32, n uint) {
	w.bits(uint64(bits.Reverse32(c)>>(32-n)), n)
}

// align writes zero bits up to the next byte.
func (w *streamWriter) align() {
	if w.n > 0 {
		w.bits(0, 8-w.n)
	}
}

func (w *streamWriter) bytes() []byte {
	w.align()
	return w.out
}

// header starts a block of type typ.
func (w *streamWriter) header(final bool, typ uint64) {
	f := uint64(0)
	if final {
		f = 1
	}
	w.bits(f|typ<<1, 3)
}

// stored writes a stored block of p.
func (w *streamWriter) stored(final bool, p []byte) {
	w.header(final, 0)
	w.align()
	n := uint64(len(p))
	w.bits(n|(^n&0xffff)<<16, 32)
	w.out = append(w.out, p...)
	w.want = append(w.want, p...)
}

// fixedLit writes symbol sym of the fixed literal/length code.
func (w *streamWriter) fixedLit(sym int) {
	switch {
	case sym < 144:
		w.code(uint32(0x30+sym), 8)
	case sym < 256:
		w.code(uint32(0x190+sym-144), 9)
	case sym < 280:
		w.code(uint32(sym-256), 7)
	default:
		w.code(uint32(0xc0+sym-280), 8)
	}
}

// literal writes byte c with the fixed code.
func (w *streamWriter) literal(c byte) {
	w.fixedLit(int(c))
	w.want = append(w.want, c)
}

// lengthCode returns the symbol, extra bits and their count of a length.
func lengthCode(length int) (sym int, extra uint64, n uint) {
	i := len(lengthBase) - 1
	for int(lengthBase[i]) > length {
		i--
	}
	return 257 + i, uint64(length - int(lengthBase[i])), uint(lengthExtra[i])
}

// distCode returns the symbol, extra bits and their count of a distance.
func distCode(dist int) (sym int, extra uint64, n uint) {
	i := len(distBase) - 1
	for int(distBase[i]) > dist {
		i--
	}
	return i, uint64(dist - int(distBase[i])), uint(distExtra[i])
}

// match writes a length and distance with the fixed codes.
func (w *streamWriter) match(length, dist int) {
	sym, x, n := lengthCode(length)
	w.fixedLit(sym)
	w.bits(x, n)
	sym, x, n = distCode(dist)
	w.code(uint32(sym), 5)
	w.bits(x, n)
	for range length {
		if dist > len(w.want) {
			return // a stream to be refused
		}
		w.want = append(w.want, w.want[len(w.want)-dist])
	}
}

// canonical returns the codes RFC 1951 3.2.2 gives the lengths lens.
func canonical(lens []uint8) []uint32 {
	var count, next [16]uint32
	for _, l := range lens {
		count[l]++
	}
	count[0] = 0
	code := uint32(0)
	for l := 1; l < 16; l++ {
		code = (code + count[l-1]) << 1
		next[l] = code
	}
	codes := make([]uint32, len(lens))
	for s, l := range lens {
		if l != 0 {
			codes[s] = next[l]
			next[l]++
		}
	}
	return codes
}

// dynamic starts a dynamic block with the literal/length lengths lit and
// distance lengths dist, written with a code lengths code that gives
// lengths 0-15 four bits each (no repeats), and returns the two codes.
func (w *streamWriter) dynamic(final bool, lit, dist []uint8) (litCodes, distCodes []uint32) {
	w.header(final, 2)
	w.bits(uint64(len(lit)-257), 5)
	w.bits(uint64(len(dist)-1), 5)
	w.bits(19-4, 4)
	for _, sym := range codeOrder {
		if sym < 16 {
			w.bits(4, 3)
		} else {
			w.bits(0, 3)
		}
	}
	for _, l := range append(append([]uint8{}, lit...), dist...) {
		w.code(uint32(l), 4) // symbol l's code is l: sixteen codes of four bits
	}
	return canonical(lit), canonical(dist)
}

// textFor returns n bytes of gittest's config-file text.
func textFor(t testing.TB, n int, seed uint64) []byte {
	b := make([]byte, n)
	gittest.FillText(rand.New(rand.NewPCG(seed, seed)), b)
	return b
}
