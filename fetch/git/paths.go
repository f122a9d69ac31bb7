package git

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"github.com/ferrysync/ferry/internal/redact"
)

// maxPaths bounds the patterns of ?paths=: a sparse checkout names a few
// directories, and each pattern is tried against every entry.
const maxPaths = 64

// selection is what ?paths= keeps, as patterns split at "/": each
// component is a path.Match glob ("*" never crosses a "/"). An entry is
// kept when its leading components match every component of a pattern:
// "conf/prod" keeps that directory and all below it, "shared/*.yaml" the
// YAML files of shared. nil keeps everything.
type selection [][]string

// parsePaths reads the comma-separated patterns of ?paths=, relative to
// the repository root or the //subdir.
func parsePaths(v string) (selection, error) {
	var sel selection
	for p := range strings.SplitSeq(v, ",") {
		p = strings.Trim(strings.TrimSpace(p), "/")
		if p == "" {
			continue
		}
		clean := path.Clean(p)
		if clean != p || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
			return nil, fmt.Errorf("git option paths: %q is not a clean relative path", redact.Value(p))
		}
		parts := strings.Split(clean, "/")
		for _, c := range parts {
			if _, err := path.Match(c, ""); err != nil {
				return nil, fmt.Errorf("git option paths: %q is not a valid pattern: %w", redact.Value(p), err)
			}
		}
		sel = append(sel, parts)
	}
	if len(sel) == 0 {
		return nil, fmt.Errorf("git option paths is empty (leave it out to publish the whole tree)")
	}
	if len(sel) > maxPaths {
		return nil, fmt.Errorf("git option paths names %d patterns, more than %d", len(sel), maxPaths)
	}
	return sel, nil
}

// step returns what the selection keeps below the entry called name, and
// whether it keeps anything there: nil when it keeps the whole entry.
func (sel selection) step(name string) (selection, bool) {
	if sel == nil {
		return nil, true
	}
	var below selection
	for _, p := range sel {
		if ok, _ := path.Match(p[0], name); !ok {
			continue
		}
		if len(p) == 1 {
			return nil, true
		}
		below = append(below, p[1:])
	}
	return below, below != nil
}

// String returns the selection as ?paths= writes it.
func (sel selection) String() string {
	ps := make([]string, len(sel))
	for i, p := range sel {
		ps[i] = strings.Join(p, "/")
	}
	return strings.Join(ps, ",")
}

// pathsRevision names what a ?paths= source publishes of tree: a digest
// of the mode, object id and path of every entry the selection keeps,
// and of the submodule mode when it keeps a gitlink. It is //subdir's
// tree id generalised: a commit that changes nothing selected keeps the
// revision, so nothing is published and nobody is notified; a submodule
// pinned to another commit changes its gitlink's id. Reading it costs the
// trees, never a blob.
func (s *Source) pathsRevision(ctx context.Context, objs storer.EncodedObjectStorer, tree *object.Tree) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "ferry paths v1\x00%s\x00", s.paths)
	gitlinks := false
	err := s.walk(ctx, objs, tree, "", s.paths, func(name string, e object.TreeEntry, below selection) error {
		if e.Mode == filemode.Submodule {
			gitlinks = true
			fmt.Fprintf(h, "%o %s %s\x00%s\x00", uint32(e.Mode), e.Hash, name, below)
			return nil
		}
		fmt.Fprintf(h, "%o %s %s\x00", uint32(e.Mode), e.Hash, name)
		return nil
	})
	if err != nil {
		return "", err
	}
	if gitlinks {
		fmt.Fprintf(h, "submodules=%s\x00", s.submodules)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
