// Package redact shows URLs without their secrets, by allowlist: the
// scheme, host and path stay; userinfo (but the user of an ssh:// URL),
// fragments and every query value whose parameter the caller does not
// name are replaced by Placeholder. Sources and notify URLs share it.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// Placeholder replaces whatever is hidden.
const Placeholder = "REDACTED"

// Keep names the query parameters whose value may be shown, each with what
// to show of it (Value or TypeOnly). Parameter names match exactly, as
// the backends read them: "Ref" is not "ref". A nil Keep hides every value.
type Keep map[string]func(value string) string

// safeValue is what an option value that Keep shows may hold: names,
// numbers, refs, regions, S3 version IDs, lists ("a,b"), "semver:1.x".
// Anything else (a "?", "&" or "=" that starts a second parameter typed by
// mistake, "@", a space) is hidden: an option with richer values needs a
// function of its own in Keep.
var safeValue = regexp.MustCompile(`^[A-Za-z0-9._~+/:,-]*$`)

// Value shows the whole value, when it is plain (see safeValue).
func Value(v string) string {
	if safeValue.MatchString(v) {
		return v
	}
	return Placeholder
}

// semverRange is a version range as Masterminds/semver writes one:
// ">=1.2.0 <2", "~1.4", "^2.x || 3.1.*", "1.2.3-rc.1", of at most
// maxSemverRange characters. The bounds of the patterns in this file are
// checked with len, not written as {m,n}: the regexp package compiles a
// counted repetition into that many copies of its class, and these three
// cost 290 KB of heap for the life of the process and 600 KB of
// allocation at start.
var semverRange = regexp.MustCompile(`^semver:[0-9A-Za-z.*^~<>=!, |+-]+$`)

const maxSemverRange = 256

// Semver shows a "semver:RANGE" value whole, its comparison operators and
// spaces included; any other value is shown as Value shows it.
func Semver(v string) string {
	if len(v) <= len("semver:")+maxSemverRange && semverRange.MatchString(v) {
		return v
	}
	return Value(v)
}

