package redact

import (
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// sourceKeep is a Keep like the one ferry's sources use.
var sourceKeep = Keep{"ref": Value, "depth": Value, "archive": Value, "checksum": TypeOnly}

func TestURLShowsOnlyWhatIsAllowed(t *testing.T) {
	for raw, want := range map[string]string{
		// Userinfo: the user of ssh:// stays; anything else goes whole.
		"https://TOKEN@github.com/org/repo.git?ref=main": "https://REDACTED@github.com/org/repo.git?ref=main",
		"https://user:pw@host/r.git":                     "https://REDACTED@host/r.git",
		"ssh://git@host/org/repo.git":                    "ssh://git@host/org/repo.git",
		"ssh://git:pw@host/org/repo.git":                 "ssh://git:REDACTED@host/org/repo.git",
		"SSH://git:pw@host/r":                            "ssh://git:REDACTED@host/r",
		"s3://user:pw@bucket/p/":                         "s3://REDACTED@bucket/p/",
		// Query: kept options as written, every other value hidden.
		"https://h/b.tar.gz?archive=tgz&X-Amz-Signature=abc&X-Amz-Date=1": "https://h/b.tar.gz?archive=tgz&X-Amz-Signature=REDACTED&X-Amz-Date=REDACTED",
		"https://h/a?ref=feature/x&depth=0":                               "https://h/a?ref=feature/x&depth=0",
		"https://h/a?ref=feature%2Fx":                                     "https://h/a?ref=feature%2Fx",
		"https://h/a?Ref=main":                                            "https://h/a?Ref=REDACTED",
		"https://h/a?r%65f=main":                                          "https://h/a?r%65f=main",
		"https://h/a?private_token":                                       "https://h/a?REDACTED",
		"https://h/a?ref":                                                 "https://h/a?ref",
		"https://h/a?=abc&&":                                              "https://h/a?=REDACTED&&",
		"https://h/a?token=%zz":                                           "https://h/a?token=REDACTED",
		// A second parameter typed into a kept value does not come through.
		"https://h/a?ref=main?private_token=abc": "https://h/a?ref=REDACTED",
		"https://h/a?ref=main;token=abc":         "https://h/a?ref=main;token=REDACTED",
		"https://h/a?ref=a+b":                    "https://h/a?ref=REDACTED",
		"https://h/a?ref=semver:1.x&depth=a,b":   "https://h/a?ref=semver:1.x&depth=a,b",
		"https://h/a?ref=x@y":                    "https://h/a?ref=REDACTED",
		// Checksums: the type only; a checksum file's URL may be signed.
		"https://h/a.zip?checksum=sha256:abcd":                      "https://h/a.zip?checksum=sha256:REDACTED",
		"https://h/a.zip?checksum=file:https://h/SUMS?sig=abc":      "https://h/a.zip?checksum=file:REDACTED",
		"https://h/a.zip?checksum=file:https%3A%2F%2Fu:pw@h%2FSUMS": "https://h/a.zip?checksum=file:REDACTED",
		"https://h/a.zip?checksum=abcd":                             "https://h/a.zip?checksum=REDACTED",
		// Fragments may hold a token too.
		"https://h/a#access_token=abc": "https://h/a#REDACTED",
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", raw, err)
		}
		if got := URL(u, sourceKeep); got != want {
			t.Errorf("URL(%q) = %q, want %q", raw, got, want)
		}
		if got := String(raw, sourceKeep); got != want {
			t.Errorf("String(%q) = %q, want %q", raw, got, want)
		}
	}
}

