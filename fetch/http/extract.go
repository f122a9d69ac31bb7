package http

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/kit"
)

// Limits the extractor keeps itself; file sizes, file count and total bytes
// are the Writer's (fetch.Limits).
const (
	// maxNameLen is Linux's PATH_MAX: a longer name cannot be created
	// anyway, and a PAX header may carry a megabyte of path.
	maxNameLen = 4096
	// maxDirs bounds directory entries, which the Writer does not count:
	// a million empty directories would cost a million inodes.
	maxDirs = 100_000
	// maxLinkTarget bounds a zip symlink's target, stored as its content.
	maxLinkTarget = 4096
)

// extractor streams an archive's entries into a Writer. Every name is
// checked here (so a hostile entry is refused even outside the published
// sub-tree) and again by the Writer.
type extractor struct {
	ctx      context.Context
	w        fetch.Writer
	subdir   string
	maxBytes int64  // Options.MaxBodyBytes: bounds read and expanded
	tmpDir   string // where hard-link targets are copied; never /tmp

	read     int64 // decompressed bytes of the tar stream read in this pass
	expanded int64 // bytes of file content handed to the Writer, all passes
	dirs     int
	found    bool // some entry lies in subdir
}

// refuse is a hostile or unsupported entry: permanent, and naming it.
func refuse(name, format string, args ...any) error {
	return fetch.Permanent(fmt.Errorf("entry %q: %s", name, fmt.Sprintf(format, args...)))
}

// corrupt marks an error from decoding the archive as permanent: the body
// arrived whole (its length and checksum were checked), so downloading it
// again gives the same broken bytes.
func corrupt(err error) error {
	if err == nil || err == io.EOF || fetch.IsPermanent(err) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fetch.Permanent(fmt.Errorf("corrupt archive: %w", err))
}

// entryName checks an archive entry's name and returns it cleaned
// (slash-separated, relative; "." for the root itself).
func entryName(raw string) (string, error) {
	switch {
	case raw == "" || strings.ContainsRune(raw, 0):
		return "", refuse(raw, "invalid name")
	case len(raw) > maxNameLen:
		return "", refuse(raw[:64]+"...", "name longer than %d bytes", maxNameLen)
	case strings.ContainsRune(raw, '\\'):
		// A Windows separator: on Linux it would be part of a name, not
		// the directory the archive's author meant.
		return "", refuse(raw, "backslash in name")
	case strings.HasPrefix(raw, "/"):
		return "", refuse(raw, "absolute path")
	}
	clean := path.Clean(raw)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", refuse(raw, "path leaves the archive")
	}
	return clean, nil
}

// scope maps a cleaned name to its name in the revision; ok is false for
// entries outside the sub-tree (and for the root, and the sub-tree's own
// directory entry, which the revision root stands for).
func (x *extractor) scope(name string, isDir bool) (string, bool) {
	if x.subdir == "" {
		return name, name != "."
	}
	if name == x.subdir && isDir {
		x.found = true
		return "", false
	}
	if rest, ok := strings.CutPrefix(name, x.subdir+"/"); ok {
		x.found = true
		return rest, true
	}
	return "", false
}

func (x *extractor) mkdir(rel string) error {
	if x.dirs++; x.dirs > maxDirs {
		return refuse(rel, "archive has more than %d directories", maxDirs)
	}
	return x.w.Mkdir(rel)
}

// done reports a sub-tree that the archive does not have.
func (x *extractor) done() error {
	if x.subdir != "" && !x.found {
		return fetch.Permanent(fmt.Errorf("sub-directory %q is not in the archive", x.subdir))
	}
	return nil
}

// overLimit is the error for an archive past the body limit, which bounds
// what an archive expands to twice over, since the two can differ either
// way: the decompressed tar stream (a bomb of skipped entries or headers
// writes nothing), and the file content handed to the Writer (a sparse
// entry's holes and a hard link's copies are not in the stream). Zip has
// no stream to count: its entries are read from the spooled body, and only
// their content is counted. name is the entry being read, if any.
func (x *extractor) overLimit(name string) error {
	msg := fmt.Sprintf("archive expands past the max-body limit of %d bytes", x.maxBytes)
	if name == "" {
		return fetch.Permanent(errors.New(msg))
	}
	return refuse(name, "%s", msg)
}

// counted is the decompressed tar stream: it fails (never truncates) past
// maxBytes, so a bomb stops after a bounded amount of work whether its
// bytes are file content, skipped entries or headers.
type counted struct {
	x *extractor
	r io.Reader
}

func (c *counted) Read(p []byte) (int, error) {
	if err := c.x.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	c.x.read += int64(n)
	if c.x.read > c.x.maxBytes {
		return n, c.x.overLimit("")
	}
	return n, corrupt(err)
}

