package archive

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/ferrysync/ferry/fetch"
)

// archive/zip's NewReader decodes the whole central directory, a *zip.File
// of about 200 bytes per record and its name, before a single entry can be
// checked; and it reads records for as long as they follow one another,
// whatever count the end record declares (it compares only the low 16
// bits). checkZipDirectory bounds the directory by max-files first,
// reading only fixed-size headers.
const (
	// zipEntriesPerFile is the directory entries allowed per max-files: a
	// revision holds up to max-files files and as many directories.
	zipEntriesPerFile = 2
	// zipDirBytesPerFile is the directory bytes allowed per max-files: a
	// record is 46 bytes, its name and its extra fields (timestamps,
	// owners, zip64 sizes: some 30 bytes), so 1 KiB leaves room for long
	// paths.
	zipDirBytesPerFile = 1 << 10
)

// The zip format's signatures and fixed sizes (APPNOTE.TXT 4.3).
const (
	zipDirHeaderSig = 0x02014b50
	zipEndSig       = 0x06054b50
	zip64LocatorSig = 0x07064b50
	zip64EndSig     = 0x06064b50
	zipDirHeaderLen = 46
	zipEndLen       = 22
	zip64LocatorLen = 20
	zip64EndLen     = 56
	zipEndSearch    = 65 << 10 // the bytes at the end archive/zip searches for the end record
)

// zipEnd is what the end records declare of the central directory.
type zipEnd struct {
	records uint64
	size    uint64
	starts  []int64 // where archive/zip may start reading records
}

// checkZipDirectory refuses a zip whose central directory lists more
// entries, or more bytes, than max-files allows, before archive/zip reads
// it: first by what its end record declares, then by walking the records
// from where archive/zip starts, without holding them. A zip whose end
// record is not found is left for archive/zip to refuse.
func (x *extractor) checkZipDirectory(r io.ReaderAt, size int64) error {
	maxRecords := uint64(x.maxFiles) * zipEntriesPerFile
	maxBytes := uint64(x.maxFiles) * zipDirBytesPerFile
	tooMany := fetch.Permanent(fmt.Errorf("zip archive lists more than %d entries, the most max-files allows (%d files and as many directories)", maxRecords, x.maxFiles))
	tooLarge := fetch.Permanent(fmt.Errorf("zip central directory is larger than %d bytes, %d for each of max-files", maxBytes, zipDirBytesPerFile))
	end, ok := readZipEnd(r, size)
	switch {
	case !ok:
		return nil
	case end.records > maxRecords:
		return tooMany
	case end.size > maxBytes:
		return tooLarge
	}
	for _, start := range end.starts {
		records, bytes := walkZipDirectory(r, start, size, maxRecords, maxBytes)
		if records > maxRecords {
			return tooMany
		}
		if bytes > maxBytes {
			return tooLarge
		}
	}
	return nil
}

// walkZipDirectory counts the directory records that follow one another
// from start, and their bytes, as archive/zip reads them, until one is
// missing or either count passes its bound.
func walkZipDirectory(r io.ReaderAt, start, size int64, maxRecords, maxBytes uint64) (records, bytes uint64) {
	br := bufio.NewReader(io.NewSectionReader(r, start, size-start))
	var h [zipDirHeaderLen]byte
	for records <= maxRecords && bytes <= maxBytes {
		if _, err := io.ReadFull(br, h[:]); err != nil || binary.LittleEndian.Uint32(h[:]) != zipDirHeaderSig {
			break
		}
		rest := int(binary.LittleEndian.Uint16(h[28:])) + int(binary.LittleEndian.Uint16(h[30:])) + int(binary.LittleEndian.Uint16(h[32:]))
		records++
		bytes += uint64(zipDirHeaderLen + rest)
		if _, err := br.Discard(rest); err != nil {
			break
		}
	}
	return records, bytes
}

// readZipEnd reads the end of central directory record, and the zip64 one
// when the end record says so, finding them as archive/zip does: the last
// end signature in the file's last 65 KiB whose comment fits.
func readZipEnd(r io.ReaderAt, size int64) (zipEnd, bool) {
	buf := make([]byte, min(size, zipEndSearch))
	if _, err := r.ReadAt(buf, size-int64(len(buf))); err != nil && err != io.EOF {
		return zipEnd{}, false
	}
	i := len(buf) - zipEndLen
	for i >= 0 && binary.LittleEndian.Uint32(buf[i:]) != zipEndSig {
		i--
	}
	if i < 0 || i+zipEndLen+int(binary.LittleEndian.Uint16(buf[i+20:])) > len(buf) {
		return zipEnd{}, false
	}
	at := size - int64(len(buf)) + int64(i) // the end record's offset
	e := buf[i:]
	end := zipEnd{
		records: uint64(binary.LittleEndian.Uint16(e[10:])),
		size:    uint64(binary.LittleEndian.Uint32(e[12:])),
	}
	offset := uint64(binary.LittleEndian.Uint32(e[16:]))
	// archive/zip's test, to the letter (its size test is against 0xffff).
	if end.records == 0xffff || end.size == 0xffff || offset == 0xffffffff {
		if p, ok := readZip64End(r, at, &end, &offset); ok {
			at = p
		}
	}
	if end.size > uint64(at) || offset > math.MaxInt64 {
		return zipEnd{}, false // archive/zip refuses these
	}
	// archive/zip reads from the end record less the directory's size,
	// or, when that leaves data before the offset the end record gives,
	// from that offset if a record is there.
	start := at - int64(end.size)
	end.starts = []int64{start}
	if start > int64(offset) {
		end.starts = append(end.starts, int64(offset))
	}
	return end, true
}

// readZip64End reads the zip64 end record that the locator before the end
// record at names, into end and offset, and returns its own offset.
func readZip64End(r io.ReaderAt, at int64, end *zipEnd, offset *uint64) (int64, bool) {
	var loc [zip64LocatorLen]byte
	if at < zip64LocatorLen {
		return 0, false
	}
	if _, err := r.ReadAt(loc[:], at-zip64LocatorLen); err != nil ||
		binary.LittleEndian.Uint32(loc[:]) != zip64LocatorSig ||
		binary.LittleEndian.Uint32(loc[4:]) != 0 || binary.LittleEndian.Uint32(loc[16:]) != 1 {
		return 0, false
	}
	p := int64(binary.LittleEndian.Uint64(loc[8:])) // past MaxInt64, a negative offset ReadAt refuses
	var e [zip64EndLen]byte
	if _, err := r.ReadAt(e[:], p); err != nil || binary.LittleEndian.Uint32(e[:]) != zip64EndSig {
		return 0, false
	}
	end.records = binary.LittleEndian.Uint64(e[32:])
	end.size = binary.LittleEndian.Uint64(e[40:])
	*offset = binary.LittleEndian.Uint64(e[48:])
	return p, true
}
