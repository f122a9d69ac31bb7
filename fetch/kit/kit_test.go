package kit_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/fetch/kit"
)

func TestReadSecretTakesOneLineAndNothingElse(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		content, want, err string
	}{
		{"t0ken", "t0ken", ""},
		{"t0ken\n", "t0ken", ""},
		{"t0ken\r\n", "t0ken", ""},
		{"pass word", "pass word", ""},
		{"", "", "empty"},
		{"\n\n", "", "empty"},
		{"t0ken\n\n", "", "more than one line"},
		{"a\nb", "", "more than one line"},
		{" t0ken", "", "white space"},
		{"t0ken ", "", "white space"},
		{strings.Repeat("x", kit.MaxSecretSize+1), "", "larger than"},
	} {
		p := filepath.Join(dir, "s")
		os.WriteFile(p, []byte(tc.content), 0o600)
		got, err := kit.ReadSecret(p)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), p) {
				t.Errorf("%q: err = %v, want %q naming the file", tc.content, err, tc.err)
			}
			if err != nil && len(tc.content) > 2 && strings.Contains(err.Error(), strings.TrimSpace(tc.content)[:2]) && !strings.Contains(p, strings.TrimSpace(tc.content)[:2]) {
				t.Errorf("%q: the error shows the content: %v", tc.content, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.content, got, err, tc.want)
		}
	}
	if _, err := kit.ReadSecret(dir); err == nil {
		t.Error("a directory was read as a secret")
	}
}

func TestStateFileRoundTripsAndCreatesPrivateDirectory(t *testing.T) {
	root := t.TempDir()
	f := kit.StateFile(filepath.Join(root, "src", ".state", "x.json"))
	var v struct{ A string }
	if err := f.Load(&v); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load of nothing = %v", err)
	}
	if err := f.Save(struct{ A string }{"b"}); err != nil {
		t.Fatal(err)
	}
	if err := f.Load(&v); err != nil || v.A != "b" {
		t.Fatalf("Load = %+v, %v", v, err)
	}
	for p, want := range map[string]os.FileMode{filepath.Join(root, "src"): 0o755, filepath.Join(root, "src", ".state"): 0o700} {
		if fi, _ := os.Stat(p); fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(root, "src", ".state", kit.TempPrefix+"*")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
}
