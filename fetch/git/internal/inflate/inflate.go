// Package inflate decodes a whole DEFLATE stream (RFC 1951) of a known
// size into the caller's buffer, as a pack object is: the buffer is the
// LZ77 window, so nothing is copied twice, and no byte past the stream's
// end is consumed from the reader. It accepts what compress/flate
// accepts, with the same output, and refuses what it refuses.
package inflate

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrTooLong is the error of a stream that decodes to more bytes than
// the buffer given to Decode holds.
var ErrTooLong = errors.New("inflate: stream decodes to more than the buffer holds")

// ErrCorrupt is wrapped by the error of a stream that is not DEFLATE.
var ErrCorrupt = errors.New("inflate: corrupt stream")

func corrupt(why string) error { return fmt.Errorf("%w: %s", ErrCorrupt, why) }

// codeOrder is the order of the code length code's lengths (RFC 1951
// 3.2.7).
var codeOrder = [19]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

// A Decoder decodes DEFLATE streams one after another. Its tables are
// reused from stream to stream; the zero value is ready to use.
type Decoder struct {
	lit  [litTableSize]uint32
	dist [distTableSize]uint32
	pre  [1 << preBits]uint32
	lens [286 + 30]uint8

	// The input: in is what br held when last peeked, from where the
	// stream was then; bytes before pos were loaded into bb.
	br   *bufio.Reader
	in   []byte
	pos  int
	eof  bool  // br has nothing past in
	rerr error // why, when it is not the end of input
	// bb holds bl bits read from the input, the first in its lowest bit;
	// the bits above may be those of in[pos:]. At the end of input it is
	// filled with zero bytes (overrun of them): a stream that ends uses
	// none of them, a truncated one does.
	bb      uint64
	bl      uint
	overrun int

	dst []byte
	out int

	stored4 [4]byte // a stored block's LEN and NLEN
}

// Decode inflates the raw DEFLATE stream at br's position into dst and
// returns how many bytes it wrote. br is left at the first byte after the
// stream: bits of the stream's last byte that the stream does not use are
// dropped, as zlib does. A stream that decodes to more than len(dst) bytes
// gives ErrTooLong; one that ends before its end, io.ErrUnexpectedEOF (or
// the error of br's reader); a distance before dst[0] is corrupt, as there
// is no preset dictionary. Bytes of dst past the n written may be
// overwritten too (a match is copied eight bytes at a time).
func (d *Decoder) Decode(dst []byte, br *bufio.Reader) (int, error) {
	shared.once.Do(initShared)
	d.br, d.pos, d.eof, d.rerr = br, 0, false, nil
	d.in, _ = br.Peek(br.Buffered())
	d.bb, d.bl, d.overrun = 0, 0, 0
	d.dst, d.out = dst, 0
	err := d.decode()
	n := d.out
	d.br, d.in, d.dst = nil, nil, nil
	return n, err
}

func (d *Decoder) decode() error {
	for {
		if d.bl < 3 && !d.refill() {
			return d.truncated()
		}
		final := d.bb&1 != 0
		typ := d.bb >> 1 & 3
		d.consume(3)
		var err error
		switch typ {
		case 0:
			err = d.stored()
		case 1:
			err = d.huffman(&shared.fixedLit, &shared.fixedDst)
		case 2:
			if err = d.readTables(); err == nil {
				err = d.huffman(&d.lit, &d.dist)
			}
		default:
			err = corrupt("reserved block type")
		}
		if err != nil {
			if d.pastEnd() {
				return d.truncated()
			}
			return err
		}
		if final {
			return d.finish()
		}
	}
}

// finish gives the whole bytes bb holds back to br: they follow the
// stream.
func (d *Decoder) finish() error {
	if d.pastEnd() {
		return d.truncated()
	}
	d.giveBack()
	d.br.Discard(d.pos) // cannot fail: pos is within what br holds
	return nil
}

