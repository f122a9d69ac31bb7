package sync

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ferrysync/ferry/fetch"
	"golang.org/x/sys/unix"
)

// The generation link is one view of every source at once:
//
//	ROOT/LINK                       -> .ferry/.generations/G (relative symlink)
//	ROOT/.ferry/.generations/G/NAME -> ../../NAME/REV, one per source
//
// G names a set of revisions, one per source, and is written whole before
// ROOT/LINK is swapped to it, so a reader that resolves ROOT/LINK once
// reads every source at the revisions published together.
const (
	generationsDir = ".generations"
	// generationLen is the length of a generation's name: hex of a
	// SHA-256 of the set, enough that two sets never meet.
	generationLen = 16
)

// Generation is a revision of every source: source name to revision.
type Generation map[string]string

// name is the generation's directory name, the same for the same set.
func (g Generation) name() string {
	h := sha256.New()
	for _, src := range slices.Sorted(maps.Keys(g)) {
		fmt.Fprintf(h, "%s %s\n", src, g[src])
	}
	return hex.EncodeToString(h.Sum(nil))[:generationLen]
}

// SetGenerationLink makes the Store keep ROOT/link as the generation link;
// Prepare then keeps that link and removes any other. "" means none.
func (s *Store) SetGenerationLink(link string) error {
	if link != "" && !ValidName(link) {
		return fmt.Errorf("generation link %q: want a name of letters, digits, '.', '_' and '-'", link)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.genLink = link
	return nil
}

// generationLink returns the name set by SetGenerationLink.
func (s *Store) generationLink() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.genLink
}

// CurrentGeneration reads the generation ROOT/LINK points at, and checks
// it: a link ferry wrote, to a generation whose entries are ferry's links
// to revisions on disk. Anything else reads as no generation (nil), to be
// written again.
func (s *Store) CurrentGeneration() Generation {
	link := s.generationLink()
	if link == "" {
		return nil
	}
	target, err := os.Readlink(s.LinkPath(link))
	if err != nil {
		return nil
	}
	name, ok := strings.CutPrefix(target, metaDir+"/"+generationsDir+"/")
	if !ok {
		return nil
	}
	g, err := s.readGeneration(name)
	if err != nil {
		return nil
	}
	s.pin(g)
	return g
}

// pin makes GC keep the revisions of g, the generation ROOT/LINK shows:
// a source's newer revision is published before the generation that
// takes it is.
func (s *Store) pin(g Generation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen = g
}

// generationShows reports whether the generation read or written last
// shows exactly the sources names, no more, no fewer.
func (s *Store) generationShows(names []string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.gen) != len(names) {
		return false
	}
	for _, n := range names {
		if _, ok := s.gen[n]; !ok {
			return false
		}
	}
	return true
}

// pinned returns the revision of source name that the generation link
// shows, or "".
func (s *Store) pinned(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen[name]
}

// readGeneration reads generation name and checks that it is what its
// name says, with every tree it points at in place.
func (s *Store) readGeneration(name string) (Generation, error) {
	dir, err := s.openGenerationsDir(false)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	gdir, err := openDirAt(dir, name)
	if err != nil {
		return nil, err
	}
	defer gdir.Close()
	entries, err := gdir.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	g := Generation{}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(gdir.Name(), e.Name()))
		if err != nil || e.Type() != fs.ModeSymlink {
			return nil, fmt.Errorf("generation %s: %s is not ferry's link", name, e.Name())
		}
		rest, ok := strings.CutPrefix(target, "../../")
		src, rev, ok2 := strings.Cut(rest, "/")
		if !ok || !ok2 || src != e.Name() || !ValidName(src) || !validRev(rev) || !s.treeThere(src, rev) {
			return nil, fmt.Errorf("generation %s: %s -> %s is not a revision on disk", name, e.Name(), target)
		}
		g[src] = rev
	}
	if g.name() != name {
		return nil, fmt.Errorf("generation %s holds another set", name)
	}
	return g, nil
}

