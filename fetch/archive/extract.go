// Package archive expands tar, tar+gzip and zip archives into a
// fetch.Writer, for every source that publishes one (an HTTP body, an OCI
// layer), with one set of limits and refusals.
package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/ferrysync/ferry/fetch"
)

// Format is how an archive is encoded.
type Format string

// The formats Extract reads.
const (
	Tar     Format = "tar"
	TarGzip Format = "tar.gz"
	Zip     Format = "zip"
)

// Options bound one extraction.
type Options struct {
	// Subdir, when set, publishes only that sub-tree of the archive, as
	// the revision root.
	Subdir string
	// MaxBytes bounds the decompressed stream and the content the archive
	// expands to (see overLimit); it must be positive.
	MaxBytes int64
	// LimitName is the setting MaxBytes comes from, as errors name it
	// ("http-max-body").
	LimitName string
	// MaxFiles is the Writer's max-files (fetch.Limits), which also bounds
	// the entries of a zip's central directory, read whole before any
	// entry reaches the Writer; zero is the default.
	MaxFiles int
	// TmpDir is where hard-link targets are copied: on the volume, never
	// /tmp.
	TmpDir string
}

// File is a spooled archive: tar is read as a stream (twice when it holds
// hard links), zip at random.
type File interface {
	io.ReadSeeker
	io.ReaderAt
}

// Extract writes the entries of the archive f, of size bytes, through w.
// Errors that name an entry, and corrupt archives, are permanent.
func Extract(ctx context.Context, w fetch.Writer, f File, size int64, format Format, o Options) error {
	if o.MaxBytes <= 0 {
		return errors.New("archive: no limit on what it expands to")
	}
	x := &extractor{ctx: ctx, w: w, subdir: o.Subdir, maxBytes: o.MaxBytes, limitName: o.LimitName, tmpDir: o.TmpDir,
		maxFiles: fetch.Limits{MaxFiles: o.MaxFiles}.WithDefaults().MaxFiles}
	switch format {
	case Zip:
		return x.zip(f, size)
	case TarGzip:
		return x.tar(f, true)
	case Tar:
		return x.tar(f, false)
	}
	return fmt.Errorf("archive: unknown format %q", format)
}

// extractor streams an archive's entries into a Writer, which refuses what
// breaks a revision's rules and limits whatever the source: names leaving
// it, .git, duplicates, file sizes and counts. The extractor refuses what
// only an archive holds (devices, hard links, Windows names), even outside
// the published sub-tree, and bounds what the archive expands to.
type extractor struct {
	ctx       context.Context
	w         fetch.Writer
	subdir    string
	maxBytes  int64  // Options.MaxBytes: bounds read and expanded
	limitName string // Options.LimitName
	maxFiles  int    // Options.MaxFiles, defaulted
	tmpDir    string // where hard-link targets are copied; never /tmp

	read     int64 // decompressed bytes of the tar stream read in this pass
	expanded int64 // bytes of file content handed to the Writer, all passes
	found    bool  // some entry lies in subdir
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

// checkName refuses a Windows separator: on Linux it would be part of a
// name, not the directory the archive's author meant.
func checkName(raw string) error {
	if strings.ContainsRune(raw, '\\') {
		return fetch.Refuse(raw, "backslash in name")
	}
	return nil
}

// scope maps an entry's name to its name in the revision; ok is false for
// entries outside the sub-tree (and for the root, and the sub-tree's own
// directory entry, which the revision root stands for). Without a
// sub-tree the name is passed on as the archive gives it, so that the
// Writer's refusal names the entry.
func (x *extractor) scope(raw string, isDir bool) (string, bool) {
	name := path.Clean(raw)
	if x.subdir == "" {
		return raw, name != "."
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

// inSubdir reports whether the clean name lies in the sub-tree (anywhere,
// without one).
func (x *extractor) inSubdir(name string) bool {
	return x.subdir == "" || strings.HasPrefix(name, x.subdir+"/")
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
	msg := fmt.Sprintf("archive expands past the %s limit of %d bytes", x.limitName, x.maxBytes)
	if name == "" {
		return fetch.Permanent(errors.New(msg))
	}
	return fetch.Refuse(name, "%s", msg)
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
