package sync

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/format/gitignore"

	"github.com/ferrysync/ferry/fetch"
)

// Ignore patterns are applied by the engine, to every kind of source: a
// Stage skips what they match (Flux's .sourceignore, in .gitignore
// syntax). A source still names its revision after everything it read, so
// when only ignored entries changed it returns a new revision whose tree,
// staged, is the published one byte for byte: that is no change. It is
// not published, nobody is told, and the source's answer is remembered
// as the published revision's alias, so the next poll asks the source
// whether that answer still holds and costs what an unchanged poll costs.

// maxIgnorePatterns bounds the patterns: each is tried against every
// entry and each of its parents.
const maxIgnorePatterns = 1000

// ignore is a parsed set of ignore patterns.
type ignore struct {
	m gitignore.Matcher
}

// parseIgnore reads ignore patterns as a source's Ignore gives them: in
// .gitignore syntax (a leading "/" anchors to the tree's root, a trailing
// "/" matches directories only, "!" re-includes, "**" crosses
// directories), one a string, "#" comments and blank strings skipped. It
// returns nil when no pattern is left.
func parseIgnore(patterns []string) (*ignore, error) {
	var ps []gitignore.Pattern
	var errs []error
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		if strings.ContainsRune(p, 0) || p == "!" {
			errs = append(errs, fmt.Errorf("ignore pattern %q is not valid", p))
			continue
		}
		ps = append(ps, gitignore.ParsePattern(p, nil))
	}
	if len(ps) > maxIgnorePatterns {
		errs = append(errs, fmt.Errorf("%d ignore patterns, more than %d", len(ps), maxIgnorePatterns))
	}
	if err := errors.Join(errs...); err != nil || len(ps) == 0 {
		return nil, err
	}
	return &ignore{m: gitignore.NewMatcher(ps)}, nil
}

// CheckIgnore reports what is wrong with ignore patterns, as a Source's
// Ignore gives them, before any sync.
func CheckIgnore(patterns []string) error {
	_, err := parseIgnore(patterns)
	return err
}

// match tells whether name, a directory when dir is set, is ignored: it
// or one of its parents matches, as git never looks inside an ignored
// directory. A name the tree would refuse is not ignored: it is refused.
func (ig *ignore) match(name string, dir bool) bool {
	if ig == nil {
		return false
	}
	clean, err := fetch.CleanName(name)
	if err != nil || clean == "." {
		return false
	}
	parts := strings.Split(clean, "/")
	for i := 1; i <= len(parts); i++ {
		if ig.m.Match(parts[:i], dir || i < len(parts)) {
			return true
		}
	}
	return false
}

// skip reports whether the entry name is ignored, and counts it.
func (st *Stage) skip(name string, dir bool) bool {
	if !st.ignore.match(name, dir) {
		return false
	}
	st.ignored.Add(1)
	return true
}

// sameAs reports whether the complete staged tree is, byte for byte,
// revision rev as published: the same files with the same modes and
// content, the same symlinks and directories.
func (st *Stage) sameAs(rev string) (bool, error) {
	if _, err := st.complete(); err != nil {
		return false, err
	}
	m, err := st.store.readManifest(st.name, rev)
	if err != nil {
		return false, nil // nothing to compare with: publish
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	same := maps.EqualFunc(st.entries, m.Files, func(a, b entry) bool {
		return a.Mode == b.Mode && a.Size == b.Size && a.Sum == b.Sum
	})
	return same && maps.Equal(st.symlinks, m.Links) && slices.Equal(sortedDirs(st.dirs), m.Dirs), nil
}

// ignoredChange is a revision a source returned whose tree, after its
// ignored entries were skipped, was the published one.
type ignoredChange struct {
	fetched, published string
}

// aliasOf returns what the source last answered for the published
// revision base when it was only an ignored change, or "".
func (src *source) aliasOf(base string) string {
	src.mu.Lock()
	defer src.mu.Unlock()
	if base != "" && src.alias.published == base {
		return src.alias.fetched
	}
	return ""
}

func (src *source) setAlias(fetched, published string) {
	src.mu.Lock()
	src.alias = ignoredChange{fetched: fetched, published: published}
	src.mu.Unlock()
}
