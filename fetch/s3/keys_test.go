package s3_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/sourcetest"
)

// TestHostileKeysAreRefusedOrPublishedInside syncs, beside a good object,
// keys that would climb out of the prefix or the revision, alias another
// key, hold bytes behind a trailing "/", have a path component longer than
// a file name may be, nest hundreds deep, or hold control or bidirectional
// characters. Each is refused with a one-line error that names it, before
// anything is written, or published under exactly its name inside the
// revision; nothing lands outside, and no error carries a raw control
// character to a terminal.
func TestHostileKeysAreRefusedOrPublishedInside(t *testing.T) {
	// versitygw stores keys as file paths: it normalises most of these
	// ("conf/../evil" becomes "evil") and refuses the others.
	s := newGofakes3(t)
	deep := strings.Repeat("d/", 490) + "x"
	for _, tc := range []struct {
		name, prefix, key string
		refused           string // part of the error; "" when it must publish
		either            bool   // the server may mangle the key: refused or published
	}{
		{"dotdot", "conf/", "conf/../evil", `key "conf/../evil"`, false},
		{"dotdot deeper", "conf/", "conf/a/../../evil", `key "conf/a/../../evil"`, false},
		{"empty component", "conf/", "conf//etc/passwd", `key "conf//etc/passwd"`, false},
		{"dot component", "conf/", "conf/./a", `key "conf/./a"`, false},
		{"slash with content", "conf/", "conf/dir/", `key "conf/dir/" ends in "/" but holds`, false},
		{"absolute", "", "/etc/passwd", `"/etc/passwd": absolute path`, false},
		{"double slash", "", "//etc/passwd", "absolute path", false},
		{"component over NAME_MAX", "conf/", "conf/" + strings.Repeat("a", 300), "longer than 255 bytes", false},
		{"nested 490 deep", "conf/", "conf/" + deep, "", false},
		{"newline", "conf/", "conf/a\nb.yaml", "", false},
		{"tab", "conf/", "conf/tab\there.yaml", "", false},
		{"right-to-left override", "conf/", "conf/\u202egnp.exe", "", false},
		{"escape sequence", "conf/", "conf/\x1b[31mred", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bucket := s.newBucket(t, false)
			s.put(t, bucket, "conf/ok.yaml", "ok")
			s.put(t, bucket, tc.key, "hostile")
			if !tc.either && !slices.Contains(s.keys(t, bucket, ""), tc.key) {
				t.Fatalf("the server did not keep %.60q verbatim", tc.key)
			}
			store := newStore(t, fetch.Limits{})
			r := sourcetest.Sync(t, store, "c", newSource(t, s.url(bucket, tc.prefix), fetch.Env{}, nil))
			switch err := r.Err; {
			case err != nil && (tc.refused != "" || tc.either):
				if strings.ContainsFunc(err.Error(), func(r rune) bool { return unicode.IsControl(r) && r != '\t' }) && !tc.either {
					t.Errorf("error carries a raw control character: %q", err)
				}
				if tc.refused == "" {
					assertErr(t, err, fetch.IsPermanent(err))
				} else if assertErr(t, err, true, tc.refused); r.Stats.Files != 0 {
					t.Errorf("%d files written before the refusal", r.Stats.Files)
				}
			case err != nil:
				t.Fatalf("key %.60q: %v", tc.key, err)
			case tc.refused != "":
				t.Fatalf("key %.60q was published; want it refused with %q", tc.key, tc.refused)
			default:
				name := strings.TrimPrefix(tc.key, tc.prefix)
				data, err := os.ReadFile(filepath.Join(store.LinkPath("c"), filepath.FromSlash(name)))
				if err != nil || string(data) != "hostile" {
					t.Fatalf("key %.60q not published under its name: %q, %v", tc.key, data, err)
				}
			}
			// Nothing beside the link and the store.
			entries, _ := os.ReadDir(store.Root())
			for _, e := range entries {
				if e.Name() != "c" && e.Name() != ".ferry" {
					t.Fatalf("%q appeared in the root", e.Name())
				}
			}
		})
	}
}
