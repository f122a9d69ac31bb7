package archive

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/kit"
)

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
		if err := checkName(hdr.Name); err != nil {
			return nil, err
		}
		if err := x.tarEntry(i, hdr, tr, p); err != nil {
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

// tarEntry handles entry number i of the first pass.
func (x *extractor) tarEntry(i int, hdr *tar.Header, tr *tar.Reader, p *tarState) error {
	// Perm drops setuid, setgid and sticky; the Writer normalises the rest.
	mode := fs.FileMode(hdr.Mode).Perm()
	switch t := hdr.Typeflag; {
	case t == tar.TypeReg || t == tar.TypeGNUSparse:
		p.regular[path.Clean(hdr.Name)] = regular{index: i, mode: mode}
		if rel, ok := x.scope(hdr.Name, false); ok {
			open := func() (io.ReadCloser, error) { return entryReader{x: x, name: hdr.Name, r: tr}, nil }
			return x.w.WriteFile(rel, mode, "", open)
		}
	case t == tar.TypeDir:
		if rel, ok := x.scope(hdr.Name, true); ok {
			return x.w.Mkdir(rel)
		}
	case t == tar.TypeSymlink:
		if rel, ok := x.scope(hdr.Name, false); ok {
			return x.w.Symlink(rel, hdr.Linkname)
		}
	case t == tar.TypeLink:
		// Written as a copy, never as a link: the Writer does not see the
		// target, so a name leaving the archive is refused here.
		if !filepath.IsLocal(hdr.Linkname) {
			return fetch.Refuse(hdr.Name, "hard link to %q leaves the archive", hdr.Linkname)
		}
		reg, ok := p.regular[path.Clean(hdr.Linkname)]
		if !ok {
			return fetch.Refuse(hdr.Name, "hard link to %q, which is not an earlier regular file of the archive", hdr.Linkname)
		}
		if rel, ok := x.scope(hdr.Name, false); ok {
			p.links[reg.index] = append(p.links[reg.index], link{name: rel, mode: reg.mode})
		}
	case t == tar.TypeChar || t == tar.TypeBlock || t == tar.TypeFifo:
		return fetch.Refuse(hdr.Name, "device or FIFO entries are not allowed")
	case t == tar.TypeXGlobalHeader:
		// PAX defaults for later entries; archive/tar applies them.
	default:
		return fetch.Refuse(hdr.Name, "unsupported tar entry type %q", t)
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
		return fetch.Refuse(target, "hard-link target expands past the %s limit of %d bytes", x.limitName, x.maxBytes)
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
