package git

import (
	"bytes"
	"compress/zlib"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/fetch"
)

// packBuilder writes a pack by hand: what a hostile server may send, which
// git itself would never make.
type packBuilder struct {
	bytes.Buffer
	z *zlib.Writer // reused: a pack of many objects is built in no time
}

func newPack(count uint32) *packBuilder {
	p := &packBuilder{}
	p.WriteString("PACK")
	binary.Write(p, binary.BigEndian, uint32(2))
	binary.Write(p, binary.BigEndian, count)
	return p
}

// object appends an object header (type, size), then extra, then the
// deflated data.
func (p *packBuilder) object(typ byte, size int, extra []byte, data []byte) {
	c := typ<<4 | byte(size&0x0f)
	size >>= 4
	for size > 0 {
		p.WriteByte(c | 0x80)
		c = byte(size & 0x7f)
		size >>= 7
	}
	p.WriteByte(c)
	p.Write(extra)
	if p.z == nil {
		p.z = zlib.NewWriter(&p.Buffer)
	} else {
		p.z.Reset(&p.Buffer)
	}
	p.z.Write(data)
	p.z.Close()
}

func (p *packBuilder) finish() []byte {
	sum := sha1.Sum(p.Bytes())
	p.Write(sum[:])
	return p.Bytes()
}

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func TestCheckPack(t *testing.T) {
	b := boundsFor(fetch.Limits{MaxBytes: 1 << 20, MaxFiles: 10})
	base := bytes.Repeat([]byte("config "), 1<<10)

	// A few dozen bytes of delta that would rebuild the base 100,000 times
	// over: the result's size is in the delta's first bytes.
	delta := appendVarint(nil, uint64(len(base)))
	delta = appendVarint(delta, uint64(len(base))*100_000)
	for range 8 {
		delta = append(delta, 0x80|0x10|0x20, byte(len(base)), byte(len(base)>>8)) // copy the whole base
	}
	bomb := newPack(2)
	bomb.object(3, len(base), nil, base)
	bomb.object(6, len(delta), []byte{byte(bomb.Len() - 12)}, delta) // OFS_DELTA back to the blob

	valid := newPack(1)
	valid.object(3, len(base), nil, base)
	validPack := valid.finish()

	huge := newPack(1)
	huge.object(3, 1<<30, nil, []byte("the header claims a gigabyte"))

	cases := []struct {
		name string
		pack []byte
		want string // "" when the pack passes
	}{
		{"a blob within bounds", validPack, ""},
		{"a delta whose result is over the bound", bomb.finish(), "object of 716800000 bytes, more than the max-bytes limit allows"},
		{"a blob whose header is over the bound", huge.finish(), "object of 1073741824 bytes"},
		{"more objects than max-files allows", newPack(1 << 20).finish(), "1048576 objects, more than the max-files limit allows (10040)"},
	}
	// checkPack guards go-git's parser (thin packs); indexPack indexes the
	// first pack of an empty store itself (index.go). Both hold the bounds.
	checkers := map[string]func(t *testing.T, pack []byte) error{
		"checkPack": func(t *testing.T, pack []byte) error { return checkPack(bytes.NewReader(pack), b) },
		"indexPack": func(t *testing.T, pack []byte) error {
			_, err := indexPack(packFile(t, pack), b, nil)
			return err
		},
	}
	for name, check := range checkers {
		for _, c := range cases {
			t.Run(name+"/"+c.name, func(t *testing.T) {
				err := check(t, c.pack)
				if c.want == "" {
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					return
				}
				var le *limitError
				if err == nil || !errors.As(err, &le) || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("%s: %v, want a permanent limit error with %q", name, err, c.want)
				}
			})
		}
		// Cut short, or altered, the pack is an error, but no limit's.
		altered := bytes.Clone(validPack)
		altered[len(altered)-30] ^= 1
		for what, pack := range map[string][]byte{"truncated": validPack[:len(validPack)-10], "altered": altered} {
			err := check(t, pack)
			var le *limitError
			if err == nil || errors.As(err, &le) || fetch.IsPermanent(err) {
				t.Fatalf("%s: %s pack: %v, want a transient error", name, what, err)
			}
		}
	}
}

// packFile writes pack to a file of the test's.
func packFile(t *testing.T, pack []byte) *os.File {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "pack")
	if err == nil {
		_, err = f.Write(pack)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