// entryReader is one entry's content. Decoding errors are marked corrupt
// here, because the Writer passes permanent errors on unchanged. With x
// set, the content is on its way to the Writer and counts against
// maxBytes: archive/tar makes up a sparse entry's holes without reading
// the stream, and a zip entry's declared size is not trusted.
type entryReader struct {
	x    *extractor
	name string // for the error
	r    io.Reader
	c    io.Closer
}

func (e entryReader) Read(p []byte) (int, error) {
	if e.x == nil {
		n, err := e.r.Read(p)
		return n, corrupt(err)
	}
	if err := e.x.ctx.Err(); err != nil {
		return 0, err
	}
	rem := e.x.maxBytes - e.x.expanded
	if rem < 0 {
		return 0, e.x.overLimit(e.name)
	}
	if int64(len(p)) > rem+1 {
		p = p[:rem+1] // one byte past the limit is enough to know
	}
	n, err := e.r.Read(p)
	if e.x.expanded += int64(n); e.x.expanded > e.x.maxBytes {
		return n, e.x.overLimit(e.name)
	}
	return n, corrupt(err)
}

func (e entryReader) Close() error {
	if e.c != nil {
		return e.c.Close()
	}
	return nil
}

// link is a hard link waiting for its target's content.
type link struct {
	name string // in the revision
	mode fs.FileMode
}

// tar extracts a tar stream, gzip-compressed or not, read from f. A hard
// link to an earlier regular file of the archive is written as a copy of
// that file, taken in a second pass over the archive (a stream cannot go
// back); a link to anything else is refused.
func (x *extractor) tar(f io.ReadSeeker, gzipped bool) error {
	links, err := x.tarPass(f, gzipped, nil)
	if err != nil {
		return err
	}
	if len(links) > 0 {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		x.read = 0
		if _, err := x.tarPass(f, gzipped, links); err != nil {
			return err
		}
	}
	return x.done()
}

// tarPass reads the archive once. Without links it writes every entry and
// returns the hard links found, keyed by the index of their target entry;
// with links it writes only those.
func (x *extractor) tarPass(f io.Reader, gzipped bool, links map[int][]link) (map[int][]link, error) {
	stream := f
	if gzipped {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return nil, corrupt(err)
		}
		defer gz.Close()
		stream = gz
	}
	stream = &counted{x: x, r: stream}
	tr := tar.NewReader(stream)
	second := links != nil
	p := &tarState{regular: map[string]regular{}, links: map[int][]link{}}
	for i := 0; ; i++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return nil, corrupt(err)
		}
		if second {
			if ls := links[i]; len(ls) > 0 {
				if err := x.copyLinks(hdr.Name, tr, ls); err != nil {
					return nil, err
				}
				if delete(links, i); len(links) == 0 {
					return nil, nil
				}
			}
			continue
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return nil, err
		}
		if err := x.tarEntry(i, hdr, name, tr, p); err != nil {
			return nil, err
		}
	}
	if second {
		// Pass one saw every target; only a changed spool gets here.
		return nil, fetch.Permanent(errors.New("corrupt archive: hard-link targets vanished on the second pass"))
	}
	// Read to the end of the compressed stream: gzip checks its CRC there.
	if _, err := io.Copy(io.Discard, stream); err != nil {
		return nil, err
	}
	return p.links, nil
}

// tarState is what the first pass remembers for hard links.
type tarState struct {
	regular map[string]regular // the latest regular entry of each name
	links   map[int][]link     // target entry index -> links to write
}

type regular struct {
	index int
	mode  fs.FileMode
}

func isRegular(t byte) bool {
	return t == tar.TypeReg || t == tar.TypeGNUSparse
}

