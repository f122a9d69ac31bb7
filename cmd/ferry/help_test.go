package main

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of the --help tests")

// TestHelpIsGolden: --help of each command is a contract with users and
// their scripts. A change to it is made on purpose, by running
// 'go test ./cmd/ferry -run TestHelpIsGolden -update', and shows in review
// as a change to testdata/help-*.golden.
func TestHelpIsGolden(t *testing.T) {
	for _, cmd := range []string{"run", "once"} {
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
