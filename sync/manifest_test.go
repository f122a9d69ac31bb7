package sync

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

// The manifest is written a file at a time; what is on disk stays what
// json.Marshal wrote, so that older and newer ferries read each other's.
func TestManifestIsWrittenAsJSONMarshalWritesIt(t *testing.T) {
	files := map[string]entry{
		"a.yaml":             {Mode: 0o444, Key: "k1", Size: 3, Sum: "ab", stamp: stamp{Ino: 1, Ctime: 2, Mtime: 3, Nlink: 1}},
		"bin/run":            {Mode: 0o555, Size: 0, Sum: "cd"},
		`q"<&>\é/日本.txt`:     {Mode: 0o444, Key: `k"<&>`, Size: 1 << 40, Sum: "ef"},
		"z/\u2028\x01tricky": {Mode: 0o444, Sum: "01"},
	}
	for i := range 300 {
		files[fmt.Sprintf("d%02d/f%03d", i%7, i)] = entry{Mode: 0o444, Key: fmt.Sprint(i), Size: int64(i), Sum: fmt.Sprintf("%064x", i)}
	}
	for _, m := range []*manifest{
		{Version: manifestVersion, Files: files, Links: map[string]string{"l": "a.yaml", "<": "&"}, Dirs: []string{"bin", "d00", "z"}},
		{Version: manifestVersion, Files: files},
		{Version: manifestVersion, Files: map[string]entry{}, Links: map[string]string{}, Dirs: []string{}},
		{Version: manifestVersion},
	} {
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := encodeManifest(&got, m); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("encodeManifest wrote\n%.300s\nwant (json.Marshal)\n%.300s", got.Bytes(), want)
		}
	}
}
