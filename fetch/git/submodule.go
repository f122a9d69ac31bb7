package git

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"github.com/ferrysync/ferry/fetch"
)

// A submodule is a git source of its own, pinned to the commit its
// gitlink names: it gets an object store under the top source's state
// directory (submodules/, one per repository URL), fetches that commit
// as a pinned source does, and writes its tree through the same Writer,
// under the gitlink's path. The Writer's rules and limits count the
// whole revision, submodules included; a file whose blob did not change
// is linked from the published revision, never read again.

// submoduleMode is ?submodules=, as git-sync's --submodules.
type submoduleMode int

const (
	// subRecursive fetches submodules, theirs too (git-sync's default).
	subRecursive submoduleMode = iota
	// subShallow fetches the top source's submodules at depth 1, not
	// theirs.
	subShallow
	// subOff publishes a gitlink as an empty directory, as git clone.
	subOff
)

var submoduleModes = map[string]submoduleMode{"recursive": subRecursive, "shallow": subShallow, "off": subOff}

func (m submoduleMode) String() string {
	for k, v := range submoduleModes {
		if v == m {
			return k
		}
	}
	return strconv.Itoa(int(m))
}

const (
	// maxSubmoduleNesting bounds how deep submodules of submodules go.
	maxSubmoduleNesting = 8
	// maxSubmodules bounds the submodules one revision fetches: each is
	// a session with an origin, bounded on its own (limit.go).
	maxSubmodules = 128
	// maxGitmodules bounds the .gitmodules file read.
	maxGitmodules = 1 << 20
	// submodulesDir holds the submodules' object stores in the top
	// source's state directory.
	submodulesDir = "submodules"
)

// subLink ties a submodule's source to the export it is part of.
type subLink struct {
	run     *subRun
	nesting int      // 0 for the top source
	chain   []string // the remotes from the top source down to this one
}

// subRun is one export of the top source, submodules included.
type subRun struct {
	stateDir string          // the top source's
	count    int             // submodules fetched
	used     map[string]bool // their store directories
}

// gitmodules is the .gitmodules of the commit being exported, read on
// the first gitlink.
type gitmodules struct {
	root   plumbing.Hash // the commit's tree
	read   bool
	byPath map[string]*config.Submodule
}

// readGitmodules returns the submodules of tree root by path. A missing
// file maps nothing.
func (s *Source) readGitmodules(objs storer.EncodedObjectStorer, root plumbing.Hash) (map[string]*config.Submodule, error) {
	tree, err := s.getTree(objs, root)
	if err != nil {
		return nil, err
	}
	e, err := tree.FindEntry(".gitmodules")
	if errors.Is(err, object.ErrEntryNotFound) || err == nil && e.Mode != filemode.Regular && e.Mode != filemode.Executable {
		return nil, nil
	}
	if err != nil {
		return nil, storeErr(err)
	}
	r, err := s.blobOpener(objs, e.Hash, ".gitmodules")()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, maxGitmodules+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxGitmodules {
		return nil, fetch.Permanent(fmt.Errorf(".gitmodules is larger than %d bytes", maxGitmodules))
	}
	m := config.NewModules()
	if err := m.Unmarshal(b); err != nil {
		return nil, fetch.Permanent(fmt.Errorf(".gitmodules does not parse: %w", err))
	}
	byPath := make(map[string]*config.Submodule, len(m.Submodules))
	for _, sm := range m.Submodules {
		if sm.Validate() == nil {
			byPath[path.Clean(sm.Path)] = sm
		}
	}
	return byPath, nil
}

// hasSubmodules tells whether .gitmodules maps a submodule inside what
// the source publishes (the //subdir), so the revision must say that
// submodules were fetched.
func (s *Source) hasSubmodules(objs storer.EncodedObjectStorer, mods *gitmodules) (bool, error) {
	if s.submodules == subOff {
		return false, nil
	}
	byPath, err := mods.get(s, objs)
	for p := range byPath {
		if s.subdir == "" || p == s.subdir || strings.HasPrefix(p, s.subdir+"/") {
			return true, err
		}
	}
	return false, err
}

func (g *gitmodules) get(s *Source, objs storer.EncodedObjectStorer) (map[string]*config.Submodule, error) {
	if !g.read {
		byPath, err := s.readGitmodules(objs, g.root)
		if err != nil {
			return nil, err
		}
		g.byPath, g.read = byPath, true
	}
	return g.byPath, nil
}

