// Package http is the HTTP(S) source. It downloads one URL with net/http,
// publishes it as a single file or extracts it as an archive (tar, tar.gz,
// zip) under hard limits, and polls with conditional GETs so that an
// unchanged origin costs one small request.
package http

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	nethttp "net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/archive"
	"github.com/ferrysync/ferry/fetch/kit"
	"github.com/ferrysync/ferry/fetch/trust"
	"github.com/ferrysync/ferry/internal/redact"
	"github.com/ferrysync/ferry/internal/report"
)

// format is how the body is published.
type format string

const (
	formatFile format = "file"
	formatTar  format = "tar"
	formatTgz  format = "tar.gz"
	formatZip  format = "zip"
)

// Source publishes one HTTP(S) URL. Fetch is never called concurrently for
// one Source, so its client cache needs no lock.
type Source struct {
	redacted string   // the URL for messages
	req      *url.URL // what is requested: the URL without our options
	format   format
	name     string // the published file name (single file)
	subdir   string // archive sub-tree to publish
	checksum *checksumSpec
	sigURL   *url.URL    // ?signature=: a detached signature of the body (signature.go)
	keys     *trust.File // what must have made it
	opts     Options
	maxBody  int64
	maxFiles int // the Writer's, which a zip's directory is bounded by
	stateDir string
	state    kit.StateFile
	log      *slog.Logger

	// layout names what the tree looks like for a given body (format,
	// subdir, file name): it is part of the revision, so that changing
	// "//subdir" or "?archive=" republishes even when the body is the same.
	layout string
	// key identifies the request, layout and checksum the saved validators
	// belong to: when it changes, the next GET is unconditional.
	key string

	client  *nethttp.Client
	caSum   [sha256.Size]byte
	cleaned bool // leftovers of a killed process removed
}

var _ fetch.Source = (*Source)(nil)

// New builds a source for an http:// or https:// URL. It reads the URL's
// options (archive, checksum, signature) and checks every option and
// secret file, all without network access; every problem is reported in
// one error.
func New(u *fetch.URL, o Options, env fetch.Env) (*Source, error) {
	s := &Source{
		redacted: u.String(),
		subdir:   u.Subdir,
		opts:     o,
		maxBody:  o.MaxBodyBytes,
		maxFiles: env.Limits.WithDefaults().MaxFiles,
		stateDir: env.StateDir,
		state:    kit.StateFile(filepath.Join(env.StateDir, stateFile)),
		log:      env.Logger,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxBody == 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	var problems []error
	bad := func(err error) {
		if err != nil {
			problems = append(problems, err)
		}
	}
	switch {
	case u.URL.Scheme != "http" && u.URL.Scheme != "https":
		bad(fmt.Errorf("an HTTP(S) source needs an http:// or https:// URL, not %q", u.URL.Scheme))
	case u.URL.Host == "":
		bad(errors.New("URL has no host"))
	}
	if u.URL.User != nil {
		bad(report.Fieldf("credentials in the URL are not accepted: use {Username} with {PasswordFile}, or {BearerTokenFile}"))
	}
	if env.StateDir == "" {
		bad(errors.New("no state directory (fetch.Env.StateDir) for saved validators and downloads"))
	}

	q := u.URL.Query()
	var err error
	s.format, err = archiveFormat(q.Get("archive"), q.Has("archive"), u.URL.Path)
	bad(err)
	ours := []string{"archive", "checksum"}
	if o.VerifyKeysFile != "" {
		ours = append(ours, "signature") // else the origin's (signature.go)
	}
	s.req = withoutParams(u.URL, ours...)
	bad(s.parseSignature(q, o.VerifyKeysFile))

	if s.format == formatFile {
		s.name, err = fileName(u.URL)
		bad(err)
		if u.Subdir != "" {
			bad(fmt.Errorf("//%s selects a sub-tree of an archive, but this URL is published as a single file (give ?archive=tar.gz, tgz, tar or zip)", u.Subdir))
		}
	}
	if q.Has("checksum") {
		s.checksum, err = parseChecksum(q.Get("checksum"), u.URL)
		bad(err)
	}
	if err := errors.Join(append(problems, o.problems()...)...); err != nil {
		return nil, err
	}

	if u.URL.Scheme == "http" && (o.BearerTokenFile != "" || o.PasswordFile != "" || o.HeaderFile != "") {
		s.log.Warn("credentials or headers will be sent over plain http", "url", s.redacted)
	}
	s.layout = fmt.Sprintf("%s\x00%s\x00%s", s.format, s.subdir, s.name)
	s.key = digestHex(s.req.String() + "\x00" + q.Get("checksum") + "\x00" + s.layout + "\x00" + q.Get("signature"))
	return s, nil
}

// archives maps the values of ?archive= to formats; all but "false" are
// also the extensions that give the format when ?archive= is absent.
var archives = map[string]format{"tar.gz": formatTgz, "tgz": formatTgz, "tar": formatTar, "zip": formatZip, "false": formatFile}

// archiveFormat picks the format from ?archive= or, when absent, from the
// extension of the URL path.
func archiveFormat(v string, given bool, urlPath string) (format, error) {
	if given {
		if f, ok := archives[strings.ToLower(v)]; ok {
			return f, nil
		}
		return formatFile, fmt.Errorf("archive=%q: want tar.gz, tgz, tar, zip or false", redact.Value(v))
	}
	for _, ext := range []string{".tar.gz", ".tgz", ".tar", ".zip"} {
		if strings.HasSuffix(strings.ToLower(urlPath), ext) {
			return archives[ext[1:]], nil
		}
	}
	return formatFile, nil
}

// fileName is the last segment of the URL path, the name a single file is
// published under.
func fileName(u *url.URL) (string, error) {
	escaped := u.EscapedPath()
	seg := escaped[strings.LastIndex(escaped, "/")+1:]
	name, err := url.PathUnescape(seg)
	if err != nil || name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
		return "", fmt.Errorf("URL path %q names no file to publish: give a URL ending in a file name, or an archive with ?archive=tar.gz, tgz, tar or zip", u.Path)
	}
	return name, nil
}

