// Package oci is the OCI artifact source: a config bundle pushed to a
// container registry (oras, crane, flux push artifact), read with
// go-containerregistry. The revision is the manifest's digest, so an idle
// poll is one HEAD of the manifest; one layer is published, expanded by
// the same archive code and limits as an HTTP archive.
package oci

import (
	"errors"
	"fmt"
	"log/slog"
	nethttp "net/http"
	"path"
	"runtime"
	"strings"

	"github.com/Masterminds/semver/v3"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/redact"
	"github.com/ferrysync/ferry/internal/report"
)

// defaultPlatform is the one picked from an index when ?platform= is not
// given: the daemon's own, as docker pull picks.
var defaultPlatform = v1.Platform{OS: "linux", Architecture: runtime.GOARCH}

// Source publishes one layer of an OCI artifact. Fetch is never called
// concurrently for one Source, so its client cache needs no lock.
type Source struct {
	redacted   string
	repo       name.Repository
	tag        string // the tag asked for; "" with a digest or a range
	digest     string // "sha256:HEX" when pinned
	semver     *semver.Constraints
	semverText string // the range as given
	plainHTTP  bool   // oci::http://
	layer      string // media type
	extract    string // "", "true", "false", "tar", "tar.gz", "tgz", "zip"
	platform   *v1.Platform
	subdir     string
	repoBase   string // a single file's name when the layer has no title
	opts       Options
	limits     fetch.Limits
	stateDir   string
	log        *slog.Logger

	// layoutKey names the options that shape the tree for a given
	// manifest; it is part of the revision, so that changing ?layer= or
	// //subdir republishes.
	layoutKey string

	puller    *remote.Puller
	transport *nethttp.Transport
	clientKey [32]byte
	headless  bool   // the registry gives no digest on HEAD: poll with GET
	origin    string // TAG@DIGEST of the last Fetch
	cleaned   bool   // leftovers of a killed process removed
}

var (
	_ fetch.Source         = (*Source)(nil)
	_ fetch.OriginReporter = (*Source)(nil)
)

// extractValues are what ?extract= takes.
var extractValues = map[string]bool{"true": true, "false": true, "tar": true, "tar.gz": true, "tgz": true, "zip": true}

