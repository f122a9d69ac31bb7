package fetch

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strings"

	getter "github.com/hashicorp/go-getter/v2"

	"github.com/ferrysync/ferry/internal/redact"
)

// URL is a parsed source URL in go-getter's grammar: an optional forced
// kind ("git::"), the address, and an optional sub-directory after "//".
type URL struct {
	// Kind names the backend: "git", "http", "s3", "oci" or "file".
	Kind string
	// URL is the address without the forced kind and without the subdir.
	// Query parameters are kept; backends read their options from them.
	URL *url.URL
	// Subdir is the part after "//", cleaned, or "".
	Subdir string
}

// String returns the URL fit for logs, errors, /status and metrics (see
// Redact), with its kind and subdir: "git::https://host/r.git//sub?ref=main".
// The kind is left out only where the scheme names it (see
// schemeNamesKind), so the string always says which backend reads the
// source, and parses back to the same kind.
func (u *URL) String() string {
	s := Redact(u.URL)
	if u.Subdir != "" {
		// Between the path and the query, as the user wrote it: Redact
		// escapes a "?" or "#" of the path, so the first one ends it.
		end := strings.IndexAny(s, "?#")
		if end < 0 {
			end = len(s)
		}
		s = s[:end] + "//" + u.Subdir + s[end:]
	}
	if !schemeNamesKind(u) {
		s = u.Kind + "::" + s
	}
	return s
}

// schemeNamesKind reports whether the scheme alone says the kind (s3://,
// file://, http(s):// for the http kind), as opposed to a guess from the
// path or host ("https://host/repo.git" is git) or a forced kind.
func schemeNamesKind(u *URL) bool {
	return schemeKind(u.URL) == u.Kind && (u.Kind == u.URL.Scheme || u.Kind == "http")
}

// MaxURLLength bounds a source URL. Servers refuse longer request lines
// (8 KiB is the common limit), and a longer value is a mistake that would
// otherwise be repeated in every log line and in /status.
const MaxURLLength = 8 << 10

// shownOptions are the query options ferry defines, with what of their
// value logs, errors, /status and metrics show. Every other query value is
// redact.Placeholder: a pre-signed URL's signature, a private_token, an API
// key. A new option is one line here.
var shownOptions = redact.Keep{
	"ref": redact.Semver, "depth": redact.Value, "submodules": redact.Value, "verify": redact.Value, "paths": showPaths, // git
	"archive": redact.Value, "checksum": redact.TypeOnly, // http: a checksum may be file:URL; a signature URL is hidden
	"region": redact.Value, "version": redact.Value, // s3
	"tag": redact.Semver, "layer": redact.MediaType, "extract": redact.Value, "platform": redact.Value, // oci
}

// pathsValue is what ?paths= may show: relative paths and globs, comma
// separated.
var pathsValue = regexp.MustCompile(`^[A-Za-z0-9._~+/,*?\[\]!-]*$`)

// showPaths shows a git source's ?paths= when it holds only paths and
// globs.
func showPaths(v string) string {
	if pathsValue.MatchString(v) {
		return v
	}
	return redact.Placeholder
}

// Redact returns u fit for logs, errors, /status and metrics: scheme, host
// and path; the user of an ssh:// URL, any other userinfo replaced as a
// whole ("https://TOKEN@host" is common); the values of shownOptions, the
// checksum's type only; every other query value and any fragment replaced
// by "REDACTED".
func Redact(u *url.URL) string {
	return redact.URL(u, shownOptions)
}

// RedactString is Redact for a source URL that may not parse.
func RedactString(raw string) string {
	return redact.String(raw, shownOptions)
}

// forced matches go-getter's forced-getter prefix, "git::...".
var forced = regexp.MustCompile(`^([A-Za-z0-9]+)::(.+)$`)

// detectors turn shorthands into full URLs, in go-getter's order. The
// BitBucket detector is left out: it calls the BitBucket API while parsing.
var detectors = []getter.Detector{
	new(getter.GitHubDetector),
	new(getter.GitLabDetector),
	new(getter.GitDetector),
}

