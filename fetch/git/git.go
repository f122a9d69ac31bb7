package git

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/Masterminds/semver/v3"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/redact"
	"github.com/ferrysync/ferry/internal/report"
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
	host     string // as in the URL: a submodule on another gets no credentials
	urlUser  string
	ref      string        // as given; "" follows the remote HEAD
	sha      plumbing.Hash // set when ref is a full commit SHA
	// semver, when ref is "semver:RANGE", picks the highest tag in the
	// range at each poll (refs.go); tag is the one picked last.
	semver *semver.Constraints
	tag    atomic.Pointer[string]
	depth  int
	subdir string
	// submodules says what becomes of a gitlink (submodule.go); paths
	// keeps only the selected entries (nil: all) and names the revision
	// after them (paths.go).
	submodules submoduleMode
	paths      selection
	// sub ties the source to the export of its submodules, and a
	// submodule's to its parent's (submodule.go).
	sub      subLink
	opts     Options // only what the scheme uses (forScheme)
	bounds   bounds  // what one fetch may receive
	limits   fetch.Limits
	storeDir string
	localDir string // file://: the repository, read in place (local.go)
	// storeDropped: a file:// source removed the store of an earlier
	// version (local.go).
	storeDropped bool
	log          *slog.Logger
	last         atomic.Pointer[origin] // behind the revision the last Fetch returned
	http         httpMode               // what the HTTP(S) server speaks (v2.go); Fetch's alone
	sig          signatures             // what must be signed, and by whom (verify.go)
	app          *appTokens             // GitHub App installation tokens (github.go)
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
// files of o that the URL uses, without any network access, so a mistake
// is reported before the first sync.
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
		limits:  env.Limits,
		host:    u.URL.Host,
		log:     cmp.Or(env.Logger, slog.New(slog.DiscardHandler)),
	}
	var errs []error
	switch s.scheme {
	case "https", "http", "ssh", "git":
		if u.URL.Host == "" {
			errs = append(errs, fmt.Errorf("git URL %s has no host", s.display))
		}
	case "file":
		// Read in place, without the git binary (local.go).
		if s.localDir = u.URL.Path; s.localDir == "" {
			errs = append(errs, fmt.Errorf("git URL %s has no path", s.display))
		}
	default:
		errs = append(errs, fmt.Errorf("git URL %s: scheme %q is not supported (use https, http, ssh, git or file)", s.display, s.scheme))
	}
	if u.URL.User != nil {
		if _, hasPass := u.URL.User.Password(); hasPass {
			errs = append(errs, report.Fieldf("git URL %s carries a password: put it in a file and give {PasswordFile}", s.display))
		}
		s.urlUser = u.URL.User.Username()
	}
	errs = append(errs, s.parseQuery(u.URL.Query())...)
	errs = append(errs, s.sig.setup(s.opts.VerifyKeysFile, s.ref, !s.sha.IsZero(), s.display)...)
	if s.scheme == "ssh" {
		s.hostPort = u.URL.Hostname() + ":" + cmp.Or(u.URL.Port(), "22")
		if o.SSHKeyFile == "" {
			errs = append(errs, report.Fieldf("git URL %s is SSH: give {SSHKeyFile}", s.display))
		}
		if o.KnownHostsFile == "" && !o.InsecureIgnoreHostKey {
			errs = append(errs, report.Fieldf("git URL %s is SSH: give {KnownHostsFile} (or, at your own risk, {InsecureIgnoreHostKey})", s.display))
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
	if isHTTP(s.scheme) && s.opts.usesGitHubApp() {
		s.app = newAppTokens(s.opts)
	}
	return s, nil
}

// parseQuery reads the URL options: ref, depth, submodules, paths and
// verify.
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
			case strings.HasPrefix(v, fetch.SemverPrefix):
				c, err := fetch.ParseVersionRange("git option ref", v)
				if err != nil {
					errs = append(errs, err)
				}
				s.ref, s.semver = v, c
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
			m, ok := submoduleModes[v]
			if b, err := strconv.ParseBool(v); err == nil {
				// ?submodules=false was accepted before the modes were.
				m, ok = map[bool]submoduleMode{true: subRecursive, false: subOff}[b], true
			}
			if !ok {
				errs = append(errs, fmt.Errorf("git option submodules=%s: want recursive, shallow or off", redact.Value(v)))
			}
			s.submodules = m
		case "paths":
			sel, err := parsePaths(v)
			if err != nil {
				errs = append(errs, err)
			}
			s.paths = sel
		case "verify":
			if s.sig.mode = verifyModes[v]; s.sig.mode == verifyOff {
				errs = append(errs, fmt.Errorf("git option verify=%s: want head, tag or tag-and-head", redact.Value(v)))
			}
		case "sshkey":
			errs = append(errs, report.Fieldf("git option sshkey would put a secret in the URL: use {SSHKeyFile}"))
		default:
			errs = append(errs, fmt.Errorf("git option %q is unknown (known: ref, depth, submodules, paths, verify)", key))
		}
	}
	return errs
}

func isHTTP(scheme string) bool { return scheme == "http" || scheme == "https" }