// mediaType is an RFC 6838 type/subtype, without parameters, each name
// of at most maxMediaName characters.
var mediaType = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$`)

const maxMediaName = 127

// MediaType shows a media type whole ("application/vnd.oci.image.layer.v1.tar+gzip").
// A "+" typed unescaped in a query reads as a space there, and is shown
// as typed.
func MediaType(v string) string {
	typ, sub, _ := strings.Cut(v, "/")
	if len(typ) <= maxMediaName && len(sub) <= maxMediaName && mediaType.MatchString(strings.ReplaceAll(v, " ", "+")) {
		return v
	}
	return Placeholder
}

// checksumType is the "sha256" of "sha256:HEX", of at most
// maxChecksumType characters.
var checksumType = regexp.MustCompile(`^[A-Za-z0-9]+$`)

const maxChecksumType = 16

// TypeOnly shows the type before the first ":" (a checksum's "sha256", or
// "file" for a checksum file's URL, which may be signed) and hides the rest.
func TypeOnly(v string) string {
	typ, _, found := strings.Cut(v, ":")
	if !found || len(typ) > maxChecksumType || !checksumType.MatchString(typ) {
		return Placeholder
	}
	return typ + ":" + Placeholder
}

// URL returns u fit for logs, errors, /status and metrics. The user of an
// ssh:// URL is shown ("git@host"); any other userinfo is replaced as a
// whole, since a token is often given as the user name
// (https://TOKEN@github.com/...). A string that did not parse into
// scheme, host and path is treated as String treats it.
func URL(u *url.URL, keep Keep) string {
	if u == nil {
		return ""
	}
	if u.Opaque != "" {
		// "a:b::c://user:pw@h" parses as scheme "a" with the rest opaque:
		// no userinfo for url.URL to know of, a password all the same.
		return String(u.String(), keep)
	}
	c := *u
	if c.User != nil {
		c.User = userinfo(c.Scheme, c.User)
	}
	if c.RawQuery != "" {
		c.RawQuery = Query(c.RawQuery, keep)
	}
	if c.Fragment != "" {
		c.Fragment, c.RawFragment = Placeholder, ""
	}
	return c.String()
}

// userinfo is what URL shows of u.User.
func userinfo(scheme string, ui *url.Userinfo) *url.Userinfo {
	if !strings.EqualFold(scheme, "ssh") {
		return url.User(Placeholder)
	}
	if _, hasPass := ui.Password(); hasPass {
		return url.UserPassword(ui.Username(), Placeholder)
	}
	return url.User(ui.Username())
}

// Query redacts a raw query: each parameter keeps its name as written, and
// its value only through keep. "&" and ";" both separate parameters here
// (net/url refuses ";", but a value must not hide a second parameter); a
// part without "=" may itself be a token and is hidden unless keep names it.
func Query(rawQuery string, keep Keep) string {
	var b strings.Builder
	for {
		i := strings.IndexAny(rawQuery, "&;")
		if i < 0 {
			b.WriteString(param(rawQuery, keep))
			return b.String()
		}
		b.WriteString(param(rawQuery[:i], keep))
		b.WriteByte(rawQuery[i])
		rawQuery = rawQuery[i+1:]
	}
}

// param redacts one "name=value" of a raw query.
func param(part string, keep Keep) string {
	if part == "" {
		return ""
	}
	rawKey, rawValue, hasValue := strings.Cut(part, "=")
	key, err := url.QueryUnescape(rawKey)
	show := keep[key]
	switch {
	case (err != nil || show == nil) && !hasValue:
		return Placeholder
	case err != nil || show == nil:
		return rawKey + "=" + Placeholder
	case !hasValue:
		return rawKey
	}
	value, err := url.QueryUnescape(rawValue)
	if err != nil {
		return rawKey + "=" + Placeholder
	}
	if shown := show(value); shown != value {
		return rawKey + "=" + shown
	}
	// Shown whole: as written, so that the URL reads as the user gave it.
	return rawKey + "=" + rawValue
}

// String is URL for a string that may not parse as one (what a user typed
// into a flag, a forced "kind::" URL, a mistyped scheme). Where it parses
// into scheme, host and path it is URL; otherwise, as best it can:
// everything from the first "://" (or forced "kind::", or the start) to
// the last "@" is userinfo, since a password may hold "/", "?" or "#";
// after it the fragment is hidden and the query goes through Query. It may
// hide more than needed, never a credential where a URL parser would see
// one.
func String(raw string, keep Keep) string {
	if u, err := url.Parse(raw); err == nil && u.Scheme != "" && u.Opaque == "" {
		return URL(u, keep)
	}
	var b strings.Builder
	rest, inQuery := raw, false
	if at := strings.LastIndexByte(raw, '@'); at >= 0 {
		start := 0
		if i := strings.Index(raw[:at], "://"); i >= 0 {
			start = i + len("://")
		} else if i := strings.Index(raw[:at], "::"); i >= 0 {
			start = i + len("::") // keep a forced kind
		}
		b.WriteString(raw[:start] + Placeholder)
		// A "?" or "#" before the "@" puts what follows it in the query or
		// the fragment.
		if strings.Contains(raw[:at], "#") {
			return b.String()
		}
		inQuery = strings.Contains(raw[:at], "?")
		rest = raw[at:]
	}
	rest, fragment, hasFragment := strings.Cut(rest, "#")
	if inQuery {
		b.WriteString("@" + Query(rest[1:], keep))
	} else {
		rest, query, hasQuery := strings.Cut(rest, "?")
		b.WriteString(rest)
		if hasQuery {
			b.WriteString("?" + Query(query, keep))
		}
	}
	if hasFragment && fragment != "" {
		b.WriteString("#" + Placeholder)
	}
	return b.String()
}
