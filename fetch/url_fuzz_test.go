package fetch

import (
	"net/url"
	"strings"
	"testing"
)

// fuzzSecret is the credential FuzzRedact hides in URLs.
const fuzzSecret = "Zq7-hunter2-pw"

// FuzzRedact puts a secret in a URL's password and in a credential query
// parameter, around fuzzed parts, and parses it: neither the source's
// String (what logs and /status show) nor a parse error may show it. The
// seed corpus is in testdata/fuzz/FuzzRedact.
func FuzzRedact(f *testing.F) {
	f.Fuzz(func(t *testing.T, kind, host, path, param string) {
		if strings.Contains(kind+host+path+param, fuzzSecret[:6]) || strings.ContainsAny(host, "/@?#\\") ||
			!secretParams[strings.ToLower(param)] {
			return
		}
		raw := "https://u:" + fuzzSecret + "@" + host + path + "?" + url.QueryEscape(param) + "=" + fuzzSecret
		if kind != "" {
			raw = kind + "::" + raw
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

func TestRedactHidesCredentialParameters(t *testing.T) {
	for raw, want := range map[string]string{
		"https://h/b.tar.gz?X-Amz-Signature=abc&X-Amz-Date=1":    "https://h/b.tar.gz?X-Amz-Signature=xxxxx&X-Amz-Date=1",
		"s3://b/p/?aws_access_key_secret=abc&region=eu-west-1":   "s3://b/p/?aws_access_key_secret=xxxxx&region=eu-west-1",
		"git::ssh://git@h/r.git?sshkey=abc&ref=main":             "git::ssh://git@h/r.git?sshkey=xxxxx&ref=main",
		"https://u:pw@h/x.zip?sig=abc&archive=zip":               "https://u:xxxxx@h/x.zip?sig=xxxxx&archive=zip",
		"https://h/app.yaml?checksum=sha256:ab&token":            "https://h/app.yaml?checksum=sha256:ab&token",
		"https://h/app.yaml?Token=abc":                           "https://h/app.yaml?Token=xxxxx",
		"https://github.com/org/repo.git//conf?ref=main&token=x": "git::https://github.com/org/repo.git//conf?ref=main&token=xxxxx",
	} {
		u, err := Parse(raw)
		if err != nil {
			t.Fatalf("Parse(%q): %v", raw, err)
		}
		if got := u.String(); got != want && "git::"+got != want {
			t.Errorf("Parse(%q).String() = %q, want %q", raw, got, want)
		}
	}
	if _, err := Parse("https://h/" + strings.Repeat("a", MaxURLLength)); err == nil || strings.Contains(err.Error(), "aaaa") {
		t.Fatalf("an overlong URL: %v", err)
	}
}
