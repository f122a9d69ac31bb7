package git

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/adler32"
	"io"

	"github.com/klauspost/compress/flate"

	"github.com/ferrysync/ferry/fetch/git/internal/inflate"
)

// zstream reads one zlib stream (RFC 1950) of a pack object and stops at
// its end, like compress/zlib's reader. It checks the stream's Adler-32
// only when asked to: the index pass does, since what it accepts is
// stored and read later by go-git and git, which both refuse a bad
// checksum; an object read back from a pack the index pass accepted (a
// delta base, what the export reads again) is not checked twice.
type zstream struct {
	src   io.Reader // an io.ByteReader: flate reads no byte past the stream
	fr    io.ReadCloser
	sum   hash.Hash32 // set (adler32.New) to check the checksum; nil skips it
	ended bool
}

// reset starts reading the zlib stream at src's position.
func (z *zstream) reset(src io.Reader) error {
	if err := zlibHeader(src); err != nil {
		return err
	}
	z.src, z.ended = src, false
	if z.sum != nil {
		z.sum.Reset()
	}
	if z.fr == nil {
		z.fr = flate.NewReader(src)
		return nil
	}
	return z.fr.(flate.Resetter).Reset(src, nil)
}

// Read inflates; at the deflate stream's end it reads the 4-byte
// checksum, so that src is left at the next object, and checks it when
// sum is set.
func (z *zstream) Read(p []byte) (int, error) {
	if z.ended {
		return 0, io.EOF
	}
	n, err := z.fr.Read(p)
	if z.sum != nil {
		z.sum.Write(p[:n])
	}
	if err != io.EOF {
		return n, err
	}
	var sum [4]byte
	if _, err := io.ReadFull(z.src, sum[:]); err != nil {
		return n, fmt.Errorf("zlib checksum: %w", noEOF(err))
	}
	if z.sum != nil && binary.BigEndian.Uint32(sum[:]) != z.sum.Sum32() {
		return n, errors.New("zlib: invalid checksum")
	}
	z.ended = true
	return n, io.EOF
}

// zlibHeader reads the zlib header at src's position and checks it.
func zlibHeader(src io.Reader) error {
	var hdr [2]byte
	if _, err := io.ReadFull(src, hdr[:]); err != nil {
		return fmt.Errorf("zlib header: %w", noEOF(err))
	}
	return checkZlibHeader(hdr[0], hdr[1])
}

// checkZlibHeader accepts CM 8 (deflate), a window of at most 32 KiB, no
// preset dictionary (git never uses one) and the header's own check.
func checkZlibHeader(cmf, flg byte) error {
	if cmf&0x0f != 8 || cmf>>4 > 7 || flg&0x20 != 0 || (uint16(cmf)<<8|uint16(flg))%31 != 0 {
		return errors.New("zlib: invalid header")
	}
	return nil
}

// zlibWhole reads the zlib stream at br's position, which must inflate
// to exactly len(dst) bytes, into dst with dec, and leaves br at the byte
// after its checksum, as zstream does. It checks the checksum when verify
// is set. This is the fast way for an object read whole: dec writes into
// dst directly, which is its window too, where flate inflates into a
// window of its own and copies out of it.
func zlibWhole(dec *inflate.Decoder, br *bufio.Reader, dst []byte, verify bool) error {
	// Peeked, not read into arrays of its own, which would escape.
	hdr, err := br.Peek(2)
	if err != nil {
		return fmt.Errorf("zlib header: %w", noEOF(err))
	}
	if err := checkZlibHeader(hdr[0], hdr[1]); err != nil {
		return err
	}
	br.Discard(2)
	n, err := dec.Decode(dst, br)
	if errors.Is(err, inflate.ErrTooLong) {
		return fmt.Errorf("inflates to more than the %d bytes its header says", len(dst))
	} else if err != nil {
		return err
	}
	sum, err := br.Peek(4)
	if err != nil {
		return fmt.Errorf("zlib checksum: %w", noEOF(err))
	}
	if verify && binary.BigEndian.Uint32(sum) != adler32.Checksum(dst[:n]) {
		return errors.New("zlib: invalid checksum")
	}
	br.Discard(4)
	if n != len(dst) {
		return fmt.Errorf("inflated to %d bytes, not the %d its header says", n, len(dst))
	}
	return nil
}

// Close releases the inflater.
func (z *zstream) Close() error {
	if z.fr == nil {
		return nil
	}
	return z.fr.Close()
}

// noEOF turns an end of input inside a stream into what it is: a
// truncated one.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