// giveBack returns to in the whole bytes bb holds that came from it (not
// the zeros past the end of input): they are read again, or follow the
// stream.
func (d *Decoder) giveBack() {
	d.pos -= int(d.bl/8) - d.overrun
}

// pastEnd tells whether a bit past the end of input was consumed.
func (d *Decoder) pastEnd() bool {
	return d.overrun > 0 && d.bl < uint(d.overrun)*8
}

func (d *Decoder) truncated() error {
	if d.rerr != nil {
		return d.rerr
	}
	return io.ErrUnexpectedEOF
}

func (d *Decoder) consume(n uint) {
	d.bb >>= n
	d.bl -= n
}

// refill makes bb hold at least 56 bits, or reports that the stream went
// past the end of input.
func (d *Decoder) refill() bool {
	if d.pos+8 <= len(d.in) {
		// Eight bytes at once; those that do not fit whole stay in in
		// (their bits above bl are the same next time).
		d.bb |= binary.LittleEndian.Uint64(d.in[d.pos:]) << (d.bl & 63)
		d.pos += int(63-d.bl) >> 3
		d.bl |= 56
		return true
	}
	return d.refillSlow()
}

// refillSlow is refill near the end of what br holds: it reads more, or
// byte by byte, and past the end of input, zeros.
func (d *Decoder) refillSlow() bool {
	if d.pastEnd() {
		return false
	}
	if !d.eof {
		d.more()
		if d.pos+8 <= len(d.in) {
			return d.refill()
		}
	}
	d.bb &= 1<<d.bl - 1
	for d.bl < 56 {
		var c byte
		switch {
		case d.pos < len(d.in):
			c = d.in[d.pos]
			d.pos++
		case !d.eof:
			d.more()
			continue
		default:
			d.overrun++
		}
		d.bb |= uint64(c) << d.bl
		d.bl += 8
	}
	return true
}

// more gives the whole bytes in bb back, discards what was read from br,
// and peeks at what br holds then, after a read if that is little. That
// read may wait for bytes past the stream's end (refill asks for 56 bits
// where the end of block may need 7): in a pack, the next object or the
// pack's trailer, which come; the early export of an object that ends a
// download's chunk waits for the next chunk.
func (d *Decoder) more() {
	whole := int(d.bl / 8)
	d.pos -= whole
	d.bl -= uint(whole) * 8
	d.bb &= 1<<d.bl - 1
	d.br.Discard(d.pos)
	d.pos = 0
	if n := d.br.Buffered(); n < 64 {
		switch _, err := d.br.Peek(n + 1); err {
		case nil, bufio.ErrBufferFull:
		case io.EOF:
			d.eof = true
		default:
			d.eof, d.rerr = true, err
		}
	}
	d.in, _ = d.br.Peek(d.br.Buffered())
}

// stored copies a stored block (RFC 1951 3.2.4).
func (d *Decoder) stored() error {
	if d.pastEnd() {
		return d.truncated()
	}
	// It starts at the next byte: the bits left of this one are dropped,
	// whole bytes in bb are read again from in.
	d.giveBack()
	d.bb, d.bl, d.overrun = 0, 0, 0
	hdr := d.stored4[:] // not an array of its own: read lets it escape
	if !d.read(hdr) {
		return d.truncated()
	}
	n := int(binary.LittleEndian.Uint16(hdr[:]))
	if uint16(n) != ^binary.LittleEndian.Uint16(hdr[2:]) {
		return corrupt("stored block length check")
	}
	if n > len(d.dst)-d.out {
		return ErrTooLong
	}
	if !d.read(d.dst[d.out : d.out+n]) {
		return d.truncated()
	}
	d.out += n
	return nil
}

