package sync

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// GC removes the oldest revisions of source name beyond keep, by publish
// time. The current revision is never removed, nor the one the generation
// link shows, and nothing is followed through a symlink: only real
// directories under ROOT/.ferry/NAME count.
func (s *Store) GC(name string, keep int) error {
	if keep < 1 {
		keep = 1
	}
	s.genMu.Lock()
	defer s.genMu.Unlock()
	current, err := s.Current(name)
	if err != nil {
		return err
	}
	dir, err := s.openSourceDir(name)
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	defer dir.Close()
	entries, err := dir.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	type revInfo struct {
		rev string
		mod time.Time
	}
	var revs []revInfo
	pinned := s.pinned(name)
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") || e.Name() == current || e.Name() == pinned {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		revs = append(revs, revInfo{e.Name(), info.ModTime()})
	}
	sort.Slice(revs, func(i, j int) bool { return revs[i].mod.After(revs[j].mod) })
	keepOthers := keep - 1
	if current == "" {
		keepOthers = keep
	}
	var errs []error
	kept := map[string]bool{current: current != "", pinned: pinned != ""}
	for i, r := range revs {
		if i < keepOthers {
			kept[r.rev] = true
			continue
		}
		// Renamed out of the way first, atomically: a removal cut short by
		// a kill must never leave a partial tree under a revision's name.
		// The stage prefix makes the next start remove what is left.
		doomed := stagePrefix + "gc-" + randomSuffix()
		if err := renameAt(dir, r.rev, doomed); err != nil {
			errs = append(errs, fmt.Errorf("gc %s: %w", r.rev, err))
			continue
		}
		s.removeManifest(name, r.rev)
		if err := removeAllAt(dir, doomed); err != nil {
			errs = append(errs, fmt.Errorf("gc %s: %w", r.rev, err))
		}
	}
	// Exchange mode's retired mirrors go with their revisions: a reader
	// still inside one keeps it as long as GC keeps the revision.
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), retiredPrefix) && !kept[retiredRev(e.Name())] {
			if err := removeAllAt(dir, e.Name()); err != nil {
				errs = append(errs, fmt.Errorf("gc %s: %w", e.Name(), err))
			}
		}
	}
	return errors.Join(errs...)
}
