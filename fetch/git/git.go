package git

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/kit"
	"github.com/ferrysync/ferry/internal/redact"
)

// DefaultDepth is how many commits a fetch asks for: the tree of the tip is
// all ferry publishes, so history is never downloaded unless asked.
const DefaultDepth = 1

// Source publishes the tree of one ref of a git repository. Fetch is not
// safe for concurrent use; the sync loop never calls it concurrently.
type Source struct {
	remote   string // the URL go-git dials: no query, no password, no HTTP user
	display  string // the redacted URL for errors and logs
	scheme   string
	hostPort string // host:port, for SSH known_hosts lookups
	urlUser  string
	ref      string        // as given; "" follows the remote HEAD
	sha      plumbing.Hash // set when ref is a full commit SHA
	depth    int
	subdir   string
	opts     Options
	bounds   bounds // what one fetch may receive
	storeDir string
	log      *slog.Logger
	// last is the commit behind the revision the last Fetch returned.
	last atomic.Pointer[origin]
}

// origin ties a revision to the commit it was taken from.
type origin struct {
	commit plumbing.Hash
	rev    string
}

var (
	_ fetch.Source         = (*Source)(nil)
	_ fetch.OriginReporter = (*Source)(nil)
)

var (
	fullSHA = regexp.MustCompile(`^[0-9a-f]{40}$`)
	// badRef rejects what git refuses in a ref name (git check-ref-format).
	badRef = regexp.MustCompile(`(\.\.|@\{|[\x00-\x20\x7f~^:?*\[\\]|^/|/$|//|\.lock$|/\.|^\.)`)
)

