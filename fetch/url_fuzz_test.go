package fetch

import (
	"net/url"
	"strings"
	"testing"
)

// fuzzSecret is the credential FuzzRedact hides in URLs.
const fuzzSecret = "Zq7-hunter2-pw"

// FuzzRedact puts a secret in a source URL's user name, its password, the
// value of a query parameter ferry does not define and the fragment,
// around fuzzed kind, host, path and parameter name, and parses it:
// neither the source's String (what logs and /status show), nor
// RedactString, nor a parse error may show it. The seed corpus is in
// testdata/fuzz/FuzzRedact.
func FuzzRedact(f *testing.F) {
	f.Fuzz(func(t *testing.T, kind, host, path, param string) {
		if strings.Contains(kind+host+path+param, fuzzSecret[:6]) || strings.ContainsAny(host, "/@?#\\") {
			return
		}
		if _, shown := shownOptions[param]; shown {
			return
		}
		raw := "https://" + fuzzSecret + ":" + fuzzSecret + "@" + host + path +
			"?" + url.QueryEscape(param) + "=" + fuzzSecret + "&ref=main#" + fuzzSecret
		if kind != "" {
			raw = kind + "::" + raw
		}
		if s := RedactString(raw); strings.Contains(s, fuzzSecret) {
			t.Fatalf("RedactString(%q) = %q shows the secret", raw, s)
		}
		u, err := Parse(raw)
		if err != nil {
			if strings.Contains(err.Error(), fuzzSecret) {
				t.Fatalf("Parse(%q) error shows the secret: %v", raw, err)
			}
			return
		}
		if s := u.String(); strings.Contains(s, fuzzSecret) {
			t.Fatalf("Parse(%q).String() = %q shows the secret", raw, s)
		}
	})
}
