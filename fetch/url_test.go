package fetch

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	cases := []struct {
		raw, kind, url, subdir string
	}{
		{"git::https://host/org/repo.git?ref=main", "git", "https://host/org/repo.git?ref=main", ""},
		{"git::ssh://git@host/org/repo.git?ref=v1.4.0", "git", "ssh://git@host/org/repo.git?ref=v1.4.0", ""},
		{"git@host:org/repo.git", "git", "ssh://git@host/org/repo.git", ""},
		{"https://github.com/org/repo.git//conf/prod?ref=main", "git", "https://github.com/org/repo.git?ref=main", "conf/prod"},
		{"github.com/org/repo//conf", "git", "https://github.com/org/repo.git", "conf"},
		{"git::file:///srv/repo", "git", "file:///srv/repo", ""},
		{"https://host/app.yaml", "http", "https://host/app.yaml", ""},
		{"https://host/bundle.tar.gz?checksum=sha256:ab12", "http", "https://host/bundle.tar.gz?checksum=sha256:ab12", ""},
		{"http://127.0.0.1:8080/x//sub", "http", "http://127.0.0.1:8080/x", "sub"},
		{"s3::https://s3.eu-west-1.amazonaws.com/bucket/prefix/", "s3", "https://s3.eu-west-1.amazonaws.com/bucket/prefix/", ""},
		{"https://s3.eu-west-1.amazonaws.com/bucket/prefix/", "s3", "https://s3.eu-west-1.amazonaws.com/bucket/prefix/", ""},
		{"https://bucket.s3.us-east-2.amazonaws.com/conf/app.yaml", "s3", "https://bucket.s3.us-east-2.amazonaws.com/conf/app.yaml", ""},
		{"https://s3-eu-west-1.amazonaws.com/bucket/p/", "s3", "https://s3-eu-west-1.amazonaws.com/bucket/p/", ""},
		{"https://example.com/s3/app.yaml", "http", "https://example.com/s3/app.yaml", ""},
		{"s3://bucket/prefix/?region=eu-west-1", "s3", "s3://bucket/prefix/?region=eu-west-1", ""},
		{"s3::http://127.0.0.1:9000/bucket/prefix/", "s3", "http://127.0.0.1:9000/bucket/prefix/", ""},
		{"file:///etc/seed-config", "file", "file:///etc/seed-config", ""},
		{"/etc/seed-config", "file", "file:///etc/seed-config", ""},
		{"GIT::https://host/r.git", "git", "https://host/r.git", ""},
		{"oci://ghcr.io/org/conf:1.4.2", "oci", "oci://ghcr.io/org/conf:1.4.2", ""},
		{"oci://ghcr.io/org/conf@sha256:ab12//prod", "oci", "oci://ghcr.io/org/conf@sha256:ab12", "prod"},
		{"oci::http://127.0.0.1:5000/conf:v1", "oci", "http://127.0.0.1:5000/conf:v1", ""},
	}
	for _, tc := range cases {
		u, err := Parse(tc.raw)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.raw, err)
			continue
		}
		if u.Kind != tc.kind || u.URL.String() != tc.url || u.Subdir != tc.subdir {
			t.Errorf("Parse(%q) = {%s %s %q}, want {%s %s %q}", tc.raw, u.Kind, u.URL, u.Subdir, tc.kind, tc.url, tc.subdir)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for raw, want := range map[string]string{
		"":                          "empty source URL",
		"config/dir":                "not a URL",
		"https://host/x//../../etc": "leaves the source",
		"https://host:notaport/x":   "invalid port",
	} {
		_, err := Parse(raw)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", raw, err, want)
		}
	}
}

func TestStringHidesUserinfo(t *testing.T) {
	for raw, want := range map[string]string{
		"git::https://user:hunter2@host/r.git//sub?ref=main": "git::https://REDACTED@host/r.git//sub?ref=main",
		// A token given as the user name is as secret as a password.
		"https://ghp_hunter2@github.com/org/repo.git": "git::https://REDACTED@github.com/org/repo.git",
		// The SSH user says who logs in; it is no secret.
		"git@host:org/repo.git":                    "git::ssh://git@host/org/repo.git",
		"git::ssh://git:hunter2@host/org/repo.git": "git::ssh://git:REDACTED@host/org/repo.git",
	} {
		checkString(t, raw, want)
	}
	_, err := Parse("https://user:hunter2@host:bad/x")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("parse error leaks the password: %v", err)
	}
}

