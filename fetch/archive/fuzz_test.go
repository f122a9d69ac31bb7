package archive

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/fetchtest"
)

// FuzzExtract feeds arbitrary bytes to the tar, tar.gz and zip extractors
// (kind&3: 0 or 3 tar, 1 tar.gz, 2 zip; kind&4 publishes only the "conf"
// sub-tree), writing through the in-memory Writer that keeps the publish
// engine's rules. Whatever the input, every name it accepts is clean and
// local, no setuid bit passes, errors stay on one line, and no temporary
// file is left. The seed corpus in testdata/fuzz/FuzzExtract holds the
// hostile archives of the tests.
func FuzzExtract(f *testing.F) {
	f.Add(byte(0), []byte("../x"))
	tmp := f.TempDir()
	f.Fuzz(func(t *testing.T, kind byte, data []byte) {
		// A hang detector: the fuzzer reports a crashing input, but not one
		// that loops or expands without end.
		slow := time.AfterFunc(10*time.Second, func() { panic("FuzzExtract: one input ran for 10s") })
		defer slow.Stop()
		w := fetchtest.NewWriter(fetch.Limits{})
		x := &extractor{ctx: context.Background(), w: w, maxBytes: 1 << 20, limitName: "test", maxFiles: fetch.DefaultMaxFiles, tmpDir: tmp}
		if kind&4 != 0 {
			x.subdir = "conf"
		}
		var err error
		switch kind & 3 {
		case 0, 3:
			err = x.tar(bytes.NewReader(data), false)
		case 1:
			err = x.tar(bytes.NewReader(data), true)
		case 2:
			err = x.zip(bytes.NewReader(data), int64(len(data)))
		}
		t.Logf("kind %d: %v (%d files written)", kind, err, len(w.Files()))
		if err != nil && strings.ContainsAny(err.Error(), "\n\r") {
			t.Fatalf("error spans lines: %q", err)
		}
		names := w.Dirs()
		for name, f := range w.Files() {
			if f.Mode&^fs.ModePerm != 0 {
				t.Fatalf("%q written with mode %v: special bits passed", name, f.Mode)
			}
			names = append(names, name)
		}
		for name := range w.Links() {
			names = append(names, name)
		}
		for _, name := range names {
			if !filepath.IsLocal(name) || filepath.Clean(name) != name || strings.ContainsAny(name, "\\\x00") {
				t.Fatalf("unsafe name %q accepted", name)
			}
		}
		if left, _ := os.ReadDir(tmp); len(left) > 0 {
			t.Fatalf("left in the temp dir: %s", left[0].Name())
		}
	})
}
