package fetch

import (
	"errors"
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

func TestStringRedactsPassword(t *testing.T) {
	u, err := Parse("git::https://user:hunter2@host/r.git//sub?ref=main")
	if err != nil {
		t.Fatal(err)
	}
	s := u.String()
	if strings.Contains(s, "hunter2") || !strings.Contains(s, "user:xxxxx@host/r.git//sub?ref=main") {
		t.Fatalf("String() = %q", s)
	}
	_, err = Parse("https://user:hunter2@host:bad/x")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("parse error leaks the password: %v", err)
	}
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
