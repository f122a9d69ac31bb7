package git

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// meteredStorer is the object store as one fetch writes to it. go-git
// hands it every pack it receives, whatever the transport, through
// PackfileWriter. The pack is spooled to a file, counted on the fetch's
// meter as it arrives, and reaches the store only once it is complete and
// checkPack found it within bounds. go-git's pack parser, which reads
// every object whole into memory and keeps bookkeeping for each, thus
// never sees a pack over the limits; a refused pack leaves nothing but the
// spool, which Close removes.
type meteredStorer struct {
	// ctx is the fetch's: the index pass stops when it ends.
	ctx            context.Context
	storage.Storer               // refs, shallow list, config: go-git's view of the store
	into           storer.Storer // where a checked pack goes: the store, or its loose view (thin.go)
	dir            string        // for the spool
	meter          *meter
	indexed        *indexedPack // the pack stored, when index.go indexed it
	early          *earlyExport // writes files as index.go indexes (early.go), or nil
}

// PackfileWriter starts spooling one pack.
func (m *meteredStorer) PackfileWriter() (io.WriteCloser, error) {
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		return nil, err
	}
	// tmp_ as go-git's own temporary packs: removeTempObjects removes a
	// spool left by a killed process.
	f, err := os.CreateTemp(m.dir, "tmp_spool_")
	if err != nil {
		return nil, err
	}
	s := &spool{f: f, m: m}
	if st, ok := m.into.(*filesystem.Storage); ok {
		// The first pack of an empty store is indexed as it arrives
		// (index.go), and its files written as they come (early.go).
		s.grow, s.indexed = newGrowingFile(f), make(chan struct{})
		m.early.open(st, f)
		go func() {
			defer close(s.indexed)
			s.pack, s.err = indexStream(m.ctx, s.grow, m.meter.bounds, m.early)
		}()
	}
	return s, nil
}

type spool struct {
	f *os.File
	m *meteredStorer
	// grow is the spool as the index pass reads it, when it runs; indexed
	// is closed when it is done, with pack or err.
	grow    *growingFile
	indexed chan struct{}
	pack    *indexedPack
	err     error
}

// Write spools p. Past the limit, or after a failed write, it drops what
// it is given: the meter has stopped the fetch, which go-git notices at its
// next read (see meter).
func (s *spool) Write(p []byte) (int, error) {
	m := s.m.meter
	if m.add(&m.pack, len(p)) == nil {
		if _, err := s.f.Write(p); err != nil {
			m.stop(err)
		} else if s.grow != nil {
			s.grow.wrote(len(p))
		}
	}
	return len(p), nil
}

// Close checks the spooled pack and, when it is within bounds, stores it
// (the first pack of an empty store was checked as it came, by the index
// pass, which Close waits for). go-git calls it also when the download
// failed: a stopped meter says so, and a pack cut short fails the check.
// The spool is removed either way.
func (s *spool) Close() error {
	defer os.Remove(s.f.Name())
	defer s.f.Close()
	if s.grow != nil {
		s.grow.finish()
		<-s.indexed
	}
	if err := s.m.meter.err(); err != nil {
		return err
	}
	if st, ok := s.m.into.(*filesystem.Storage); ok {
		// The first pack of an empty store, indexed as it came.
		err := s.err
		if err == nil {
			err = s.pack.store(s.f, s.m.dir)
		}
		if err == nil {
			st.Reindex()
			s.m.indexed = s.pack
		}
		return err
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := checkPack(s.f, s.m.meter.bounds); err != nil {
		return err
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	return packfile.UpdateObjectStorage(s.m.into, s.f)
}

// checkPack reads a whole pack, inflating each object once without keeping
// it, and refuses it when go-git would hold an object larger than the
// bounds allow (the size of a delta's result is in the delta's first
// bytes) or keep track of more objects than they allow. The object headers
// alone are not enough: a few kilobytes of zlib or of delta instructions
// can stand for gigabytes. A truncated or corrupt pack fails here too.
func checkPack(r io.Reader, b bounds) error {
	sc := packfile.NewScanner(r)
	_, count, err := sc.Header()
	if err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	if count > b.objects {
		return overLimit("pack holds %d objects, more than the max-files limit allows (%d)", count, b.objects)
	}
	for range count {
		h, err := sc.NextObjectHeader()
		if err != nil {
			return fmt.Errorf("pack: %w", err)
		}
		var w io.Writer = io.Discard
		if h.Type.IsDelta() {
			w = &deltaHeader{bounds: b}
		} else if h.Length > b.objectSize {
			return b.tooLarge(uint64(h.Length))
		}
		if _, _, err := sc.NextObject(w); err != nil {
			var le *limitError
			if errors.As(err, &le) {
				return err
			}
			return fmt.Errorf("pack: object at offset %d: %w", h.Offset, err)
		}
	}
	if _, err := sc.Checksum(); err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	return nil
}

func (b bounds) tooLarge(size uint64) error {
	return overLimit("pack holds an object of %d bytes, more than the %s limit allows (%d, with a margin for trees)", size, b.objectSizeLimit, b.objectSize)
}

// deltaHeader reads the size of a delta's result from its first bytes,
// two varints (source size, then result size), and discards the rest. A
// header that never completes is go-git's to refuse.
type deltaHeader struct {
	bounds
	buf  []byte
	done bool
}

func (d *deltaHeader) Write(p []byte) (int, error) {
	if !d.done {
		d.buf = append(d.buf, p[:min(len(p), 2*maxVarint-len(d.buf))]...)
		if _, n := varint(d.buf); n > 0 {
			if size, m := varint(d.buf[n:]); m > 0 {
				d.done = true
				if size > uint64(d.objectSize) {
					return 0, d.tooLarge(size)
				}
			}
		}
	}
	return len(p), nil
}

// maxVarint is the longest varint a 64-bit size needs.
const maxVarint = 10

// varint decodes git's delta size encoding (little-endian base 128). n is
// the bytes used, 0 when b holds no complete varint.
func varint(b []byte) (v uint64, n int) {
	for i, c := range b {
		if i == maxVarint {
			break
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, 0
}
