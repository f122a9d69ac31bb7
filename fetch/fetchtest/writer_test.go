package fetchtest_test

import (
	"io"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/fetchtest"
)

func open(s string) fetch.Opener {
	return func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(s)), nil }
}

func TestWriterAppliesTheEnginesRulesAndReuses(t *testing.T) {
	w := fetchtest.NewWriter(fetch.Limits{MaxFiles: 10, MaxFileSize: 4})
	if err := w.WriteFile("a/b", 0o644, "k1", open("ab")); err != nil {
		t.Fatal(err)
	}
	w.Symlink("l", "a/b")
	for _, tc := range []struct{ name, why string }{
		{"../x", "leaves"}, {"a/.git/config", ".git"}, {"a/b", "duplicate"}, {"a/b/c", "is a file"}, {"big", "max-file-size"},
	} {
		err := w.WriteFile(tc.name, 0o644, "", open("12345"))
		if !fetch.IsPermanent(err) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%s: err = %v, want a permanent refusal (%s)", tc.name, err, tc.why)
		}
	}
	small := fetchtest.NewWriter(fetch.Limits{MaxFiles: 1})
	small.WriteFile("one", 0o644, "", open("1"))
	if err := small.WriteFile("two", 0o644, "", open("2")); !fetch.IsPermanent(err) || !strings.Contains(err.Error(), "max-files") {
		t.Errorf("second file under max-files 1: %v", err)
	}
	if err := w.Symlink("out", "../../etc"); !fetch.IsPermanent(err) {
		t.Errorf("escaping symlink: %v", err)
	}
	next := fetchtest.NewWriter(fetch.Limits{}).Reuse(w)
	next.WriteFile("a/b", 0o644, "k1", func() (io.ReadCloser, error) { t.Fatal("a reusable file was opened"); return nil, nil })
	next.WriteFile("c", 0o644, "k2", open("c"))
	if got := next.Tree(); got["a/b"] != "ab" || got["c"] != "c" || next.Opened() != 1 {
		t.Fatalf("tree %v, opened %d", got, next.Opened())
	}
	if d := w.Dirs(); len(d) != 1 || d[0] != "a" {
		t.Fatalf("dirs %v", d)
	}
}
