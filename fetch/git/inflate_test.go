package git

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"errors"
	"hash/adler32"
	"io"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/fetch/git/internal/inflate"
	"github.com/ferrysync/ferry/internal/gittest"
)

// TestZlibWholeStopsAtEachStreamsEnd is TestZstreamStopsAtEachStreamsEnd
// for objects read whole: each of the zlib streams laid end to end is
// read into a buffer of its size and leaves the reader at the byte after
// its checksum, with and without the check, through readers of several
// sizes.
func TestZlibWholeStopsAtEachStreamsEnd(t *testing.T) {
	packed, want := zlibStreams()
	var dec inflate.Decoder
	for _, verify := range []bool{false, true} {
		for _, size := range []int{16, 17, 4096, 16 << 10, 64 << 10} {
			br := bufio.NewReaderSize(bytes.NewReader(packed.Bytes()), size)
			for i, w := range want {
				got := make([]byte, len(w))
				if err := zlibWhole(&dec, br, got, verify); err != nil || !bytes.Equal(got, w) {
					t.Fatalf("verify %v, buffer %d, stream %d: %v", verify, size, i, err)
				}
				if c, _ := br.ReadByte(); c != 0xab {
					t.Fatalf("verify %v, buffer %d, stream %d: left at %#x, not at the next object", verify, size, i, c)
				}
			}
		}
	}
}

// TestZlibWholeRefusesWhatZstreamRefuses: a stream whose size is not the
// header's, whose checksum is cut or wrong, or whose header asks for a
// preset dictionary is refused with the message the streaming reader
// gives; a wrong checksum passes only unchecked.
func TestZlibWholeRefusesWhatZstreamRefuses(t *testing.T) {
	var one bytes.Buffer
	zw := zlib.NewWriter(&one)
	zw.Write([]byte("hello, world"))
	zw.Close()
	stream := one.Bytes()
	badSum := bytes.Clone(stream)
	badSum[len(badSum)-1] ^= 1
	var dec inflate.Decoder
	for _, c := range []struct {
		name   string
		stream []byte
		size   int
		verify bool
		want   string // "" to accept
	}{
		{"whole", stream, 12, true, ""},
		{"shorter than its header says", stream, 13, true, "inflated to 12 bytes, not the 13 its header says"},
		{"longer than its header says", stream, 11, true, "inflates to more than the 11 bytes its header says"},
		{"a wrong checksum", badSum, 12, true, "zlib: invalid checksum"},
		{"a wrong checksum, unchecked", badSum, 12, false, ""},
		{"cut inside its checksum", stream[:len(stream)-2], 12, false, "zlib checksum: unexpected EOF"},
		{"cut inside its data", stream[:len(stream)-6], 12, false, "unexpected EOF"},
		{"a preset dictionary", []byte{0x78, 0xbb, 0, 0, 0, 0}, 0, false, "zlib: invalid header"},
		{"no header", []byte{0x78}, 0, false, "zlib header: unexpected EOF"},
	} {
		err := zlibWhole(&dec, bufio.NewReader(bytes.NewReader(c.stream)), make([]byte, c.size), c.verify)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
		if strings.Contains(c.want, "unexpected EOF") && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: %v is no io.ErrUnexpectedEOF", c.name, err)
		}
	}
}

// BenchmarkInflateObjects reads zlib streams as the index pass reads the
// benchmark repository's blobs: about 10 KB of config-file text, every
// fifth random, deflated at zlib's default level (by compress/zlib),
// through a 64 KiB bufio.Reader, with the Adler-32 checked. "zstream" is
// the streaming reader (klauspost's flate), read whole as the index pass
// did before; "whole" is zlibWhole.
func BenchmarkInflateObjects(b *testing.B) {
	var packed bytes.Buffer
	objs := gittest.Blobs(500)
	total := 0
	for _, obj := range objs {
		zw := zlib.NewWriter(&packed)
		zw.Write(obj)
		zw.Close()
		total += len(obj)
	}
	br := bufio.NewReaderSize(nil, 64<<10)
	dst := make([]byte, 16<<10)
	b.Run("zstream", func(b *testing.B) {
		b.SetBytes(int64(total))
		var in inflater
		in.zr.sum = adler32.New()
		for b.Loop() {
			br.Reset(bytes.NewReader(packed.Bytes()))
			for _, obj := range objs {
				zr, err := in.inflate(br)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(zr, dst[:len(obj)]); err != nil {
					b.Fatal(err)
				}
				if err := endOfStream(zr, int64(len(obj))); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("whole", func(b *testing.B) {
		b.SetBytes(int64(total))
		var dec inflate.Decoder
		for b.Loop() {
			br.Reset(bytes.NewReader(packed.Bytes()))
			for _, obj := range objs {
				if err := zlibWhole(&dec, br, dst[:len(obj)], true); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
