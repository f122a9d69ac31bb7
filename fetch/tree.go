package fetch

import (
	"fmt"
	"path"
	"strings"
)

// Linux's limits on names (NAME_MAX, PATH_MAX): a longer entry cannot be
// created, and retrying will not change that.
const (
	maxComponentLen = 255
	maxPathLen      = 4096
)

// Tree is the shape of one revision as a Writer receives its entries: it
// holds the rules every entry obeys, whatever its source, and refuses, with
// a permanent error naming the entry, what breaks one: a name that leaves
// the revision, a .git entry, a duplicate, a file where a directory is (or
// the reverse), an entry under a symlink, more entries than MaxFiles.
// The publish engine writes through one, and so does fetchtest's
// in-memory Writer: a backend's own tests meet the rules a publish
// enforces, and a backend need not repeat them. A Tree is not safe for
// concurrent use.
type Tree struct {
	maxFiles int
	kinds    map[string]kind
	entries  int // files and symlinks
	dirs     int
}

type kind byte

const (
	isFile kind = iota + 1
	isLink
	isDir
)

// NewTree returns an empty tree bounded by l.
func NewTree(l Limits) *Tree {
	return &Tree{maxFiles: l.WithDefaults().MaxFiles, kinds: make(map[string]kind)}
}

// Refuse returns the permanent error of an entry that cannot be
// published, in the form every refusal takes.
func Refuse(name, format string, args ...any) error {
	return Permanent(fmt.Errorf("entry %q: %s", name, fmt.Sprintf(format, args...)))
}

// CleanName turns an entry's name into a clean relative path, or refuses
// it: empty, absolute, leaving the revision, too long for Linux, or a .git
// anywhere in it (git refuses to check such a tree out; inside the
// published tree, any git command run there, a shell prompt's, would obey
// its config and run its hooks and core.fsmonitor).
func CleanName(name string) (string, error) {
	if name == "" || strings.ContainsRune(name, 0) {
		return "", Refuse(name, "invalid name")
	}
	if len(name) > maxPathLen {
		return "", Refuse(name[:64]+"...", "name longer than %d bytes", maxPathLen)
	}
	for _, c := range strings.Split(name, "/") {
		if len(c) > maxComponentLen {
			return "", Refuse(name, "a path component is longer than %d bytes", maxComponentLen)
		}
	}
	if strings.HasPrefix(name, "/") {
		return "", Refuse(name, "absolute path")
	}
	clean := path.Clean(name)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", Refuse(name, "path leaves the revision")
	}
	for _, c := range strings.Split(clean, "/") {
		if strings.EqualFold(c, ".git") {
			return "", Refuse(name, "a .git entry is never published (git run inside the tree would obey its config and hooks)")
		}
	}
	return clean, nil
}

// File records a regular file. It returns the clean name and the
// directories to create before it, parents first.
func (t *Tree) File(name string) (string, []string, error) {
	return t.add(name, isFile)
}

// Symlink records a symlink to target, which must not leave the revision
// by its name (the engine checks it once more on disk, where a chain of
// links may). It returns what File does.
func (t *Tree) Symlink(name, target string) (string, []string, error) {
	if target == "" || strings.ContainsRune(target, 0) {
		return "", nil, Refuse(name, "symlink with an invalid target")
	}
	if path.IsAbs(target) {
		return "", nil, Refuse(name, "symlink to absolute path %q", target)
	}
	rel, dirs, err := t.add(name, isLink)
	if err != nil {
		return "", nil, err
	}
	if r := path.Join(path.Dir(rel), target); r == ".." || strings.HasPrefix(r, "../") {
		delete(t.kinds, rel)
		t.entries--
		return "", nil, Refuse(name, "symlink to %q leaves the revision", target)
	}
	return rel, dirs, nil
}

// Dir records a directory, and its parents. It returns the directories to
// create, parents first; none when they all exist.
func (t *Tree) Dir(name string) ([]string, error) {
	rel, err := CleanName(name)
	if err != nil {
		return nil, err
	}
	return t.mkdirs(rel, name)
}

func (t *Tree) add(name string, k kind) (string, []string, error) {
	rel, err := CleanName(name)
	if err != nil {
		return "", nil, err
	}
	if rel == "." {
		return "", nil, Refuse(name, "names the revision root")
	}
	switch t.kinds[rel] {
	case isFile, isLink:
		return "", nil, Refuse(name, "duplicate entry")
	case isDir:
		return "", nil, Refuse(name, "is both a directory and a file")
	}
	if t.entries >= t.maxFiles {
		return "", nil, Refuse(name, "revision has more than %d files (max-files)", t.maxFiles)
	}
	dirs, err := t.mkdirs(path.Dir(rel), name)
	if err != nil {
		return "", nil, err
	}
	t.kinds[rel] = k
	t.entries++
	return rel, dirs, nil
}

// mkdirs records rel and its missing parents as directories.
func (t *Tree) mkdirs(rel, name string) ([]string, error) {
	var missing []string
	for p := rel; p != "."; p = path.Dir(p) {
		switch t.kinds[p] {
		case isDir:
		case isFile:
			return nil, Refuse(name, "parent %q is a file", p)
		case isLink:
			return nil, Refuse(name, "parent %q is a symlink", p)
		default:
			missing = append(missing, p)
			continue
		}
		break
	}
	if t.dirs+len(missing) > t.maxFiles {
		return nil, Refuse(name, "revision has more than %d directories (max-files)", t.maxFiles)
	}
	// Parents first.
	for i, j := 0, len(missing)-1; i < j; i, j = i+1, j-1 {
		missing[i], missing[j] = missing[j], missing[i]
	}
	for _, d := range missing {
		t.kinds[d] = isDir
	}
	t.dirs += len(missing)
	return missing, nil
}

// Entries returns how many files and symlinks the tree holds.
func (t *Tree) Entries() int { return t.entries }
