package validate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/report"
	"github.com/ferrysync/ferry/internal/testkit"
)

func newChecker(t *testing.T, o Options) *Checker {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// refusal runs c on dir and returns the refusal, failing the test when
// there is none or the error is not one.
func refusal(t *testing.T, c *Checker, dir string) *Error {
	t.Helper()
	err := c.Validate(context.Background(), Candidate{Source: "app", Revision: "r1", Dir: dir})
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Validate = %v, want a refusal (*Error)", err)
	}
	if strings.ContainsAny(e.Error(), "\r\n") {
		t.Errorf("refusal is not one line: %q", e.Error())
	}
	return e
}

func TestSyntaxNamesFileLineAndColumn(t *testing.T) {
	for _, tc := range []struct {
		name, file, body, want string
	}{
		{"yaml tab indent", "conf/app.yaml", "a: 1\nb:\n\tc: 2\n", "syntax: conf/app.yaml:3:1: found character"},
		{"yaml second document", "app.yml", "a: 1\n---\nb: [1, 2\n", "syntax: app.yml:3:4: sequence end token ']' not found"},
		{"yaml duplicate key", "app.yaml", "a: 1\na: 2\n", "syntax: app.yaml:2:1: mapping key \"a\" already defined"},
		{"json missing comma", "x/app.json", "{\n  \"a\": 1\n  \"b\": 2\n}\n", "syntax: x/app.json:3:3: invalid character '\"' after object key:value pair"},
		{"json truncated", "app.json", "{\"a\": [1,", "syntax: app.json:1:10: unexpected end of JSON input"},
		{"json two values", "app.json", "{}\n{}\n", "syntax: app.json:2:2: data after the top-level value"},
		{"json empty", "app.json", "", "syntax: app.json:1:1: no JSON value"},
		{"toml bad value", "app.toml", "a = 1\nb = \n", "syntax: app.toml:2:5: expected value but found '\\n' instead"},
		{"toml duplicate key", "app.toml", "a = 1\na = 2\n", "syntax: app.toml:2:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := testkit.Tree(t, map[string]string{tc.file: tc.body, "good.yaml": "ok: true\n"})
			e := refusal(t, newChecker(t, Options{Checks: "syntax"}), dir)
			if e.Check != CheckSyntax || e.Reason() != "syntax" || e.File != tc.file {
				t.Errorf("refusal %+v, want check syntax on %s", e, tc.file)
			}
			if !strings.HasPrefix(e.Error(), tc.want) {
				t.Errorf("refusal\n  %q\nwant it to start with\n  %q", e.Error(), tc.want)
			}
		})
	}
}

func TestSyntaxAcceptsValidFilesAndIgnoresOthers(t *testing.T) {
	dir := testkit.Tree(t, map[string]string{
		"a.json":       `{"a": [1, 2.5, "x", null, true]}`,
		"b.yaml":       "a: 1\n---\n- x\n- y\n---\n",
		"c.YML":        "# only a comment\n",
		"d.toml":       "[server]\nport = 8080\n[[user]]\nname = 'a'\n",
		"empty.yaml":   "",
		"notes.txt":    "a:\n\tb: [",
		"script.sh":    "{",
		"dir.json/x":   "not json, and not named .json",
		"deep/e/f.yml": "k: [1, 2]\n",
	})
	if err := os.Symlink("b.yaml", filepath.Join(dir, "link.yaml")); err != nil {
		t.Fatal(err)
	}
	c := newChecker(t, Options{Checks: "syntax"})
	if err := c.Validate(context.Background(), Candidate{Dir: dir}); err != nil {
		t.Fatalf("Validate = %v, want nil", err)
	}
}