// writeSubmodule writes the gitlink name (pinning commit h) through w:
// the submodule's tree, or an empty directory when submodules are off
// here or .gitmodules does not map it (as git clone leaves it).
func (s *Source) writeSubmodule(ctx context.Context, x *export, name string, h plumbing.Hash, below selection) error {
	if err := x.w.Mkdir(name); err != nil {
		return err
	}
	if s.submodules == subOff {
		if s.sub.nesting == 0 {
			s.log.Warn("git submodule published as an empty directory (?submodules=off)", "path", name, "commit", h.String())
		}
		return nil
	}
	byPath, err := x.modules.get(s, x.objs)
	if err != nil {
		return err
	}
	sm := byPath[path.Join(s.subdir, name)]
	if sm == nil {
		s.log.Warn("git submodule not in .gitmodules; published as an empty directory", "path", name, "commit", h.String())
		return nil
	}
	child, err := s.submodule(sm, h, below)
	if err != nil {
		return fetch.Permanent(fmt.Errorf("submodule %s: %w", name, err))
	}
	if _, err := child.Fetch(ctx, "", &prefixWriter{w: x.w, dir: name}); err != nil {
		return fmt.Errorf("submodule %s (%s) commit %s: %w", name, child.display, h, err)
	}
	return nil
}

// submodule builds the source of submodule sm at commit h, keeping what
// below selects.
func (s *Source) submodule(sm *config.Submodule, h plumbing.Hash, below selection) (*Source, error) {
	run := s.sub.run
	if run.count++; run.count > maxSubmodules {
		return nil, fmt.Errorf("the revision has more than %d submodules", maxSubmodules)
	}
	if s.sub.nesting+1 > maxSubmoduleNesting {
		return nil, fmt.Errorf("submodules nested deeper than %d", maxSubmoduleNesting)
	}
	u, err := s.submoduleURL(sm.URL)
	if err != nil {
		return nil, err
	}
	shown := fetch.Redact(u)
	key := repoKey(u)
	chain := append(slices.Clip(s.sub.chain), s.key())
	if slices.Contains(chain, key) {
		return nil, fmt.Errorf("%s is a submodule of itself", shown)
	}
	q := url.Values{"ref": {h.String()}, "depth": {strconv.Itoa(s.depth)}, "submodules": {s.submodules.String()}}
	if s.submodules == subShallow {
		q.Set("depth", "1")
		q.Set("submodules", "off")
	}
	u.RawQuery = q.Encode()
	sum := sha256.Sum256([]byte(key))
	dir := filepath.Join(run.stateDir, submodulesDir, hex.EncodeToString(sum[:10]))
	run.used[filepath.Base(dir)] = true
	o, sameHost := s.submoduleOptions(u)
	child, err := New(&fetch.URL{Kind: "git", URL: u}, o, fetch.Env{StateDir: dir, Logger: s.log.With("submodule", shown), Limits: s.limits})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", shown, err)
	}
	if sameHost {
		if child.urlUser == "" {
			child.urlUser = s.urlUser
		}
		child.app = s.app // one token cache for the host
	}
	child.paths = below
	child.sub = subLink{run: run, nesting: s.sub.nesting + 1, chain: chain}
	return child, nil
}

// submoduleOptions returns the options of the submodule at u: the
// credentials of the source for the same scheme, host and port; none for
// another host (never sent there), whose SSH host keys are still checked.
// Signatures are not checked again: the verified parent pins the commit.
func (s *Source) submoduleOptions(u *url.URL) (Options, bool) {
	if u.Scheme == s.scheme && strings.EqualFold(u.Host, s.host) {
		o := s.opts
		o.VerifyKeysFile = ""
		return o, true
	}
	return Options{KnownHostsFile: s.opts.KnownHostsFile, InsecureIgnoreHostKey: s.opts.InsecureIgnoreHostKey}, false
}

