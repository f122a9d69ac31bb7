package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

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
			case "cmd", "examples", ".cache", ".git":
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