// PublishGeneration writes generation g, unless it is on disk already
// (checked), and points ROOT/LINK at it: the links of g are written in a
// staging directory, flushed and renamed into place, then a new ROOT/LINK
// is renamed over the old one and the root flushed, as a source's link is.
// Generations that point at a revision no longer on disk are removed.
func (s *Store) PublishGeneration(g Generation) error {
	link := s.generationLink()
	if link == "" {
		return errors.New("no generation link configured")
	}
	// GC must not take a revision of g between the check below and the
	// swap: it holds the same lock.
	s.genMu.Lock()
	defer s.genMu.Unlock()
	if fi, err := os.Lstat(s.LinkPath(link)); err == nil {
		target, _ := os.Readlink(s.LinkPath(link))
		if fi.Mode()&fs.ModeSymlink == 0 || !strings.HasPrefix(target, metaDir+"/") {
			// Someone else's: retrying will not move it.
			return fetch.Permanent(fmt.Errorf("%s exists and is not ferry's link; refusing to replace it", s.LinkPath(link)))
		}
	}
	for src, rev := range g {
		if !s.treeThere(src, rev) {
			return fmt.Errorf("generation: the tree of %s revision %s is missing", src, rev)
		}
	}
	dir, err := s.openGenerationsDir(true)
	if err != nil {
		return err
	}
	defer dir.Close()
	name := g.name()
	if _, err := s.readGeneration(name); err != nil {
		if err := s.writeGeneration(dir, name, g); err != nil {
			return err
		}
	}
	tmp := filepath.Join(dir.Name(), linkPrefix+randomSuffix())
	if err := os.Symlink(metaDir+"/"+generationsDir+"/"+name, tmp); err != nil {
		return fmt.Errorf("generation link: %w", err)
	}
	if err := s.renameLink(tmp, s.LinkPath(link)); err != nil {
		return err
	}
	s.pin(g)
	return s.gcGenerations(dir, name)
}

// writeGeneration writes generation name afresh in dir, replacing whatever
// holds its name.
func (s *Store) writeGeneration(dir *os.File, name string, g Generation) error {
	stage := stagePrefix + randomSuffix()
	sub, err := mkdirAt(dir, stage)
	if err != nil {
		return fmt.Errorf("generation: %w", err)
	}
	defer sub.Close()
	for src, rev := range g {
		if err := unix.Symlinkat("../../"+src+"/"+rev, int(sub.Fd()), src); err != nil {
			removeAllAt(dir, stage)
			return fmt.Errorf("generation: symlink %s: %w", src, err)
		}
	}
	if err := sub.Sync(); err != nil {
		removeAllAt(dir, stage)
		return fmt.Errorf("generation: %w", err)
	}
	// A directory in the way (damaged, or someone else's) is replaced in
	// one step, where it can be: the link may point at it.
	if err := placeAt(dir, stage, name); err != nil {
		removeAllAt(dir, stage)
		return fmt.Errorf("generation: %w", err)
	}
	return syncDir(dir.Name())
}

// gcGenerations removes the generations, but current, that point at a
// revision no longer on disk: GC keeps those a reader may still be in.
func (s *Store) gcGenerations(dir *os.File, current string) error {
	names, err := readDirNames(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		if n == current || strings.HasPrefix(n, ".") {
			continue
		}
		if _, err := s.readGeneration(n); err != nil {
			errs = append(errs, removeAllAt(dir, n))
		}
	}
	return errors.Join(errs...)
}

// openGenerationsDir opens ROOT/.ferry/.generations, a real directory,
// creating it when create is set.
func (s *Store) openGenerationsDir(create bool) (*os.File, error) {
	if create {
		dir, err := mkdirAt(s.meta, generationsDir)
		if err == nil {
			return dir, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("generations: %w", err)
		}
	}
	return openDirAt(s.meta, generationsDir)
}