// New builds a source for oci://REGISTRY/REPO[:TAG|@DIGEST], or
// oci::http://HOST/REPO... for a registry without TLS. It reads the
// options (tag, layer, extract, platform) and checks every option and
// secret file, all without network access; every problem is reported in
// one error.
func New(u *fetch.URL, o Options, env fetch.Env) (*Source, error) {
	s := &Source{
		redacted: u.String(),
		subdir:   u.Subdir,
		opts:     o,
		limits:   env.Limits.WithDefaults(),
		stateDir: env.StateDir,
		log:      env.Logger,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var problems []error
	bad := func(err error) {
		if err != nil {
			problems = append(problems, err)
		}
	}
	switch u.URL.Scheme {
	case "oci", "https":
	case "http":
		s.plainHTTP = true
	default:
		bad(fmt.Errorf("an OCI source needs an oci:// URL (oci::http:// for a registry without TLS), not %q", u.URL.Scheme))
	}
	if u.URL.User != nil {
		bad(report.Fieldf("credentials in the URL are not accepted: use {DockerConfigFile}, {Username} with {PasswordFile}, or {BearerTokenFile}"))
	}
	if u.URL.Fragment != "" {
		bad(errors.New("an OCI source URL takes no #fragment"))
	}
	if env.StateDir == "" {
		bad(errors.New("no state directory (fetch.Env.StateDir) for layer downloads"))
	}
	bad(s.parseReference(u))
	bad(s.parseOptions(u))
	bad(o.Validate())
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	if s.plainHTTP && (o.DockerConfigFile != "" || o.PasswordFile != "" || o.BearerTokenFile != "") {
		s.log.Warn("registry credentials will be sent over plain http", "url", s.redacted)
	}
	plat := ""
	if s.platform != nil {
		plat = s.platform.String()
	}
	s.layoutKey = digestHex(strings.Join([]string{s.layer, s.extract, plat, s.subdir}, "\x00"))[:8]
	return s, nil
}

// parseReference reads REGISTRY/REPO[:TAG|@DIGEST] from the URL's host
// and path.
func (s *Source) parseReference(u *fetch.URL) error {
	if u.URL.Host == "" {
		return errors.New("URL has no registry host")
	}
	p := strings.TrimPrefix(u.URL.Path, "/")
	repo, digest, pinned := strings.Cut(p, "@")
	tag := ""
	if i := strings.LastIndex(repo, ":"); i >= 0 && !strings.Contains(repo[i:], "/") {
		repo, tag = repo[:i], repo[i+1:]
	}
	var opts []name.Option
	if s.plainHTTP {
		opts = append(opts, name.Insecure)
	}
	r, err := name.NewRepository(u.URL.Host+"/"+repo, append(opts, name.StrictValidation)...)
	if err != nil {
		return fmt.Errorf("repository %q: %w", redact.Value(u.URL.Host+"/"+repo), err)
	}
	s.repo, s.tag, s.repoBase = r, tag, path.Base(repo)
	if pinned {
		if _, err := name.NewDigest(r.Name()+"@"+digest, opts...); err != nil {
			return fmt.Errorf("digest %q: want sha256:HEX (64 hex digits)", redact.Value(digest))
		}
		if tag != "" {
			return errors.New("give a tag or a digest, not both")
		}
		s.digest = digest
	} else if tag != "" {
		if _, err := name.NewTag(r.Name()+":"+tag, append(opts, name.StrictValidation)...); err != nil {
			return fmt.Errorf("tag %q: %w", redact.Value(tag), err)
		}
	}
	return nil
}

// parseOptions reads the query. The tag and the layer's media type are
// read from the raw query: a "+" typed there ("tar+gzip", "1.2.3+build")
// is a plus, not a space.
func (s *Source) parseOptions(u *fetch.URL) error {
	q := u.URL.Query()
	var errs []error
	for k := range q {
		switch k {
		case "tag", "layer", "extract", "platform":
		default:
			errs = append(errs, fmt.Errorf("unknown option %q (an OCI source takes tag, layer, extract and platform)", redact.Value(k)))
		}
	}
	if q.Has("tag") {
		t := rawParam(u.URL.RawQuery, "tag") // "+" is build metadata
		switch {
		case s.tag != "" || s.digest != "":
			errs = append(errs, errors.New("?tag= with a tag or digest in the path: give one"))
		case strings.HasPrefix(t, fetch.SemverPrefix):
			c, err := fetch.ParseVersionRange("tag", t)
			errs = append(errs, err)
			s.semver, s.semverText = c, strings.TrimPrefix(t, fetch.SemverPrefix)
		default:
			s.tag = t
			if _, err := name.NewTag(s.repo.Name()+":"+t, name.StrictValidation); err != nil {
				errs = append(errs, fmt.Errorf("tag %q: %w", redact.Value(t), err))
			}
		}
	}
	if s.tag == "" && s.digest == "" && s.semver == nil {
		s.tag = "latest" // as docker pull and crane do
	}
	s.layer = rawParam(u.URL.RawQuery, "layer")
	s.extract = strings.ToLower(q.Get("extract"))
	if q.Has("extract") && !extractValues[s.extract] {
		errs = append(errs, fmt.Errorf("extract=%q: want true, false, tar, tar.gz, tgz or zip", redact.Value(s.extract)))
	}
	if s.extract == "false" && s.subdir != "" {
		errs = append(errs, fmt.Errorf("//%s selects a sub-tree, but ?extract=false publishes the layer as one file", s.subdir))
	}
	if q.Has("platform") {
		p, err := v1.ParsePlatform(q.Get("platform"))
		if err != nil || p.OS == "" || p.Architecture == "" {
			errs = append(errs, fmt.Errorf("platform=%q: want OS/ARCH[/VARIANT], such as linux/arm64", redact.Value(q.Get("platform"))))
		}
		s.platform = p
	}
	return errors.Join(errs...)
}

// rawParam returns the last value of param in a raw query, unescaped as
// a path is (a "+" stays a plus).
func rawParam(rawQuery, param string) string {
	v := ""
	for _, part := range strings.Split(rawQuery, "&") {
		if k, val, ok := strings.Cut(part, "="); ok && k == param {
			if un, err := urlPathUnescape(val); err == nil {
				v = un
			}
		}
	}
	return v
}

// OriginRevision is what the registry calls what was published:
// "TAG@sha256:HEX" (the resolved tag for a range), or "sha256:HEX" for a
// source pinned by digest, as Flux writes an OCI revision. /status and
// the notify body carry it.
func (s *Source) OriginRevision() string { return s.origin }

// revision names the content: the manifest digest's hex (what `crane
// digest` prints after "sha256:"), followed by a short digest of the
// options that shape the tree.
func (s *Source) revision(d v1.Hash) string {
	return d.Hex + "-" + s.layoutKey
}
