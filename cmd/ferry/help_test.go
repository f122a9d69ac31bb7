package main

import (
	"context"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of the --help and log tests")

// TestHelpIsGolden: --help of each command is a contract with users and
// their scripts. A change to it is made on purpose, by running
// 'go test ./cmd/ferry -run TestHelpIsGolden -update', and shows in review
// as a change to testdata/help-*.golden.
func TestHelpIsGolden(t *testing.T) {
	for _, cmd := range []string{cmdRun, cmdOnce, cmdCheck, cmdInject} {
		t.Run(cmd, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := run(context.Background(), []string{cmd, "--help"}, func(string) (string, bool) { return "", false }, &stdout, &stderr)
			if code != exitOK || stderr.Len() != 0 {
				t.Fatalf("exit %d, stderr %q", code, stderr.String())
			}
			golden := filepath.Join("testdata", "help-"+cmd+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(stdout.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got := stdout.String(); got != string(want) {
				t.Errorf("ferry %s --help differs from %s (run with -update if the change is meant):\n%s", cmd, golden, lineDiff(string(want), got))
			}
		})
	}
}

// lineDiff shows the lines of got that are not in want and the reverse.
func lineDiff(want, got string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}

// TestFlagsBelongToCmd: the command line's vocabulary lives in this
// package's settings table alone. Below cmd, no package imports flag and
// no string names one of ferry's flags: an embedder of sync or a backend
// would get hints about flags that do not exist, and the configuration
// file names settings differently. Configuration errors there name Options
// fields (report.FieldError), which describe renders as flags.
func TestFlagsBelongToCmd(t *testing.T) {
	var flags []string
	for _, s := range settings(&options{}) {
		flags = append(flags, "--"+s.flag)
	}
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			switch rel {
			case "cmd", "examples", "tools", ".cache", ".git": // commands of their own
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			if imp.Path.Value == `"flag"` {
				t.Errorf("%s imports flag", rel)
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			for _, fl := range flags {
				if i := strings.Index(s, fl); i >= 0 {
					end := i + len(fl)
					if end == len(s) || !(s[end] == '-' || s[end] >= 'a' && s[end] <= 'z') {
						t.Errorf("%s: %q names the flag %s", fset.Position(lit.Pos()), s, fl)
						break
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