// New builds a git source for u. It checks the URL, its options and the
// credential files, without any network access, so a mistake is reported
// before the first sync.
func New(u *fetch.URL, o Options, env fetch.Env) (*Source, error) {
	if u == nil || u.URL == nil {
		return nil, errors.New("git: no URL")
	}
	setupGoGit()
	s := &Source{
		display: u.String(),
		scheme:  u.URL.Scheme,
		subdir:  u.Subdir,
		depth:   DefaultDepth,
		opts:    o.forScheme(u.URL.Scheme),
		bounds:  boundsFor(env.Limits),
		log:     env.Logger,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	switch s.scheme {
	case "https", "http", "ssh", "git":
		if u.URL.Host == "" {
			errs = append(errs, fmt.Errorf("git URL %s has no host", s.display))
		}
	case "file":
		// go-git's file transport runs git-upload-pack: the one case that
		// needs the git binary, which the ferry image does not ship.
		if _, err := exec.LookPath("git"); err != nil {
			errs = append(errs, fmt.Errorf("git::file:// URLs need the git binary on PATH: %w", err))
		}
	default:
		errs = append(errs, fmt.Errorf("git URL %s: scheme %q is not supported (use https, http, ssh, git or file)", s.display, s.scheme))
	}
	if u.URL.User != nil {
		if _, hasPass := u.URL.User.Password(); hasPass {
			errs = append(errs, kit.Fieldf("git URL %s carries a password: put it in a file and give {PasswordFile}", s.display))
		}
		s.urlUser = u.URL.User.Username()
	}
	errs = append(errs, s.parseQuery(u.URL.Query())...)
	if s.scheme == "ssh" {
		port := u.URL.Port()
		if port == "" {
			port = "22"
		}
		s.hostPort = u.URL.Hostname() + ":" + port
		if o.SSHKeyFile == "" {
			errs = append(errs, kit.Fieldf("git URL %s is SSH: give {SSHKeyFile}", s.display))
		}
		if o.KnownHostsFile == "" && !o.InsecureIgnoreHostKey {
			errs = append(errs, kit.Fieldf("git URL %s is SSH: give {KnownHostsFile} (or, at your own risk, {InsecureIgnoreHostKey})", s.display))
		}
	}
	errs = append(errs, s.opts.Validate())
	if env.StateDir == "" {
		errs = append(errs, errors.New("git source needs a state directory for its object store"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.storeDir = filepath.Join(env.StateDir, storeDirName)
	r := *u.URL
	r.RawQuery, r.Fragment, r.RawFragment, r.ForceQuery = "", "", "", false
	if isHTTP(s.scheme) {
		// The user (often a token: https://TOKEN@host) goes in the
		// credentials, not in the URL, which go-git repeats in its errors
		// and the object store keeps on the shared volume.
		r.User = nil
	}
	s.remote = r.String()
	kit.WarnExposed(s.log, o.PasswordFile)
	kit.WarnExposed(s.log, o.SSHKeyFile)
	return s, nil
}

// parseQuery reads the URL options: ref, depth and submodules.
func (s *Source) parseQuery(q url.Values) []error {
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(q)) {
		v := q[key][len(q[key])-1]
		switch key {
		case "ref":
			switch {
			case v == "HEAD":
				s.ref = "" // the default
			case v == "":
				errs = append(errs, errors.New("git option ref is empty (leave it out to follow the remote HEAD)"))
			case fullSHA.MatchString(strings.ToLower(v)):
				s.ref = strings.ToLower(v)
				s.sha = plumbing.NewHash(s.ref)
			case badRef.MatchString(v):
				errs = append(errs, fmt.Errorf("git option ref %q is not a valid branch, tag or full commit SHA", redact.Value(v)))
			default:
				s.ref = v
			}
		case "depth":
			d, err := strconv.Atoi(v)
			if err != nil || d < 0 {
				errs = append(errs, fmt.Errorf("git option depth %q: want a whole number >= 0 (0: full history)", redact.Value(v)))
			}
			s.depth = d
		case "submodules":
			if b, err := strconv.ParseBool(v); err != nil || b {
				errs = append(errs, fmt.Errorf("git option submodules=%s: submodules are not supported; a submodule is published as an empty directory, as git clone does by default (add its repository as another source)", v))
			}
		case "sshkey":
			errs = append(errs, kit.Fieldf("git option sshkey would put a secret in the URL: use {SSHKeyFile}"))
		default:
			errs = append(errs, fmt.Errorf("git option %q is unknown (known: ref, depth, submodules)", key))
		}
	}
	return errs
}

func isHTTP(scheme string) bool { return scheme == "http" || scheme == "https" }

// OriginRevision returns the commit the last successful Fetch resolved:
// for a //subdir source, the newest commit whose subdirectory is the
// published revision. It is "" before the first. Safe to call while Fetch
// runs.
func (s *Source) OriginRevision() string {
	if o := s.last.Load(); o != nil {
		return o.commit.String()
	}
	return ""
}

// unchanged tells, without the object store, whether commit c is known to
// publish prev: always when the revision is the commit; for a //subdir,
// when c is the commit the last Fetch resolved to prev.
func (s *Source) unchanged(c plumbing.Hash, prev string) bool {
	if s.subdir == "" {
		return c.String() == prev
	}
	o := s.last.Load()
	return o != nil && o.commit == c && o.rev == prev
}

// Fetch resolves the ref with ls-remote and, when it names a commit other
// than the published one, fetches that commit into the object store (unless
// it is already there) and writes its tree through w. The revision is the
// commit SHA; for a //subdir source it is the subdirectory's tree SHA, so
// a commit that leaves the subdirectory alone returns prev.
func (s *Source) Fetch(ctx context.Context, prev string, w fetch.Writer) (string, error) {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if !s.sha.IsZero() && s.unchanged(s.sha, prev) {
		// A pinned commit never changes: no network at all.
		return s.done(s.sha, prev), nil
	}
	auth, err := s.auth(ctx)
	if err != nil {
		return "", err
	}
	if s.opts.InsecureIgnoreHostKey {
		s.log.Warn("SSH host key not verified (host key checking is off): a man-in-the-middle could serve any content", "url", s.display)
	}

	var want wantRef
	if s.sha.IsZero() {
		refs, err := s.lsRemote(ctx, auth)
		if err != nil {
			return "", err
		}
		if want, err = s.resolve(refs); err != nil {
			return "", err
		}
		if want.commitKnown && s.unchanged(want.hash, prev) {
			return s.done(want.hash, prev), nil
		}
	}

	st, err := s.openStore()
	if err != nil {
		return "", err
	}
	defer func() {
		st.close()
		s.removeTempObjects()
	}()

	// A commit the store holds (the last one fetched, after a restart)
	// costs no download; a new one comes as a thin pack.
	commit, fetched, err := s.commit(ctx, st, auth, want)
	if err != nil {
		if diskFull(err) {
			// What a failed fetch wrote (objects of a thin pack are stored
			// loose) keeps the space the next fetch needs: the store is a
			// cache, so it goes, and a smaller commit can still land.
			st.close()
			s.discardStore(err)
		}
		return "", err
	}
	fetchedAt := time.Now()
	tree, err := s.tree(st, commit)
	if err != nil {
		return "", s.exportError(st, commit, err)
	}
	rev := s.revision(commit, tree)
	if rev == prev {
		return s.done(commit.Hash, prev), nil
	}
	if err := s.export(ctx, st, tree, w); err != nil {
		return "", s.exportError(st, commit, err)
	}
	s.log.Info("git commit exported", "commit", commit.Hash.String(), "revision", rev, "downloaded", fetched,
		"fetch_duration", fetchedAt.Sub(start).Round(time.Millisecond), "export_duration", time.Since(fetchedAt).Round(time.Millisecond))
	return s.done(commit.Hash, rev), nil
}

// exportError says which commit could not be exported. An unreadable
// store is removed, so the next sync fetches again.
func (s *Source) exportError(st *store, c *object.Commit, err error) error {
	var se *storeError
	if errors.As(err, &se) {
		st.close()
		s.discardStore(err)
		return fmt.Errorf("git export %s commit %s: object store was unreadable and has been removed; the next sync fetches again: %w", s.display, c.Hash, err)
	}
	return fmt.Errorf("git export %s commit %s: %w", s.display, c.Hash, err)
}

// revision names what Fetch publishes from commit c, whose published tree
// (the root or the //subdir) is tree.
func (s *Source) revision(c *object.Commit, tree *object.Tree) string {
	if s.subdir == "" {
		return c.Hash.String()
	}
	return tree.Hash.String()
}

// done remembers that commit c gave rev, and returns rev.
func (s *Source) done(c plumbing.Hash, rev string) string {
	s.last.Store(&origin{commit: c, rev: rev})
	return rev
}

// wantRef is what ls-remote said the ref points at.
type wantRef struct {
	name        plumbing.ReferenceName // the remote ref to fetch
	hash        plumbing.Hash          // commit when commitKnown, else a tag or commit
	commitKnown bool
}

// lsRemote lists the remote's refs: one small request, the whole cost of
// a poll that finds nothing new.
func (s *Source) lsRemote(ctx context.Context, auth transport.AuthMethod) ([]*plumbing.Reference, error) {
	ctx, _, done := s.startMeter(ctx)
	defer done()
	r := gogit.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: remoteName, URLs: []string{s.remote}})
	refs, err := r.ListContext(ctx, &gogit.ListOptions{Auth: auth, PeelingOption: gogit.AppendPeeled, ProxyOptions: s.proxy(ctx)})
	if err != nil {
		return nil, s.wrap(ctx, "ls-remote", err)
	}
	return refs, nil
}

// resolve finds the ref in an ls-remote answer, the way git clone --branch
// does: a branch first, then a tag; a name under refs/ as given; none, the
// remote HEAD.
func (s *Source) resolve(refs []*plumbing.Reference) (wantRef, error) {
	byName := make(map[plumbing.ReferenceName]*plumbing.Reference, len(refs))
	for _, r := range refs {
		byName[r.Name()] = r
	}
	var candidates []plumbing.ReferenceName
	switch {
	case s.ref == "":
		candidates = []plumbing.ReferenceName{plumbing.HEAD}
	case strings.HasPrefix(s.ref, "refs/"):
		candidates = []plumbing.ReferenceName{plumbing.ReferenceName(s.ref)}
	default:
		candidates = []plumbing.ReferenceName{plumbing.NewBranchReferenceName(s.ref), plumbing.NewTagReferenceName(s.ref)}
	}
	for _, name := range candidates {
		ref, ok := byName[name]
		if !ok {
			continue
		}
		// Follow a symbolic HEAD to its branch.
		for i := 0; ref.Type() == plumbing.SymbolicReference && i < 5; i++ {
			next, ok := byName[ref.Target()]
			if !ok {
				return wantRef{}, fetch.Permanent(fmt.Errorf("git ls-remote %s: %s points at %s, which does not exist (empty repository?)", s.display, name, ref.Target()))
			}
			name, ref = ref.Target(), next
		}
		if ref.Type() != plumbing.HashReference {
			continue
		}
		if peeled, ok := byName[name+"^{}"]; ok {
			return wantRef{name: name, hash: peeled.Hash(), commitKnown: true}, nil
		}
		// Branches point at commits; a tag without a peeled line may point
		// at a tag object, which is peeled once it is in the store.
		return wantRef{name: name, hash: ref.Hash(), commitKnown: !name.IsTag()}, nil
	}
	what := fmt.Sprintf("ref %q not found (no branch or tag of that name; a commit must be given as a full 40-character SHA)", redact.Value(s.ref))
	if s.ref == "" {
		what = "remote HEAD not found (give ?ref=BRANCH)"
	}
	return wantRef{}, fetch.Permanent(fmt.Errorf("git ls-remote %s: %s", s.display, what))
}