func TestSchemaRefusesAViolation(t *testing.T) {
	rule := "conf/**/*.yaml=testdata/app.schema.json"
	for _, tc := range []struct {
		name  string
		files map[string]string
		rules []string
		want  string // "" accepts
	}{
		{"valid", map[string]string{"conf/app.yaml": "name: web\nport: 8080\n"}, []string{rule}, ""},
		{"wrong type", map[string]string{"conf/app.yaml": "name: web\nport: http\n"}, []string{rule},
			"schema: conf/app.yaml: at /port: got string, want integer (schema testdata/app.schema.json)"},
		{"missing property, nested dir", map[string]string{"conf/a/b/app.yaml": "name: web\n"}, []string{rule},
			"schema: conf/a/b/app.yaml: at the top: missing property 'port'"},
		{"second document", map[string]string{"conf/app.yaml": "name: a\nport: 1\n---\nname: b\nport: 70000\n"}, []string{rule},
			"schema: conf/app.yaml: document 2: at /port: maximum: got 70,000, want 65,535"},
		{"two errors", map[string]string{"conf/app.yaml": "name: ''\nport: 0\n"}, []string{rule},
			", and 1 more"},
		{"json", map[string]string{"app.json": `{"name": "x", "port": "80"}`}, []string{"*.json=testdata/app.schema.json"},
			"schema: app.json: at /port: got string, want integer"},
		{"toml", map[string]string{"app.toml": "name = 'x'\nport = 80\ntags = [1]\n"}, []string{"*.toml=testdata/app.schema.json"},
			"schema: app.toml: at /tags/0: got number, want string"},
		{"other files are not checked", map[string]string{"conf/app.yaml": "name: a\nport: 1\n", "other/app.yaml": "port: x\n", "conf/app.json": "{}"}, []string{rule}, ""},
		{"unparsable kind", map[string]string{"conf/app.conf": "x"}, []string{"conf/*=testdata/app.schema.json"},
			"schema: conf/app.conf: schema testdata/app.schema.json applies, but the file is not"},
		{"syntax error first", map[string]string{"conf/app.yaml": "a:\n\tb: 1\n"}, []string{rule},
			"syntax: conf/app.yaml:2:1:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := testkit.Tree(t, tc.files)
			c := newChecker(t, Options{Schemas: tc.rules})
			if tc.want == "" {
				if err := c.Validate(context.Background(), Candidate{Dir: dir}); err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			e := refusal(t, c, dir)
			if !strings.Contains(e.Error(), tc.want) {
				t.Errorf("refusal\n  %q\nwant it to hold\n  %q", e.Error(), tc.want)
			}
		})
	}
}

func TestMatchGlob(t *testing.T) {
	for _, tc := range []struct {
		glob, name string
		want       bool
	}{
		{"*.yaml", "a.yaml", true},
		{"*.yaml", "d/a.yaml", false},
		{"conf/*.yaml", "conf/a.yaml", true},
		{"**/*.yaml", "a.yaml", true},
		{"**/*.yaml", "a/b/c.yaml", true},
		{"conf/**", "conf/a/b", true},
		{"conf/**/x.json", "conf/x.json", true},
		{"conf/**/x.json", "other/x.json", false},
		{"app.yaml", "app.yaml", true},
	} {
		r, err := parseRule(tc.glob + "=s.json")
		if err != nil {
			t.Fatal(err)
		}
		if got := r.matches(tc.name); got != tc.want {
			t.Errorf("%q matches %q = %v, want %v", tc.glob, tc.name, got, tc.want)
		}
	}
}

func TestOptionsErrorsNameFields(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"type": 12}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		o     Options
		field string
		want  string
	}{
		{"unknown check", Options{Checks: "syntax,spelling"}, "Checks", `"spelling": unknown check`},
		{"rule without file", Options{Schemas: []string{"*.yaml"}}, "Schemas", "want GLOB=FILE"},
		{"absolute glob", Options{Schemas: []string{"/etc/*.yaml=s.json"}}, "Schemas", "relative to the revision's tree"},
		{"bad glob", Options{Schemas: []string{"[.yaml=s.json"}}, "Schemas", "bad glob"},
		{"missing schema", Options{Schemas: []string{"*.yaml=/nonexistent/s.json"}}, "Schemas", "no such file"},
		{"invalid schema", Options{Schemas: []string{"*.yaml=" + bad}}, "Schemas", "not a valid schema"},
		{"shell operator", Options{Command: "promtool check config a.yml && echo ok"}, "Command", `"&& echo ok" needs a shell`},
		{"unbalanced quote", Options{Command: `check "a`}, "Command", "invalid command line"},
		{"not on PATH", Options{Command: "ferry-no-such-checker --all"}, "Command", "ferry-no-such-checker: not found on PATH"},
		{"negative timeout", Options{Command: "true", Timeout: -time.Second}, "Timeout", "must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.o)
			if err == nil {
				t.Fatal("New = nil, want an error")
			}
			var fe *report.FieldError
			if !errors.As(err, &fe) || len(fe.Fields()) == 0 || fe.Fields()[0] != tc.field {
				t.Fatalf("New = %v, want a FieldError naming %s", err, tc.field)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("New = %q, want one line holding %q", err, tc.want)
			}
		})
	}
}