// withoutParams returns u without the named query parameters, which are
// ours, not the server's. The rest of the raw query is kept byte for byte:
// re-encoding it could break a signed URL.
func withoutParams(u *url.URL, names ...string) *url.URL {
	out := *u
	out.User = nil
	if u.RawQuery == "" {
		return &out
	}
	var kept []string
	for _, part := range strings.Split(u.RawQuery, "&") {
		k, _, _ := strings.Cut(part, "=")
		if key, err := url.QueryUnescape(k); err == nil && slices.Contains(names, key) {
			continue
		}
		kept = append(kept, part)
	}
	out.RawQuery = strings.Join(kept, "&")
	out.ForceQuery = false
	return &out
}

func digestHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// revision names the content: the body's sha256, so it can be compared with
// `sha256sum` of the artifact, followed by a short digest of the layout.
func (s *Source) revision(bodySum string) string {
	return bodySum + "-" + digestHex(s.layout)[:8]
}

// Fetch makes one GET, conditional when validators of prev are saved. A 304,
// or a body whose digest gives prev again, returns prev and writes nothing.
// Otherwise the body is downloaded into the state directory, its checksum
// and signature verified, and only then written through w.
func (s *Source) Fetch(ctx context.Context, prev string, w fetch.Writer) (string, error) {
	rev, err := s.fetch(ctx, prev, w)
	if err != nil {
		return "", fmt.Errorf("http get %s: %w", s.redacted, err)
	}
	return rev, nil
}

func (s *Source) fetch(ctx context.Context, prev string, w fetch.Writer) (string, error) {
	if s.opts.InsecureSkipVerify {
		s.log.Warn("TLS certificate verification is disabled for this source")
	}
	a, err := s.opts.auth()
	if err != nil {
		return "", err
	}
	client, err := s.httpClient()
	if err != nil {
		return "", err
	}
	if err := kit.StateDir(s.stateDir); err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	if !s.cleaned {
		kit.RemoveTemp(s.stateDir) // spools of a process killed mid-download
		s.cleaned = true
	}

	keys, err := s.loadKeys()
	if err != nil {
		return "", err
	}
	saved := s.loadState()
	conditional := prev != "" && saved.Revision == prev && saved.Key == s.key && saved.Keys == keys.Digest() &&
		(saved.ETag != "" || saved.LastModified != "")

	req, err := nethttp.NewRequestWithContext(ctx, nethttp.MethodGet, s.req.String(), nil)
	if err != nil {
		return "", fmt.Errorf("request: %w", err)
	}
	a.apply(req)
	if conditional {
		if saved.ETag != "" {
			req.Header.Set("If-None-Match", saved.ETag)
		}
		if saved.LastModified != "" {
			req.Header.Set("If-Modified-Since", saved.LastModified)
		}
	}
	resp, err := get(ctx, client, req, a.any(), conditional)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode == nethttp.StatusNotModified {
		s.log.Debug("not modified", "revision", prev)
		return prev, nil
	}

	b, err := s.download(ctx, resp)
	if b != nil {
		defer os.Remove(b.path)
	}
	if err != nil {
		return "", err
	}
	if s.checksum != nil {
		if err := s.verify(ctx, client, a, b); err != nil {
			return "", err
		}
	}
	next := state{
		Revision:     s.revision(b.sum),
		Key:          s.key,
		ETag:         resp.Header.Get("ETag"),
		LastModified: resp.Header.Get("Last-Modified"),
		Keys:         keys.Digest(),
	}
	if err := s.checkSignature(ctx, client, a, b, keys, next.Revision == prev); err != nil {
		return "", err
	}
	if next.Revision == prev {
		// Same body (a server without validators, or one that changed
		// them): keep prev, but remember the validators for the next poll.
		s.saveState(next)
		s.log.Debug("body unchanged", "revision", prev)
		return prev, nil
	}
	if err := s.write(ctx, b, w); err != nil {
		return "", err
	}
	// Saved before the caller publishes: keyed by revision, so if that
	// publish fails the next Fetch (with the old prev) ignores it.
	s.saveState(next)
	s.log.Info("downloaded new revision", "revision", next.Revision, "bytes", b.size)
	return next.Revision, nil
}

// write publishes the downloaded body: as one file named after the URL, or
// as the archive's tree.
func (s *Source) write(ctx context.Context, b *body, w fetch.Writer) error {
	if s.format == formatFile {
		p := b.path
		return w.WriteFile(s.name, 0o644, "sha256:"+b.sum, func() (io.ReadCloser, error) { return os.Open(p) })
	}
	f, err := os.Open(b.path)
	if err != nil {
		return err
	}
	defer f.Close()
	// The formats other than formatFile are named as archive names them.
	return archive.Extract(ctx, w, f, b.size, archive.Format(s.format), archive.Options{
		Subdir: s.subdir, MaxBytes: s.maxBody, LimitName: "http-max-body", MaxFiles: s.maxFiles, TmpDir: s.stateDir,
	})
}