// Parse reads a source URL. It does no network access.
func Parse(raw string) (*URL, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, errors.New("empty source URL")
	}
	if len(raw) > MaxURLLength {
		return nil, fmt.Errorf("source URL of %d bytes: longer than %d", len(raw), MaxURLLength)
	}
	kind, rest := "", raw
	if m := forced.FindStringSubmatch(raw); m != nil {
		kind, rest = strings.ToLower(m[1]), m[2]
	}

	if kind == "" && !hasScheme(rest) {
		if strings.HasPrefix(rest, "/") {
			rest = "file://" + rest
		} else {
			detected, err := detect(rest)
			if err != nil {
				return nil, err
			}
			return Parse(detected)
		}
	}

	addr, subdir := getter.SourceDirSubdir(rest)
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("source URL %q: %s", RedactString(raw), parseReason(err))
	}
	if u.Scheme == "" {
		return nil, fmt.Errorf("source URL %q: no scheme", RedactString(raw))
	}
	if kind == "" {
		kind = schemeKind(u)
	}
	if subdir != "" {
		// The subdir is always relative to the source's root; extra slashes
		// after "//" (detectors produce them) mean nothing.
		subdir = path.Clean(strings.TrimLeft(subdir, "/"))
		if subdir == "." {
			subdir = ""
		}
		if subdir == ".." || strings.HasPrefix(subdir, "../") {
			return nil, fmt.Errorf("source URL %s: subdir %q leaves the source", Redact(u), subdir)
		}
	}
	return &URL{Kind: kind, URL: u, Subdir: subdir}, nil
}

// schemeKind maps a URL scheme to the backend that serves it when no kind
// is forced. An https URL whose path ends in .git is a git repository.
func schemeKind(u *url.URL) string {
	switch u.Scheme {
	case "http", "https":
		if strings.HasSuffix(u.Path, ".git") {
			return "git"
		}
		if isAWSS3Host(u.Hostname()) {
			return "s3"
		}
		return "http"
	case "ssh":
		return "git"
	default:
		return u.Scheme
	}
}

// isAWSS3Host reports whether host is an AWS S3 endpoint, path style
// (s3.REGION.amazonaws.com, s3-REGION...) or virtual-hosted
// (BUCKET.s3.REGION.amazonaws.com), as go-getter's S3 detector knew them.
func isAWSS3Host(host string) bool {
	if !strings.HasSuffix(host, ".amazonaws.com") && !strings.HasSuffix(host, ".amazonaws.com.cn") {
		return false
	}
	for _, label := range strings.Split(host, ".") {
		if label == "s3" || strings.HasPrefix(label, "s3-") {
			return true
		}
	}
	return false
}

func hasScheme(s string) bool {
	i := strings.Index(s, "://")
	if i <= 0 {
		return false
	}
	_, err := url.Parse(s[:i+3])
	return err == nil
}

func detect(src string) (string, error) {
	for _, d := range detectors {
		out, ok, err := d.Detect(src, "")
		if err != nil {
			return "", fmt.Errorf("source URL %q: %w", RedactString(src), err)
		}
		if ok {
			return out, nil
		}
	}
	return "", fmt.Errorf("source URL %q: not a URL (give a scheme such as https://, s3://, git:: or an absolute path)", RedactString(src))
}

// parseReason says why url.Parse refused a URL without quoting it: its
// messages quote the part that failed (`invalid port ":pa55" after host`),
// which may be a password typed without its user.
func parseReason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	for _, reason := range []string{"invalid port", "invalid character", "invalid control character",
		"invalid URL escape", "missing protocol scheme", "invalid IPv6 host", "first path segment in URL cannot contain colon"} {
		if strings.HasPrefix(msg, reason) {
			return reason
		}
	}
	return "does not parse as a URL"
}

// Factory builds a Source for a parsed URL. It validates options and must
// not touch the network: configuration errors are reported before any fetch.
type Factory func(u *URL, env Env) (Source, error)

// Registry maps a URL kind to the factory of its backend. The daemon's one
// registry is built in cmd/ferry.
type Registry map[string]Factory

// Open parses raw and builds its source. When the factory refuses it, the
// parsed URL is returned with the error.
func (r Registry) Open(raw string, env Env) (Source, *URL, error) {
	u, err := Parse(raw)
	if err != nil {
		return nil, nil, err
	}
	f, ok := r[u.Kind]
	if !ok {
		return nil, nil, fmt.Errorf("source URL %s: unknown kind %q (known: %s)", u, u.Kind, strings.Join(r.kinds(), ", "))
	}
	s, err := f(u, env)
	if err != nil {
		// The URL comes back too: its kind says whose Options the error
		// names.
		return nil, u, fmt.Errorf("source %s: %w", u, err)
	}
	return s, u, nil
}

func (r Registry) kinds() []string {
	ks := make([]string, 0, len(r))
	for k := range r {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