func TestEnabled(t *testing.T) {
	if (Options{Timeout: time.Second}).Enabled() {
		t.Error("a timeout alone enables validation")
	}
	for _, o := range []Options{{Checks: "syntax"}, {Schemas: []string{"a=b"}}, {Command: "true"}} {
		if !o.Enabled() {
			t.Errorf("%+v is not enabled", o)
		}
	}
}

// yamlAliasBomb is a "billion laughs" document: levels anchors, each a
// list of nine aliases of the one before, about 60 bytes a level; fully
// expanded it holds 9^levels scalars.
func yamlAliasBomb(levels int) string {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < levels; i++ {
		p := fmt.Sprintf("*a%d", i-1)
		fmt.Fprintf(&b, "a%d: &a%d [%s]\n", i, i, strings.Join([]string{p, p, p, p, p, p, p, p, p}, ", "))
	}
	return b.String()
}

// TestYAMLAliasBombIsRefused: a YAML document of a few hundred bytes whose
// aliases expand to hundreds of millions of values (9^9 here) is refused as a syntax
// error naming the cause, having been walked once per value it holds: the
// conversion for the schema validator once walked every expanded path,
// hours of CPU that the sync's context could not stop. Anchors used as
// configuration files use them (a few shared blocks) still pass.
func TestYAMLAliasBombIsRefused(t *testing.T) {
	c := newChecker(t, Options{Checks: "syntax"})
	dir := testkit.Tree(t, map[string]string{"conf/app.yaml": yamlAliasBomb(9)})
	err := c.Validate(context.Background(), Candidate{Source: "app", Revision: "r1", Dir: dir})
	var ve *Error
	if !errors.As(err, &ve) || ve.Check != CheckSyntax || !strings.Contains(ve.Detail, "alias bomb") {
		t.Fatalf("Validate = %v, want a syntax refusal naming the aliases", err)
	}
	shared := "defaults: &d {timeout: 5s, retries: 3}\n"
	for i := range 500 {
		shared += fmt.Sprintf("svc%d: {conf: *d}\n", i)
	}
	dir = testkit.Tree(t, map[string]string{"conf/app.yaml": shared})
	if err := c.Validate(context.Background(), Candidate{Source: "app", Revision: "r2", Dir: dir}); err != nil {
		t.Fatalf("a document with shared blocks: %v", err)
	}
}

// TestRefusalMessagesAreBounded: a refusal quotes what the document holds
// (a value a pattern refused, a long duplicate key, thousands of keys
// additionalProperties refused) cut to one short line: it goes into the
// log, /status and what ferry once prints.
func TestRefusalMessagesAreBounded(t *testing.T) {
	schema := filepath.Join(t.TempDir(), "s.json")
	if err := os.WriteFile(schema, []byte(`{"properties": {"password": {"type": "string", "pattern": "^\\$\\{[A-Z_]+\\}$"}}, "additionalProperties": false}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var keys strings.Builder
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&keys, "k%d: 1\n", i)
	}
	long := strings.Repeat("k", 1<<20)
	for _, tc := range []struct {
		name string
		o    Options
		body string
	}{
		{"pattern", Options{Schemas: []string{"*.yaml=" + schema}}, "password: hunter2-" + strings.Repeat("x", 1<<20) + "\n"},
		{"additional properties", Options{Schemas: []string{"*.yaml=" + schema}}, keys.String()},
		{"yaml duplicate key", Options{Checks: "syntax"}, long + ": 1\n" + long + ": 2\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := testkit.Tree(t, map[string]string{"app.yaml": tc.body})
			e := refusal(t, newChecker(t, tc.o), dir)
			if n := len(e.Error()); n > 1024 {
				t.Errorf("refusal is %d bytes long: %.200s…", n, e.Error())
			}
		})
	}
}