// secretParams are query parameters that carry credentials in the wild
// (GitLab, OAuth, JWT, pre-signed URLs of S3, GCS and Azure, API gateways)
// and names nobody has thought of yet: only ferry's own options show.
var secretParams = []string{
	"private_token", "client_secret", "key", "jwt", "code", "session", "X-Auth-Token",
	"sig", "signature", "token", "access_token", "password", "api_key", "apikey",
	"X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "X-Goog-Signature",
	"sshkey", "aws_access_key_secret", "Ref", "REF", "q", "x9_unheard_of", "",
}

func TestStringShowsOnlyFerrysOptions(t *testing.T) {
	for _, param := range secretParams {
		for _, tc := range []struct{ raw, want string }{
			{"https://h/b.tar.gz?archive=tgz&checksum=sha256:ab12&%s=hunter2",
				"https://h/b.tar.gz?archive=tgz&checksum=sha256:REDACTED&%s=REDACTED"},
			{"git::https://h/r.git//conf?ref=v1.4.0&depth=0&submodules=false&%s=hunter2",
				"git::https://h/r.git//conf?ref=v1.4.0&depth=0&submodules=false&%s=REDACTED"},
			{"git::https://h/r.git?paths=conf/prod,shared/*.yaml&submodules=shallow&%s=hunter2",
				"git::https://h/r.git?paths=conf/prod,shared/*.yaml&submodules=shallow&%s=REDACTED"},
			{"s3://b/p/app.yaml?region=eu-west-1&version=3HL4kq.Jlc-p_X&%s=hunter2",
				"s3://b/p/app.yaml?region=eu-west-1&version=3HL4kq.Jlc-p_X&%s=REDACTED"},
			{"oci://r.example/conf?tag=semver:>=1.2.0 <2 || ~3.1&layer=application/vnd.oci.image.layer.v1.tar+gzip&extract=false&platform=linux/arm64&%s=hunter2",
				"oci://r.example/conf?tag=semver:>=1.2.0 <2 || ~3.1&layer=application/vnd.oci.image.layer.v1.tar+gzip&extract=false&platform=linux/arm64&%s=REDACTED"},
		} {
			key := url.QueryEscape(param)
			checkString(t, fmt.Sprintf(tc.raw, key), fmt.Sprintf(tc.want, key))
		}
	}
	// A checksum file's URL may be pre-signed: only "file" shows.
	checkString(t, "https://h/b.zip?checksum=file:https://h/SUMS?X-Amz-Signature=hunter2", "https://h/b.zip?checksum=file:REDACTED")
	// A range is shown whole, but not what would start another parameter.
	checkString(t, "git::https://h/r.git?ref=semver:~1.4?token=hunter2", "git::https://h/r.git?ref=REDACTED")
	checkString(t, "oci://h/r?tag=semver:1.x#hunter2", "oci://h/r?tag=semver:1.x#REDACTED")
	if _, err := Parse("https://h/" + strings.Repeat("a", MaxURLLength)); err == nil || strings.Contains(err.Error(), "aaaa") {
		t.Fatalf("an overlong URL: %v", err)
	}
}