// read fills p from the input, when bb is empty.
func (d *Decoder) read(p []byte) bool {
	k := copy(p, d.in[d.pos:])
	d.pos += k
	if k == len(p) {
		return true
	}
	// The rest straight from br, which reads a large p without copying
	// it through its buffer.
	d.br.Discard(d.pos)
	d.pos, d.in = 0, nil
	if d.eof {
		return false
	}
	if _, err := io.ReadFull(d.br, p[k:]); err != nil {
		if err != io.EOF && err != io.ErrUnexpectedEOF {
			d.rerr = err
		}
		d.eof = true
		return false
	}
	d.in, _ = d.br.Peek(d.br.Buffered())
	return true
}

// readTables reads a dynamic block's codes (RFC 1951 3.2.7) into d.lit
// and d.dist.
func (d *Decoder) readTables() error {
	if d.bl < 14 && !d.refill() {
		return d.truncated()
	}
	nlit := int(d.bb&31) + 257
	ndist := int(d.bb>>5&31) + 1
	nclen := int(d.bb>>10&15) + 4
	d.consume(14)
	if nlit > 286 || ndist > 30 {
		return corrupt("too many codes")
	}
	var clens [19]uint8
	for _, i := range codeOrder[:nclen] {
		if d.bl < 3 && !d.refill() {
			return d.truncated()
		}
		clens[i] = uint8(d.bb & 7)
		d.consume(3)
	}
	if !build(d.pre[:], preBits, clens[:], shared.preInfo[:]) {
		return corrupt("invalid code lengths code")
	}
	lens := d.lens[:nlit+ndist]
	for i := 0; i < len(lens); {
		if d.bl < 14 && !d.refill() {
			return d.truncated()
		}
		e := d.pre[d.bb&(1<<preBits-1)]
		if e&badFlag != 0 {
			return corrupt("invalid code length code")
		}
		d.consume(uint(e & 15))
		sym := e >> 16
		if sym < 16 {
			lens[i] = uint8(sym)
			i++
			continue
		}
		var rep int
		var val uint8
		switch sym {
		case 16:
			if i == 0 {
				return corrupt("repeat of no code length")
			}
			rep, val = 3+int(d.bb&3), lens[i-1]
			d.consume(2)
		case 17:
			rep = 3 + int(d.bb&7)
			d.consume(3)
		default:
			rep = 11 + int(d.bb&127)
			d.consume(7)
		}
		if rep > len(lens)-i {
			return corrupt("code lengths repeated past their end")
		}
		for j := range lens[i : i+rep] {
			lens[i+j] = val
		}
		i += rep
	}
	if !build(d.lit[:], litBits, lens[:nlit], shared.litInfo[:]) {
		return corrupt("invalid literal/length code")
	}
	if !build(d.dist[:], distBits, lens[nlit:], shared.distInfo[:]) {
		return corrupt("invalid distance code")
	}
	return nil
}

