// Package redact shows URLs without their secrets, by allowlist: the
// scheme, host and path stay; userinfo (but the user of an ssh:// URL),
// fragments and every query value whose parameter the caller does not
// name are replaced by Placeholder. Sources and notify URLs share it.
package redact

import (
	"net/url"
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
//
// The patterns here are checked byte by byte, not with regexp: compiled at
// start, the counted repetitions of the media type's and the semver
// range's patterns cost every ferry process 0.6 MB of heap and 1.5 ms
// before main.
const safeValue = alnum + "._~+/:,-"

// alnum is the letters and digits of ASCII.
const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// allIn tells whether s is min to max bytes long, each one of set.
func allIn(s, set string, min, max int) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	for i := range len(s) {
		if strings.IndexByte(set, s[i]) < 0 {
			return false
		}
	}
	return true
}

// Value shows the whole value, when it is plain (see safeValue).
func Value(v string) string {
	if allIn(v, safeValue, 0, len(v)) {
		return v
	}
	return Placeholder
}

// semverRange is what may follow "semver:": a version range as
// Masterminds/semver writes one (">=1.2.0 <2", "~1.4", "^2.x || 3.1.*",
// "1.2.3-rc.1"), of 1 to 256 bytes.
const semverRange = alnum + ".*^~<>=!, |+-"

// Semver shows a "semver:RANGE" value whole, its comparison operators and
// spaces included; any other value is shown as Value shows it.
func Semver(v string) string {
	if r, ok := strings.CutPrefix(v, "semver:"); ok && allIn(r, semverRange, 1, 256) {
		return v
	}
	return Value(v)
}

// mediaName is what may follow the first letter or digit of a media
// type's type or subtype (RFC 6838, at most 127 bytes each).
const mediaName = alnum + "!#$&^_.+-"

// MediaType shows a media type whole ("application/vnd.oci.image.layer.v1.tar+gzip"),
// without parameters. A "+" typed unescaped in a query reads as a space
// there, and is shown as typed.
func MediaType(v string) string {
	typ, sub, ok := strings.Cut(strings.ReplaceAll(v, " ", "+"), "/")
	if ok && isMediaName(typ) && isMediaName(sub) {
		return v
	}
	return Placeholder
}

func isMediaName(s string) bool {
	return s != "" && strings.IndexByte(alnum, s[0]) >= 0 && allIn(s[1:], mediaName, 0, 126)
}

// TypeOnly shows the type before the first ":" (a checksum's "sha256", or
// "file" for a checksum file's URL, which may be signed), of 1 to 16
// letters and digits, and hides the rest.
func TypeOnly(v string) string {
	typ, _, found := strings.Cut(v, ":")
	if !found || !allIn(typ, alnum, 1, 16) {
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