// TestStringKeepsTheKind: /status says which backend reads a source, and
// what it shows parses back to that backend.
func TestStringKeepsTheKind(t *testing.T) {
	for raw, want := range map[string]string{
		"https://github.com/org/repo.git//conf/prod?ref=main":            "git::https://github.com/org/repo.git//conf/prod?ref=main",
		"git::https://host/org/repo.git?ref=main":                        "git::https://host/org/repo.git?ref=main",
		"git::file:///srv/repo":                                          "git::file:///srv/repo",
		"https://s3.eu-west-1.amazonaws.com/bucket/prefix/":              "s3::https://s3.eu-west-1.amazonaws.com/bucket/prefix/",
		"s3::http://127.0.0.1:9000/bucket/prefix/":                       "s3::http://127.0.0.1:9000/bucket/prefix/",
		"s3://bucket/prefix/?region=eu-west-1":                           "s3://bucket/prefix/?region=eu-west-1",
		"s3://bucket//conf":                                              "s3://bucket//conf",
		"https://host/app.yaml":                                          "https://host/app.yaml",
		"http::https://host/b.tgz//etc":                                  "https://host/b.tgz//etc",
		"/etc/seed-config":                                               "file:///etc/seed-config",
		"git://host/repo":                                                "git://host/repo",
		"http::https://host/repo.git":                                    "http::https://host/repo.git",
		"http::https://b.s3.us-east-2.amazonaws.com/x?X-Amz-Signature=s": "http::https://b.s3.us-east-2.amazonaws.com/x?X-Amz-Signature=REDACTED",
		"https://host/a%2Fb.tgz//sub%20dir":                              "https://host/a%2Fb.tgz//sub%20dir",
		"oci://ghcr.io/org/conf:1.4//prod":                               "oci://ghcr.io/org/conf:1.4//prod",
		"oci::http://127.0.0.1:5000/conf@sha256:ab":                      "oci::http://127.0.0.1:5000/conf@sha256:ab",
		"oci://u:hunter2@ghcr.io/org/conf":                               "oci://REDACTED@ghcr.io/org/conf",
	} {
		u := checkString(t, raw, want)
		back, err := Parse(want)
		if err != nil || back.Kind != u.Kind || back.Subdir != u.Subdir {
			t.Errorf("Parse(%q) = %+v, %v: want kind %q and subdir %q back", want, back, err, u.Kind, u.Subdir)
		}
	}
}

// checkString parses raw and checks what String shows of it.
func checkString(t *testing.T, raw, want string) *URL {
	t.Helper()
	u, err := Parse(raw)
	if err != nil {
		t.Fatalf("Parse(%q): %v", raw, err)
	}
	if got := u.String(); got != want {
		t.Errorf("Parse(%q).String() = %q, want %q", raw, got, want)
	}
	return u
}

func TestRegistryOpen(t *testing.T) {
	called := ""
	r := Registry{"file": func(u *URL, env Env) (Source, error) {
		called = u.URL.Path
		return nil, nil
	}}
	if _, _, err := r.Open("/srv/conf", Env{}); err != nil || called != "/srv/conf" {
		t.Fatalf("Open = %v, factory saw %q", err, called)
	}
	_, _, err := r.Open("ftp://host/x", Env{})
	if err == nil || !strings.Contains(err.Error(), `unknown kind "ftp" (known: file)`) {
		t.Fatalf("Open(ftp) = %v", err)
	}
	r["git"] = func(*URL, Env) (Source, error) { return nil, errors.New("bad ref") }
	_, _, err = r.Open("git::https://h/r.git", Env{})
	if err == nil || !strings.Contains(err.Error(), "bad ref") {
		t.Fatalf("Open(git) = %v", err)
	}
}

func TestPermanent(t *testing.T) {
	base := errors.New("bad credentials")
	p := Permanent(base)
	wrapped := errors.Join(errors.New("context"), p)
	if !IsPermanent(wrapped) || !errors.Is(wrapped, base) {
		t.Fatal("a wrapped permanent error lost its mark or its cause")
	}
	if IsPermanent(base) || Permanent(nil) != nil {
		t.Fatal("unmarked errors must be transient; Permanent(nil) must be nil")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"git::https://h/r.git//a?ref=x", "git@h:o/r.git", "/etc/x", "s3://b/p", "https://u:p@h/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := Parse(raw)
		if err != nil {
			return
		}
		// "..git" is a name inside the tree; ".." and "../x" leave it.
		if u.Subdir != "" && (strings.HasPrefix(u.Subdir, "/") || u.Subdir == ".." || strings.HasPrefix(u.Subdir, "../")) {
			t.Fatalf("Parse(%q) kept an escaping subdir %q", raw, u.Subdir)
		}
		_ = u.String()
	})
}