func TestStringRedactsWhatDoesNotParse(t *testing.T) {
	for raw, want := range map[string]string{
		"127.0.0.1:9091/-/reload?token=abc":      "127.0.0.1:9091/-/reload?token=REDACTED",
		"u:pw@127.0.0.1:9091/-/reload":           "REDACTED@127.0.0.1:9091/-/reload",
		"https://u:pw@host:port/x?ref=main":      "https://REDACTED@host:port/x?ref=main",
		"https://u:p/w?#d@host:port/x":           "https://REDACTED",
		"https://u:p?w@host:port/x?token=abc":    "https://REDACTED@host:port/x?token=REDACTED",
		"git::https://u:pw@h:bad/r.git?sig=abc":  "git::https://REDACTED@h:bad/r.git?sig=REDACTED",
		"a:b::c://u:pw@h/x":                      "a:b::c://REDACTED@h/x",
		"http://h:x/a?sshkey=abc#frag":           "http://h:x/a?sshkey=REDACTED#REDACTED",
		"git@host:org/repo.git":                  "REDACTED@host:org/repo.git",
		"not a url ?code=abc&session=def":        "not a url ?code=REDACTED&session=REDACTED",
		"":                                       "",
		"http://[::1/x?X-Auth-Token=abc&depth=1": "http://[::1/x?X-Auth-Token=REDACTED&depth=1",
	} {
		if got := String(raw, sourceKeep); got != want {
			t.Errorf("String(%q) = %q, want %q", raw, got, want)
		}
	}
	if got := String("https://h/a?ref=main&token=abc", nil); got != "https://h/a?ref=REDACTED&token=REDACTED" {
		t.Errorf("a nil Keep shows %q", got)
	}
}

// Markers of FuzzString, one per place a credential goes; the fuzzed
// parts may not contain their common prefix.
const (
	markerPrefix   = "Zq7"
	markerUser     = markerPrefix + "user"
	markerPassword = markerPrefix + "pass"
	markerQuery    = markerPrefix + "query"
	markerFragment = markerPrefix + "frag"
)

var (
	kindPattern   = regexp.MustCompile(`^([A-Za-z0-9]+::)?$`)
	schemePattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]{0,15}$`)
)

// FuzzString builds URLs with a credential in every place one goes (user,
// password, a query parameter ferry does not define, the fragment) around
// fuzzed kind, scheme, host, path and parameter name, and redacts them as
// a parsed URL and as a string: no credential may come through, whatever
// the parser makes of the rest. The one exception is the user of an
// ssh:// URL, shown on purpose. The seed corpus is in testdata/fuzz.
func FuzzString(f *testing.F) {
	f.Fuzz(func(t *testing.T, kind, scheme, host, path, key string) {
		if strings.Contains(kind+scheme+host+path+key, markerPrefix) ||
			!kindPattern.MatchString(kind) || !schemePattern.MatchString(scheme) {
			return
		}
		if _, kept := sourceKeep[key]; kept {
			return // a value shown on purpose
		}
		raw := kind + scheme + "://" + markerUser + ":" + markerPassword + "@" + host + path +
			"?" + url.QueryEscape(key) + "=" + markerQuery + "&ref=main#" + markerFragment
		hidden := []string{markerPassword, markerQuery, markerFragment}
		if !strings.EqualFold(scheme, "ssh") {
			hidden = append(hidden, markerUser)
		}
		outputs := []string{String(raw, sourceKeep), String(raw, nil)}
		if u, err := url.Parse(raw); err == nil {
			outputs = append(outputs, URL(u, sourceKeep))
		}
		for _, out := range outputs {
			for _, m := range hidden {
				if strings.Contains(out, m) {
					t.Fatalf("redacting %q shows %s: %q", raw, m, out)
				}
			}
		}
	})
}

// The bounds are checked apart from the patterns (see semverRange): a
// value at its bound shows, one character more hides.
func TestOptionValuesShowUpToTheirBound(t *testing.T) {
	name := func(n int) string { return strings.Repeat("a", n) }
	for _, c := range []struct {
		show    func(string) string
		at, out string
		atWant  string
	}{
		{Semver, "semver:" + name(256), "semver:" + strings.Repeat("<", 257), "semver:" + name(256)},
		{MediaType, name(127) + "/" + name(127), name(128) + "/a", name(127) + "/" + name(127)},
		{MediaType, "a/" + name(127), "a/" + name(128), "a/" + name(127)},
		{TypeOnly, name(16) + ":x", name(17) + ":x", name(16) + ":REDACTED"},
	} {
		if got := c.show(c.at); got != c.atWant {
			t.Errorf("%.20q...: got %.20q, want %.20q", c.at, got, c.atWant)
		}
		if got := c.show(c.out); got != Placeholder {
			t.Errorf("%.20q...: got %.20q, want %s", c.out, got, Placeholder)
		}
	}
}
