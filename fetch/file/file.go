// Package file is the local-directory source: it publishes a copy of a
// directory on the same machine, such as a ConfigMap mount or a seed tree
// baked into an image, or of a single file, under its name.
package file

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/redact"
)

// Source publishes a local directory. Its revision is a digest of the tree:
// paths, modes, symlink targets and file contents.
type Source struct {
	dir string
	// hashes remembers each file's digest by its stat, so an unchanged tree
	// is not read again on every poll. Fetch is never called concurrently.
	hashes map[string]cached
}

type cached struct {
	stat statKey
	sum  string
}

// statKey changes whenever a file's content may have: ctime moves on every
// write, rename into place and chmod.
type statKey struct {
	size, mtime, ctime int64
	ino                uint64
}

var _ fetch.Source = (*Source)(nil)

// New builds a source for file:///dir (or /dir); a "//subdir" is joined to
// the directory. It does not require the directory to exist yet: a volume
// may be mounted later, and a missing directory is a fetch error.
func New(u *fetch.URL, env fetch.Env) (*Source, error) {
	if u.URL.Host != "" && u.URL.Host != "localhost" {
		return nil, fmt.Errorf("file URL must name a local path, not host %q", u.URL.Host)
	}
	if u.URL.RawQuery != "" {
		return nil, fmt.Errorf("file URL takes no options, got %q", redact.Query(u.URL.RawQuery, nil))
	}
	if !filepath.IsAbs(u.URL.Path) {
		return nil, fmt.Errorf("file URL needs an absolute path, got %q", u.URL.Path)
	}
	dir := filepath.Join(u.URL.Path, u.Subdir)
	if env.Root != "" {
		root, src := resolved(env.Root), resolved(dir)
		if root == src || strings.HasPrefix(root, src+string(filepath.Separator)) {
			// Every publish would be copied into the next revision: a new,
			// growing revision on every poll.
			return nil, fmt.Errorf("the root %s is inside the source directory %s: ferry would publish its own output; put the root elsewhere", env.Root, dir)
		}
	}
	return &Source{dir: dir, hashes: map[string]cached{}}, nil
}

// resolved returns p with the symlinks of its longest existing prefix
// resolved, so that two spellings of one directory compare equal even
// before the directory exists.
func resolved(p string) string {
	p = filepath.Clean(p)
	var rest []string
	for {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(append([]string{r}, rest...)...)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(append([]string{p}, rest...)...)
		}
		rest = append([]string{filepath.Base(p)}, rest...)
		p = parent
	}
}

// node is one entry of the tree, relative and slash-separated.
type node struct {
	path   string
	kind   byte // 'f' file, 'l' symlink, 'd' directory
	mode   fs.FileMode
	sum    string // file: sha256 of the content; symlink: its target
	source string // absolute path to read
}

// Fetch digests the directory and, when the digest differs from prev,
// writes it. Files whose content is unchanged are reused by the writer.
func (s *Source) Fetch(ctx context.Context, prev string, w fetch.Writer) (string, error) {
	nodes, err := s.scan(ctx)
	if err != nil {
		return "", err
	}
	rev := digest(nodes)
	if rev == prev {
		return prev, nil
	}
	for _, n := range nodes {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		switch n.kind {
		case 'd':
			err = w.Mkdir(n.path)
		case 'l':
			err = w.Symlink(n.path, n.sum)
		case 'f':
			err = w.WriteFile(n.path, n.mode, n.sum, func() (io.ReadCloser, error) { return openVerified(n) })
		}
		if err != nil {
			return "", err
		}
	}
	return rev, nil
}

func (s *Source) scan(ctx context.Context) ([]node, error) {
	root, err := filepath.EvalSymlinks(s.dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.dir, err)
	}
	var nodes []node
	seen := make(map[string]bool, len(s.hashes))
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if p == root && !d.IsDir() {
			// A single file is published under its name, as an HTTP
			// object or an S3 key is.
			rel = filepath.Base(s.dir)
		}
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch t := d.Type(); {
		case t.IsDir():
			nodes = append(nodes, node{path: rel, kind: 'd'})
		case t&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			nodes = append(nodes, node{path: rel, kind: 'l', sum: target})
		case t.IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			sum, err := s.hash(p, fi)
			if err != nil {
				return err
			}
			seen[p] = true
			nodes = append(nodes, node{path: rel, kind: 'f', mode: fi.Mode().Perm(), sum: sum, source: p})
		default:
			return fetch.Permanent(fmt.Errorf("entry %q: %s is not a regular file, directory or symlink", rel, t))
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		return nil, fmt.Errorf("read %s: %w", s.dir, err)
	}
	for p := range s.hashes {
		if !seen[p] {
			delete(s.hashes, p)
		}
	}
	return nodes, nil
}

// hash returns the file's sha256, from the cache when its stat is unchanged.
func (s *Source) hash(p string, fi fs.FileInfo) (string, error) {
	key := statKey{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		key.ctime = st.Ctim.Nano()
		key.ino = st.Ino
	}
	if c, ok := s.hashes[p]; ok && c.stat == key {
		return c.sum, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	s.hashes[p] = cached{stat: key, sum: sum}
	return sum, nil
}

// digest names the tree: every path with its kind, exec bit and content.
func digest(nodes []node) string {
	sorted := append([]node(nil), nodes...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].path < sorted[j].path })
	h := sha256.New()
	for _, n := range sorted {
		exec := n.mode&0o111 != 0
		fmt.Fprintf(h, "%c %t %q %s\n", n.kind, exec, n.path, n.sum)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// openVerified opens a file to copy and checks, at its end, that it still
// has the content the revision was named after. A file edited between the
// scan and the copy would otherwise be published under the wrong revision,
// and reused under the wrong key later; the next poll scans again.
func openVerified(n node) (io.ReadCloser, error) {
	f, err := os.Open(n.source)
	if err != nil {
		return nil, err
	}
	return &verifier{f: f, h: sha256.New(), want: n.sum, name: n.path}, nil
}

type verifier struct {
	f    *os.File
	h    hash.Hash
	want string
	name string
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.f.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF && hex.EncodeToString(v.h.Sum(nil)) != v.want {
		return n, fmt.Errorf("%s changed while it was copied; the next sync takes the new content", v.name)
	}
	return n, err
}

func (v *verifier) Close() error { return v.f.Close() }
