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
// that file, taken in a later pass over the archive (a stream cannot go
// back); a link to anything else is refused. A link in the sub-tree to a
// file outside it costs one pass more, over the headers only, to find its
// target: the first pass does not remember the names outside the
// sub-tree, which max-files does not bound.
func (x *extractor) tar(f io.ReadSeeker, gzipped bool) error {
	p := &tarState{regular: map[string]regular{}, links: map[int][]link{}}
	err := x.tarPass(f, gzipped, func(i int, hdr *tar.Header, tr *tar.Reader) (bool, error) {
		if err := checkName(hdr.Name); err != nil {
			return false, err
		}
		return true, x.tarEntry(i, hdr, tr, p)
	})
	if err == nil && len(p.outside) > 0 {
		err = x.resolveOutside(f, gzipped, p)
	}
	if err == nil && len(p.links) > 0 {
		err = x.writeLinks(f, gzipped, p.links)
	}
	if err != nil {
		return err
	}
	return x.done()
}

// tarPass reads the archive once, from its start, handing each entry to
// each until it asks for no more. A pass that reads to the end reads the
// compressed stream to its end too: gzip checks its CRC there.
func (x *extractor) tarPass(f io.ReadSeeker, gzipped bool, each func(i int, hdr *tar.Header, tr *tar.Reader) (more bool, err error)) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	x.read = 0
	stream := io.Reader(f)
	if gzipped {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return corrupt(err)
		}
		defer gz.Close()
		stream = gz
	}
	stream = &counted{x: x, r: stream}
	tr := tar.NewReader(stream)
	for i := 0; ; i++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return corrupt(err)
		}
		if more, err := each(i, hdr, tr); err != nil || !more {
			return err
		}
	}
	_, err := io.Copy(io.Discard, stream)
	return err
}

// writeLinks writes the hard links, keyed by the index of their target
// entry, in one more pass that copies each target.
func (x *extractor) writeLinks(f io.ReadSeeker, gzipped bool, links map[int][]link) error {
	err := x.tarPass(f, gzipped, func(i int, hdr *tar.Header, tr *tar.Reader) (bool, error) {
		ls := links[i]
		if len(ls) == 0 {
			return true, nil
		}
		delete(links, i)
		return len(links) > 0, x.copyLinks(hdr.Name, tr, ls)
	})
	if err == nil && len(links) > 0 {
		// The first pass saw every target; only a changed spool gets here.
		return fetch.Permanent(errors.New("corrupt archive: hard-link targets vanished on a later pass"))
	}
	return err
}

// resolveOutside finds the targets of the hard links in the sub-tree that
// name a file outside it, in a pass over the headers that remembers only
// the names those links want: each link's target is the latest regular
// entry of that name before the link, as in the first pass.
func (x *extractor) resolveOutside(f io.ReadSeeker, gzipped bool, p *tarState) error {
	latest := make(map[string]*regular, len(p.outside))
	for _, o := range p.outside {
		latest[o.target] = nil
	}
	next := 0 // p.outside is in entry order
	err := x.tarPass(f, gzipped, func(i int, hdr *tar.Header, _ *tar.Reader) (bool, error) {
		if next < len(p.outside) && p.outside[next].at == i {
			o := p.outside[next]
			reg := latest[o.target]
			if reg == nil {
				return false, notEarlier(o.raw, o.linkname)
			}
			p.links[reg.index] = append(p.links[reg.index], link{name: o.name, mode: reg.mode})
			next++
		}
		name := path.Clean(hdr.Name)
		if _, wanted := latest[name]; wanted && isRegular(hdr) {
			latest[name] = &regular{index: i, mode: fs.FileMode(hdr.Mode).Perm()}
		}
		return next < len(p.outside), nil
	})
	if err == nil && next < len(p.outside) {
		return fetch.Permanent(errors.New("corrupt archive: hard links vanished on a later pass"))
	}
	return err
}

// tarState is what the first pass remembers for hard links: the regular
// entries in the sub-tree (the Writer bounds them by max-files), and the
// links to write.
type tarState struct {
	regular map[string]regular // the latest regular entry of each name in the sub-tree
	links   map[int][]link     // target entry index -> links to write
	outside []outsideLink      // links to a name outside the sub-tree, in entry order
	nlinks  int                // hard links recorded, bounded by max-files
}

type regular struct {
	index int
	mode  fs.FileMode
}

// outsideLink is a hard link in the sub-tree to a name outside it, whose
// target resolveOutside finds.
type outsideLink struct {
	at       int    // the link's entry index
	raw      string // the link's entry name, for a refusal
	linkname string // its target, as the archive gives it
	target   string // cleaned
	name     string // the link's name in the revision
}

// isRegular reports whether hdr is a regular file's, which a hard link may
// name.
func isRegular(hdr *tar.Header) bool {
	return hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeGNUSparse
}

// tarEntry handles entry number i of the first pass.
func (x *extractor) tarEntry(i int, hdr *tar.Header, tr *tar.Reader, p *tarState) error {
	// Perm drops setuid, setgid and sticky; the Writer normalises the rest.
	mode := fs.FileMode(hdr.Mode).Perm()
	switch t := hdr.Typeflag; {
	case isRegular(hdr):
		if rel, ok := x.scope(hdr.Name, false); ok {
			p.regular[path.Clean(hdr.Name)] = regular{index: i, mode: mode}
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
		if rel, ok := x.scope(hdr.Name, false); ok {
			return x.tarLink(i, hdr, rel, p)
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

// tarLink records the hard link of entry i, published as rel: to an
// earlier regular entry of the sub-tree, or, when it names a file outside
// the sub-tree, for resolveOutside to find.
func (x *extractor) tarLink(i int, hdr *tar.Header, rel string, p *tarState) error {
	// Each link is written as a file, which counts against max-files
	// then; held until the copy pass, it is counted now.
	if p.nlinks++; p.nlinks > x.maxFiles {
		return fetch.Permanent(fmt.Errorf("tar archive holds more than %d hard links in the tree, more files than max-files allows", x.maxFiles))
	}
	target := path.Clean(hdr.Linkname)
	if reg, ok := p.regular[target]; ok {
		p.links[reg.index] = append(p.links[reg.index], link{name: rel, mode: reg.mode})
		return nil
	}
	if x.inSubdir(target) {
		return notEarlier(hdr.Name, hdr.Linkname)
	}
	p.outside = append(p.outside, outsideLink{at: i, raw: hdr.Name, linkname: hdr.Linkname, target: target, name: rel})
	return nil
}

// notEarlier refuses the hard link name, whose target is not a regular
// entry before it.
func notEarlier(name, linkname string) error {
	return fetch.Refuse(name, "hard link to %q, which is not an earlier regular file of the archive", linkname)
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
