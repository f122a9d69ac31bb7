package s3_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	"github.com/ferrysync/ferry/fetch"
)

// TestHostileKeysAreRefusedOrPublishedInside covers the keys the escape
// test does not: absolute keys under a whole-bucket source, a path
// component longer than a file name may be, a key nested hundreds deep,
// and keys holding control or bidirectional characters. Each is refused
// with a one-line error that names it, or published under exactly its
// name inside the revision; nothing lands outside, and no error carries a
// raw control character to a terminal.
func TestHostileKeysAreRefusedOrPublishedInside(t *testing.T) {
	s := newGofakes3(t) // versitygw stores keys as file paths and refuses most of these
	deep := strings.Repeat("d/", 490) + "x"
	for _, tc := range []struct {
		name, prefix, key string
		refused           string // part of the error; "" when it must publish
		permanent         bool
		either            bool // the server may mangle the key: refused or published
	}{
		{"absolute", "", "/etc/passwd", `key "/etc/passwd": absolute path`, true, false},
		{"double slash", "", "//etc/passwd", "absolute path", true, false},
		{"component over NAME_MAX", "conf/", "conf/" + strings.Repeat("a", 300), "longer than 255 bytes", true, false},
		{"nested 490 deep", "conf/", "conf/" + deep, "", false, false},
		{"newline", "conf/", "conf/a\nb.yaml", "", false, false},
		{"tab", "conf/", "conf/tab\there.yaml", "", false, false},
		{"right-to-left override", "conf/", "conf/\u202egnp.exe", "", false, false},
		{"escape sequence", "conf/", "conf/\x1b[31mred", "", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bucket := s.newBucket(t, false)
			s.put(t, bucket, "conf/ok.yaml", "ok")
			s.put(t, bucket, tc.key, "hostile")
			h := newHarness(t, newSource(t, s.url(bucket, tc.prefix), "", nil), fetch.Limits{})
			_, _, err := h.sync(t)
			switch {
			case err != nil && (tc.refused != "" || tc.either):
				if strings.ContainsFunc(err.Error(), func(r rune) bool { return unicode.IsControl(r) && r != '\t' }) && !tc.either {
					t.Errorf("error carries a raw control character: %q", err)
				}
				if tc.refused != "" {
					assertErr(t, err, tc.permanent, tc.refused)
				} else if strings.Contains(err.Error(), "\n") {
					t.Errorf("error spans lines: %q", err)
				}
			case err != nil:
				t.Fatalf("key %.60q: %v", tc.key, err)
			case tc.refused != "":
				t.Fatalf("key %.60q was published; want it refused with %q", tc.key, tc.refused)
			default:
				name := strings.TrimPrefix(tc.key, tc.prefix)
				data, err := os.ReadFile(filepath.Join(h.root, "c", filepath.FromSlash(name)))
				if err != nil || string(data) != "hostile" {
					t.Fatalf("key %.60q not published under its name: %q, %v", tc.key, data, err)
				}
			}
			// Nothing beside the link and the store.
			entries, _ := os.ReadDir(h.root)
			for _, e := range entries {
				if e.Name() != "c" && e.Name() != ".ferry" {
					t.Fatalf("%q appeared in the root", e.Name())
				}
			}
		})
	}
}
