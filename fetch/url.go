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
)

// URL is a parsed source URL in go-getter's grammar: an optional forced
// kind ("git::"), the address, and an optional sub-directory after "//".
type URL struct {
	// Kind names the backend: "git", "http", "s3" or "file".
	Kind string
	// URL is the address without the forced kind and without the subdir.
	// Query parameters are kept; backends read their options from them.
	URL *url.URL
	// Subdir is the part after "//", cleaned, or "".
	Subdir string
}

// String returns the URL with any password redacted, fit for logs.
func (u *URL) String() string {
	s := u.URL.Redacted()
	if u.Subdir != "" {
		// Keep the query after the subdir, as the user wrote it.
		base, q, _ := strings.Cut(s, "?")
		s = base + "//" + u.Subdir
		if q != "" {
			s += "?" + q
		}
	}
	if u.Kind != schemeKind(u.URL) {
		s = u.Kind + "::" + s
	}
	return s
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
		return nil, fmt.Errorf("source URL: %w", redactURLError(err))
	}
	if u.Scheme == "" {
		return nil, fmt.Errorf("source URL %q: no scheme", redactRaw(raw))
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
			return nil, fmt.Errorf("source URL %s: subdir %q leaves the source", u.Redacted(), subdir)
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
			return "", fmt.Errorf("source URL %q: %w", redactRaw(src), err)
		}
		if ok {
			return out, nil
		}
	}
	return "", fmt.Errorf("source URL %q: not a URL (give a scheme such as https://, s3://, git:: or an absolute path)", redactRaw(src))
}

// redactURLError drops the URL from a *url.Error, which may carry a password.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// redactRaw hides userinfo in a string that did not parse as a URL.
func redactRaw(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	if at := strings.LastIndex(strings.SplitN(rest, "/", 2)[0], "@"); at >= 0 {
		user, _, hasPass := strings.Cut(rest[:at], ":")
		if hasPass {
			return scheme + "://" + user + ":xxxxx" + rest[at:]
		}
	}
	return s
}

// Factory builds a Source for a parsed URL. It validates options and must
// not touch the network: configuration errors are reported before any fetch.
type Factory func(u *URL, env Env) (Source, error)

// Registry maps a URL kind to the factory of its backend. The daemon's one
// registry is built in cmd/ferry.
type Registry map[string]Factory

// Open parses raw and builds its source.
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
		return nil, nil, fmt.Errorf("source %s: %w", u, err)
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
