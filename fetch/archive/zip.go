package archive

import (
	"archive/zip"
	"errors"
	"io"
	"io/fs"

	"github.com/ferrysync/ferry/fetch"
)

// maxLinkTarget bounds a zip symlink's target, which zip stores as the
// entry's content.
const maxLinkTarget = 4096

// zip extracts a zip archive; zip needs random access, so it reads the
// spooled body. Its central directory is bounded before archive/zip
// decodes it whole.
func (x *extractor) zip(r io.ReaderAt, size int64) error {
	if err := x.checkZipDirectory(r, size); err != nil {
		return err
	}
	zr, err := zip.NewReader(r, size)
	if err != nil && !(errors.Is(err, zip.ErrInsecurePath) && zr != nil) {
		return corrupt(err)
	}
	for _, f := range zr.File {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		if err := checkName(f.Name); err != nil {
			return err
		}
		mode := f.Mode()
		if t := mode.Type(); t&^(fs.ModeDir|fs.ModeSymlink) != 0 {
			return fetch.Refuse(f.Name, "%s entries are not allowed", kindOf(t))
		}
		rel, ok := x.scope(f.Name, mode.IsDir())
		if !ok {
			continue
		}
		switch {
		case mode.IsDir():
			err = x.w.Mkdir(rel)
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

// zipLink reads a symlink's target.
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
		return "", fetch.Refuse(f.Name, "symlink target longer than %d bytes", maxLinkTarget)
	}
	return string(data), nil
}