// huffman decodes a block's codes (RFC 1951 3.2.5) with the tables lt
// and dt, up to its end of block.
func (d *Decoder) huffman(lt *[litTableSize]uint32, dt *[distTableSize]uint32) error {
	// In locals, which the compiler keeps in registers.
	bb, bl, in, pos := d.bb, d.bl, d.in, d.pos
	dst, out := d.dst, d.out
	var err error
	for {
		// 56 bits or more: enough for three literals, or two and a
		// length code (at most 15 bits each) and its extra bits (5).
		if pos+8 <= len(in) { // refill, inlined: it is the hot loop
			bb |= binary.LittleEndian.Uint64(in[pos:]) << (bl & 63)
			pos += int(63-bl) >> 3
			bl |= 56
		} else {
			d.bb, d.bl, d.pos = bb, bl, pos
			ok := d.refillSlow()
			bb, bl, in, pos = d.bb, d.bl, d.in, d.pos
			if !ok {
				err = io.ErrUnexpectedEOF
				break
			}
		}
		// Up to three literals on one refill, the same lines written out
		// three times (56 bits hold three codes of 15).
		e := lt[bb&(1<<litBits-1)]
		if e&subFlag != 0 {
			e = lt[int(e>>16)+int(bb>>litBits)&(1<<(e>>8&15)-1)]
		}
		if e&litFlag != 0 {
			n := uint(e & 15)
			bb >>= n
			bl -= n
			if uint(out) >= uint(len(dst)) {
				err = ErrTooLong // or truncated: decode tells, from the bits used
				break
			}
			dst[out] = byte(e >> 16)
			out++
			if e = lt[bb&(1<<litBits-1)]; e&subFlag != 0 {
				e = lt[int(e>>16)+int(bb>>litBits)&(1<<(e>>8&15)-1)]
			}
			if e&litFlag != 0 {
				n := uint(e & 15)
				bb >>= n
				bl -= n
				if uint(out) >= uint(len(dst)) {
					err = ErrTooLong // or truncated: decode tells, from the bits used
					break
				}
				dst[out] = byte(e >> 16)
				out++
				if e = lt[bb&(1<<litBits-1)]; e&subFlag != 0 {
					e = lt[int(e>>16)+int(bb>>litBits)&(1<<(e>>8&15)-1)]
				}
				if e&litFlag != 0 {
					n := uint(e & 15)
					bb >>= n
					bl -= n
					if uint(out) >= uint(len(dst)) {
						err = ErrTooLong // or truncated: decode tells, from the bits used
						break
					}
					dst[out] = byte(e >> 16)
					out++
					continue
				}
			}
		}
		if e&(eobFlag|badFlag) != 0 {
			bb >>= e & 15
			bl -= uint(e & 15)
			if e&badFlag != 0 {
				err = corrupt("invalid literal/length code")
			}
			break
		}
		n := uint(e & 15)
		bb >>= n
		bl -= n
		n = uint(e>>8) & 15
		length := int(e>>16) + int(bb&(1<<n-1))
		bb >>= n
		bl -= n

		// 28 bits or more: a distance code and its extra bits (13).
		if bl < 28 {
			if pos+8 <= len(in) { // refill, inlined
				bb |= binary.LittleEndian.Uint64(in[pos:]) << (bl & 63)
				pos += int(63-bl) >> 3
				bl |= 56
			} else {
				d.bb, d.bl, d.pos = bb, bl, pos
				ok := d.refillSlow()
				bb, bl, in, pos = d.bb, d.bl, d.in, d.pos
				if !ok {
					err = io.ErrUnexpectedEOF
					break
				}
			}
		}
		e = dt[bb&(1<<distBits-1)]
		if e&subFlag != 0 {
			e = dt[int(e>>16)+int(bb>>distBits)&(1<<(e>>8&15)-1)]
		}
		n = uint(e & 15)
		bb >>= n
		bl -= n
		if e&badFlag != 0 {
			// Its bits used first: bits past the end of input make a
			// truncated stream, not a corrupt one.
			err = corrupt("invalid distance code")
			break
		}
		n = uint(e>>8) & 15
		dist := int(e>>16) + int(bb&(1<<n-1))
		bb >>= n
		bl -= n

		if dist > out {
			err = corrupt("distance before the start")
			break
		}
		if length > len(dst)-out {
			err = ErrTooLong
			break
		}
		if dist >= 8 && length+8 <= len(dst)-out {
			// Eight bytes at a time, each read whole before the bytes
			// it writes: this may write up to seven bytes past the
			// match, which what follows overwrites.
			from := out - dist
			for i := 0; i < length; i += 8 {
				binary.LittleEndian.PutUint64(dst[out+i:], binary.LittleEndian.Uint64(dst[from+i:]))
			}
		} else if dist >= length {
			copy(dst[out:out+length], dst[out-dist:])
		} else {
			// Overlapping: the bytes between from and o repeat, in
			// copies that double.
			from, end := out-dist, out+length
			for o := out; o < end; {
				o += copy(dst[o:end], dst[from:o])
			}
		}
		out += length
	}
	d.bb, d.bl, d.pos, d.out = bb, bl, pos, out
	return err
}
