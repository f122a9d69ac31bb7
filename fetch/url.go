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

// String returns the URL with any password, and the value of any query
// parameter that carries a credential, redacted: fit for logs and /status.
func (u *URL) String() string {
	s := Redact(u.URL)
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

// MaxURLLength bounds a source URL. Servers refuse longer request lines
// (8 KiB is the common limit), and a longer value is a mistake that would
// otherwise be repeated in every log line and in /status.
const MaxURLLength = 8 << 10

// secretParams are query parameters whose values are credentials:
// go-getter's own (sshkey, aws_*), pre-signed URLs of S3, GCS and Azure,
// and the usual token names. Compared in lower case.
var secretParams = map[string]bool{
	"sshkey": true, "aws_access_key_id": true, "aws_access_key_secret": true, "aws_access_token": true,
	"x-amz-signature": true, "x-amz-credential": true, "x-amz-security-token": true,
	"x-goog-signature": true, "x-goog-credential": true, "sig": true, "signature": true,
	"token": true, "access_token": true, "password": true, "secret": true, "api_key": true, "apikey": true,
}

// Redact returns u for logs, errors and /status: the password and the
// values of credential query parameters (a pre-signed URL's signature is
// as good as a password until it expires) are replaced by "xxxxx". The
// rest of the query is kept byte for byte.
func Redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	if u.Opaque != "" {
		// "a:b::c://user:pw@h" parses as scheme "a" with everything else
		// opaque: no userinfo for Redacted to hide, but a password all the
		// same to whoever typed it.
		return redactRaw(u.String())
	}
	if u.RawQuery == "" {
		return u.Redacted()
	}
	c := *u
	c.RawQuery = redactQuery(c.RawQuery)
	return c.Redacted()
}

// redactQuery replaces the values of credential parameters in a raw query.
func redactQuery(rawQuery string) string {
	parts := strings.Split(rawQuery, "&")
	for i, part := range parts {
		k, _, hasValue := strings.Cut(part, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			key = k
		}
		if hasValue && secretParams[strings.ToLower(key)] {
			parts[i] = k + "=xxxxx"
		}
	}
	return strings.Join(parts, "&")
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

// secretParamPattern finds a credential parameter anywhere in a string
// that did not parse as a URL.
var secretParamPattern = func() *regexp.Regexp {
	keys := make([]string, 0, len(secretParams))
	for k := range secretParams {
		keys = append(keys, regexp.QuoteMeta(k))
	}
	sort.Strings(keys)
	return regexp.MustCompile(`(?i)([?&;](?:` + strings.Join(keys, "|") + `)=)[^&#]*`)
}()

// redactRaw hides userinfo and credential parameters in a string that did
// not parse as a URL: after every "://" (a mistyped URL may hold several),
// and wherever a "?" or "&" starts a credential parameter.
func redactRaw(s string) string {
	s = secretParamPattern.ReplaceAllString(s, "${1}xxxxx")
	var b strings.Builder
	for {
		i := strings.Index(s, "://")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i+3])
		s = s[i+3:]
		end := strings.IndexAny(s, "/?#")
		if end < 0 {
			end = len(s)
		}
		if at := strings.LastIndex(s[:end], "@"); at >= 0 {
			if user, _, hasPass := strings.Cut(s[:at], ":"); hasPass {
				b.WriteString(user + ":xxxxx")
				s = s[at:]
			}
		}
	}
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
