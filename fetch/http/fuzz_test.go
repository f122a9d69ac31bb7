package http

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/fetch"
)

// FuzzExtract feeds arbitrary bytes to the tar, tar.gz and zip extractors
// (kind&3: 0 or 3 tar, 1 tar.gz, 2 zip; kind&4 publishes only the "conf"
// sub-tree) and to the entry-name sanitizer. Whatever the input, every name that reaches the Writer must be
// clean and local, no setuid bit may pass, errors stay on one line, and no
// temporary file is left. The seed corpus in testdata/fuzz/FuzzExtract
// holds the hostile archives of the tests.
func FuzzExtract(f *testing.F) {
	f.Add(byte(0), []byte("../x"))
	tmp := f.TempDir()
	f.Fuzz(func(t *testing.T, kind byte, data []byte) {
		if name, err := entryName(string(data)); err == nil {
			checkName(t, "entryName", name, true)
		}
		// A hang detector: the fuzzer reports a crashing input, but not one
		// that loops or expands without end.
		slow := time.AfterFunc(10*time.Second, func() { panic("FuzzExtract: one input ran for 10s") })
		defer slow.Stop()
		w := &checkWriter{t: t}
		x := &extractor{ctx: context.Background(), w: w, maxBytes: 1 << 20, tmpDir: tmp}
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
		t.Logf("kind %d: %v (%d files written)", kind, err, w.n)
		if err != nil && strings.ContainsAny(err.Error(), "\n\r") {
			t.Fatalf("error spans lines: %q", err)
		}
		if left, _ := os.ReadDir(tmp); len(left) > 0 {
			t.Fatalf("left in the temp dir: %s", left[0].Name())
		}
	})
}

// checkName fails unless name is a clean relative path inside the tree.
func checkName(t *testing.T, op, name string, rootOK bool) {
	t.Helper()
	if name == "." && rootOK {
		return
	}
	if name == "" || !filepath.IsLocal(name) || path.Clean(name) != name ||
		strings.ContainsAny(name, "\\\x00") || name == "." {
		t.Fatalf("%s passed an unsafe name %q", op, name)
	}
}

// checkWriter is a Writer that only checks what it is given, and reads
// content the way the real one does.
type checkWriter struct {
	t *testing.T
	n int
}

func (w *checkWriter) WriteFile(name string, mode fs.FileMode, _ string, open fetch.Opener) error {
	w.n++
	checkName(w.t, "WriteFile", name, false)
	if mode&^fs.ModePerm != 0 {
		w.t.Fatalf("WriteFile %q with mode %v: special bits passed", name, mode)
	}
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, io.LimitReader(rc, 4<<20))
	return err
}

func (w *checkWriter) Symlink(name, _ string) error {
	checkName(w.t, "Symlink", name, false)
	return nil
}

func (w *checkWriter) Mkdir(name string) error {
	checkName(w.t, "Mkdir", name, false)
	return nil
}