// submoduleURL resolves the URL .gitmodules gives: one starting ./ or
// ../ against the source's own, as git does; scp-like user@host:path as
// ssh://. Only the schemes of a remote source are followed: a repository
// must not make ferry read local files. A query or fragment is dropped.
func (s *Source) submoduleURL(raw string) (*url.URL, error) {
	shown := fetch.RedactString(raw)
	var u *url.URL
	var err error
	switch {
	case strings.Contains(raw, "::"):
		// git's transport helpers (ext::, fd::): commands, not places.
		return nil, fmt.Errorf("URL %q is not one ferry can fetch", shown)
	case strings.HasPrefix(raw, "./") || strings.HasPrefix(raw, "../"):
		u, err = s.relativeURL(raw)
	case strings.Contains(raw, "://"):
		u, err = url.Parse(raw)
	case scpLike(raw):
		user, rest, found := strings.Cut(raw, "@")
		if !found {
			user, rest = "", raw
		}
		host, p, _ := strings.Cut(rest, ":")
		u = &url.URL{Scheme: "ssh", Host: host, Path: "/" + strings.TrimPrefix(p, "/")}
		if user != "" {
			u.User = url.User(user)
		}
	case strings.HasPrefix(raw, "/"):
		u = &url.URL{Scheme: "file", Path: raw}
	default:
		return nil, fmt.Errorf("URL %q is not one ferry can fetch", shown)
	}
	if err != nil {
		return nil, fmt.Errorf("URL %q does not parse", shown)
	}
	switch {
	case u.Scheme == "file" && s.scheme != "file":
		return nil, fmt.Errorf("URL %q is local: a remote repository's submodule must be remote too", shown)
	case u.Scheme != "file" && u.Host == "":
		return nil, fmt.Errorf("URL %q has no host", shown)
	}
	switch u.Scheme {
	case "https", "http", "ssh", "git", "file":
	default:
		return nil, fmt.Errorf("URL %q: scheme %q is not supported", shown, u.Scheme)
	}
	u.RawQuery, u.Fragment, u.RawFragment, u.ForceQuery = "", "", "", false
	return u, nil
}

// key names the source's repository, whatever user it is reached as.
func (s *Source) key() string {
	if s.scheme == "file" {
		return repoKey(&url.URL{Scheme: "file", Path: s.localDir})
	}
	u, err := url.Parse(s.remote)
	if err != nil {
		return s.remote
	}
	return repoKey(u)
}

// repoKey is u without user, query or fragment, and without a trailing
// "/" or ".git": the same repository however .gitmodules spells it.
func repoKey(u *url.URL) string {
	k := url.URL{Scheme: u.Scheme, Host: strings.ToLower(u.Host), Path: strings.TrimSuffix(strings.TrimRight(u.Path, "/"), ".git")}
	return k.String()
}

// scpLike tells git's host:path form (a ":" before any "/").
func scpLike(raw string) bool {
	colon := strings.IndexByte(raw, ':')
	slash := strings.IndexByte(raw, '/')
	return colon > 0 && (slash < 0 || colon < slash)
}

// relativeURL resolves rel against the source's URL as git does: each
// ../ drops one component of it, ./ none ("../lib.git" next to
// https://host/org/app.git is https://host/org/lib.git).
func (s *Source) relativeURL(rel string) (*url.URL, error) {
	var base *url.URL
	if s.scheme == "file" {
		base = &url.URL{Scheme: "file", Path: s.localDir}
	} else {
		b, err := url.Parse(s.remote)
		if err != nil {
			return nil, err
		}
		base = b
		if s.urlUser != "" && s.scheme == "ssh" {
			base.User = url.User(s.urlUser)
		}
	}
	p := strings.TrimRight(base.Path, "/")
	for {
		switch {
		case strings.HasPrefix(rel, "./"):
			rel = rel[2:]
			continue
		case strings.HasPrefix(rel, "../"):
			rel = rel[3:]
			i := strings.LastIndexByte(p, '/')
			if i < 0 || p == "" {
				return nil, errors.New("relative URL leaves the host")
			}
			p = p[:i]
			continue
		}
		break
	}
	out := *base
	out.Path = p + "/" + strings.TrimLeft(rel, "/")
	out.RawPath = ""
	return &out, nil
}

// removeUnusedSubmodules removes the object stores of the submodules the
// export just done did not use.
func (s *Source) removeUnusedSubmodules() {
	run := s.sub.run
	dir := filepath.Join(run.stateDir, submodulesDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	for _, e := range entries {
		if !run.used[e.Name()] {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				s.log.Warn("removing the object store of a submodule no longer used failed", "dir", filepath.Join(dir, e.Name()), "error", err)
			}
		}
	}
}

// prefixWriter writes a submodule's tree under its path.
type prefixWriter struct {
	w   fetch.Writer
	dir string
}

func (p *prefixWriter) WriteFile(name string, mode fs.FileMode, key string, open fetch.Opener) error {
	return p.w.WriteFile(p.dir+"/"+name, mode, key, open)
}

func (p *prefixWriter) Symlink(name, target string) error {
	return p.w.Symlink(p.dir+"/"+name, target)
}

func (p *prefixWriter) Mkdir(name string) error { return p.w.Mkdir(p.dir + "/" + name) }