// tarEntry handles entry number i of the first pass.
func (x *extractor) tarEntry(i int, hdr *tar.Header, name string, tr *tar.Reader, p *tarState) error {
	// Perm drops setuid, setgid and sticky; the Writer normalises the rest.
	mode := fs.FileMode(hdr.Mode).Perm()
	switch t := hdr.Typeflag; {
	case isRegular(t):
		p.regular[name] = regular{index: i, mode: mode}
		if rel, ok := x.scope(name, false); ok {
			open := func() (io.ReadCloser, error) { return entryReader{x: x, name: hdr.Name, r: tr}, nil }
			return x.w.WriteFile(rel, mode, "", open)
		}
	case t == tar.TypeDir:
		if rel, ok := x.scope(name, true); ok {
			return x.mkdir(rel)
		}
	case t == tar.TypeSymlink:
		if rel, ok := x.scope(name, false); ok {
			return x.w.Symlink(rel, hdr.Linkname)
		}
	case t == tar.TypeLink:
		target, err := entryName(hdr.Linkname)
		if err != nil {
			return refuse(hdr.Name, "hard link to %q leaves the archive", hdr.Linkname)
		}
		reg, ok := p.regular[target]
		if !ok {
			return refuse(hdr.Name, "hard link to %q, which is not an earlier regular file of the archive", hdr.Linkname)
		}
		if rel, ok := x.scope(name, false); ok {
			p.links[reg.index] = append(p.links[reg.index], link{name: rel, mode: reg.mode})
		}
	case t == tar.TypeChar || t == tar.TypeBlock || t == tar.TypeFifo:
		return refuse(hdr.Name, "device or FIFO entries are not allowed")
	case t == tar.TypeXGlobalHeader:
		// PAX defaults for later entries; archive/tar applies them.
	default:
		return refuse(hdr.Name, "unsupported tar entry type %q", t)
	}
	return nil
}

// copyLinks writes the hard links to one target. The content is copied
// once into tmpDir so any number of links can be written from it.
func (x *extractor) copyLinks(target string, r io.Reader, ls []link) error {
	tmp, err := os.CreateTemp(x.tmpDir, kit.TempPrefix+"link-*")
	if err != nil {
		return fmt.Errorf("hard link %q: %w", target, err)
	}
	defer os.Remove(tmp.Name())
	// Bounded: a sparse entry expands without reading the stream, so the
	// stream's bound does not see it.
	n, err := io.Copy(tmp, io.LimitReader(entryReader{r: r}, x.maxBytes+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if n > x.maxBytes {
		return refuse(target, "hard-link target expands past the max-body limit of %d bytes", x.maxBytes)
	}
	for _, l := range ls {
		// Each copy counts: a thousand links to one file are a thousand
		// files' worth of content.
		open := func() (io.ReadCloser, error) {
			f, err := os.Open(tmp.Name())
			if err != nil {
				return nil, err
			}
			return entryReader{x: x, name: l.name, r: f, c: f}, nil
		}
		if err := x.w.WriteFile(l.name, l.mode, "", open); err != nil {
			return err
		}
	}
	return nil
}

// zip extracts a zip archive; zip needs random access, so it reads the
// spooled body.
func (x *extractor) zip(r io.ReaderAt, size int64) error {
	zr, err := zip.NewReader(r, size)
	if err != nil && !(errors.Is(err, zip.ErrInsecurePath) && zr != nil) {
		return corrupt(err)
	}
	// Names are checked first, all of them: a hostile entry is refused
	// before anything is written.
	names := make([]string, len(zr.File))
	for i, f := range zr.File {
		if names[i], err = entryName(f.Name); err != nil {
			return err
		}
		if t := f.Mode().Type(); t&^(fs.ModeDir|fs.ModeSymlink) != 0 {
			return refuse(f.Name, "%s entries are not allowed", kindOf(t))
		}
	}
	for i, f := range zr.File {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		mode := f.Mode()
		rel, ok := x.scope(names[i], mode.IsDir())
		if !ok {
			continue
		}
		switch {
		case mode.IsDir():
			err = x.mkdir(rel)
		case mode&fs.ModeSymlink != 0:
			var target string
			if target, err = x.zipLink(f); err == nil {
				err = x.w.Symlink(rel, target)
			}
		default:
			err = x.w.WriteFile(rel, mode.Perm(), "", func() (io.ReadCloser, error) {
				rc, err := f.Open()
				if err != nil {
					return nil, corrupt(err)
				}
				return entryReader{x: x, name: f.Name, r: rc, c: rc}, nil
			})
		}
		if err != nil {
			return err
		}
	}
	return x.done()
}

// kindOf names a special file type for an error.
func kindOf(t fs.FileMode) string {
	switch {
	case t&fs.ModeNamedPipe != 0:
		return "FIFO"
	case t&fs.ModeDevice != 0 || t&fs.ModeCharDevice != 0:
		return "device"
	case t&fs.ModeSocket != 0:
		return "socket"
	}
	return "irregular"
}

// zipLink reads a symlink's target, which zip stores as the content.
func (x *extractor) zipLink(f *zip.File) (string, error) {
	rc, err := f.Open()
	if err != nil {
		return "", corrupt(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(entryReader{x: x, name: f.Name, r: rc}, maxLinkTarget+1))
	if err != nil {
		return "", err
	}
	if len(data) > maxLinkTarget {
		return "", refuse(f.Name, "symlink target longer than %d bytes", maxLinkTarget)
	}
	return string(data), nil
}
