package redact

import (
	"math/rand/v2"
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

// TestValueChecksAsTheirRegexpsDid: the byte-by-byte checks that replaced
// regexps compiled at start (0.6 MB of heap in every process) show and
// hide what the regexps did.
func TestValueChecksAsTheirRegexpsDid(t *testing.T) {
	safe := regexp.MustCompile(`^[A-Za-z0-9._~+/:,-]*$`)
	semver := regexp.MustCompile(`^semver:[0-9A-Za-z.*^~<>=!, |+-]{1,256}$`)
	media := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$`)
	checksum := regexp.MustCompile(`^[A-Za-z0-9]{1,16}$`)
	old := map[string]func(string) string{
		"Value": func(v string) string {
			if safe.MatchString(v) {
				return v
			}
			return Placeholder
		},
		"Semver": func(v string) string {
			if semver.MatchString(v) || safe.MatchString(v) {
				return v
			}
			return Placeholder
		},
		"MediaType": func(v string) string {
			if media.MatchString(strings.ReplaceAll(v, " ", "+")) {
				return v
			}
			return Placeholder
		},
		"TypeOnly": func(v string) string {
			typ, _, found := strings.Cut(v, ":")
			if !found || !checksum.MatchString(typ) {
				return Placeholder
			}
			return typ + ":" + Placeholder
		},
	}
	now := map[string]func(string) string{"Value": Value, "Semver": Semver, "MediaType": MediaType, "TypeOnly": TypeOnly}
	inputs := []string{"", "main", "v1.2.3", "a,b", "semver:", "semver:>=1.2.0 <2", "semver:^2.x || 3.1.*",
		"semver:" + strings.Repeat("1", 256), "semver:" + strings.Repeat("1", 257), "semver:1?x",
		"application/json", "application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar gzip",
		"/json", "application/", "a/b/c", "-a/b", "a/-b", "a/b;q=1", strings.Repeat("a", 127) + "/b", strings.Repeat("a", 128) + "/b",
		"sha256:abc", "sha256", ":abc", strings.Repeat("s", 16) + ":x", strings.Repeat("s", 17) + ":x", "sha-256:x",
		"a b", "a&b=c", "é", "a\x00b", "\xff"}
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := "aZ09._~+/:,-!#$&^*<>=| ?@;é\x00"
	for range 5000 {
		b := make([]byte, r.IntN(24))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		prefix := []string{"", "semver:", "application/", "sha256:"}[r.IntN(4)]
		inputs = append(inputs, prefix+string(b))
	}
	for name, f := range now {
		for _, in := range inputs {
			if got, want := f(in), old[name](in); got != want {
				t.Errorf("%s(%q) = %q, the regexp gave %q", name, in, got, want)
			}
		}
	}
}
