package sync

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Prepare readies the root for exactly these sources, before the first
// sync: each gets ROOT/.ferry/NAME as a real, world-traversable directory
// (its .state and .meta must not be symlinks either), and what belongs to
// a source no longer configured (its link in ROOT and its revisions) is
// removed, with one line each. Nothing else in ROOT is touched.
func (s *Store) Prepare(names []string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	configured := make(map[string]bool, len(names))
	var errs []error
	for _, name := range names {
		configured[name] = true
		errs = append(errs, s.prepareSource(name))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return s.prune(configured, log)
}

func (s *Store) prepareSource(name string) error {
	p := s.sourceDir(name)
	dir, err := openRealDir(p, true)
	if err != nil {
		return err
	}
	defer dir.Close()
	// A directory made by an older ferry, or by hand, may be narrower: the
	// app reading ROOT/NAME as another user must be able to traverse it.
	if err := dir.Chmod(dirPerm); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	for _, sub := range []string{stateDir, manifestDir} {
		fi, err := os.Lstat(filepath.Join(p, sub))
		if err == nil && !fi.IsDir() {
			return fmt.Errorf("%s is not a directory (a symlink?): ferry writes and removes there; remove it", filepath.Join(p, sub))
		}
	}
	return nil
}

// prune removes the links and trees of sources that are not configured.
func (s *Store) prune(configured map[string]bool, log *slog.Logger) error {
	rootDir, err := os.Open(s.root)
	if err != nil {
		return err
	}
	defer rootDir.Close()
	names, err := rootDir.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read %s: %w", s.root, err)
	}
	var errs []error
	genLink := s.generationLink()
	for _, n := range names {
		if configured[n] || !ValidName(n) || n == genLink {
			continue
		}
		if fi, err := os.Lstat(filepath.Join(s.root, n)); err == nil && fi.IsDir() {
			// A directory ferry published in exchange mode, when its
			// record says so; anything else is not ours.
			if rev, err := s.linkExchanged(n); err == nil {
				if err := removeAllAt(rootDir, n); err != nil {
					errs = append(errs, fmt.Errorf("remove %s: %w", filepath.Join(s.root, n), err))
					continue
				}
				log.Info("removed the directory of a source no longer configured", "path", filepath.Join(s.root, n), "revision", rev)
			}
			continue
		}
		target, err := os.Readlink(filepath.Join(s.root, n))
		if err != nil {
			continue // not a link: not ours
		}
		src, rev, ok := splitTarget(target)
		if !ok || configured[src] || src != n && configured[n] {
			continue
		}
		if err := unix.Unlinkat(int(rootDir.Fd()), n, 0); err != nil {
			errs = append(errs, fmt.Errorf("remove link %s: %w", filepath.Join(s.root, n), err))
			continue
		}
		if src == generationsDir {
			log.Info("removed a generation link no longer configured", "link", filepath.Join(s.root, n))
		} else {
			log.Info("removed the link of a source no longer configured", "link", filepath.Join(s.root, n), "revision", rev)
		}
	}
	dirs, err := readDirNames(s.meta)
	if err != nil {
		return err
	}
	for _, n := range dirs {
		if configured[n] || !ValidName(n) && n != generationsDir || n == generationsDir && genLink != "" {
			continue
		}
		if fi, err := os.Lstat(filepath.Join(s.root, metaDir, n)); err != nil || !fi.IsDir() {
			continue
		}
		if err := removeAllAt(s.meta, n); err != nil {
			errs = append(errs, fmt.Errorf("remove revisions of %s: %w", n, err))
			continue
		}
		if n == generationsDir {
			log.Info("removed the generations of a generation link no longer configured")
			continue
		}
		log.Info("removed the revisions of a source no longer configured", "source", n)
	}
	return errors.Join(errs...)
}

// splitTarget reads a link target ferry wrote: .ferry/NAME/REV, or
// .ferry/.generations/G for the generation link.
func splitTarget(target string) (name, rev string, ok bool) {
	rest, ok := strings.CutPrefix(target, metaDir+"/")
	if !ok {
		return "", "", false
	}
	name, rev, ok = strings.Cut(rest, "/")
	if !ok || !ValidName(name) && name != generationsDir || !validRev(rev) {
		return "", "", false
	}
	return name, rev, true
}
