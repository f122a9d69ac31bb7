package main

import (
	"io"
	"log/slog"
	"testing"
)

// TestSourcesCarryTheirKind: each source's kind, shown by /status and the
// pull API, is the one its URL's grammar names, whether the scheme says it
// (s3://, oci://, https://) or a "kind::" prefix does.
func TestSourcesCarryTheirKind(t *testing.T) {
	want := map[string]string{
		"web":    "http",
		"bucket": "s3",
		"minio":  "s3",
		"repo":   "git",
		"image":  "oci",
		"dir":    "file",
	}
	args := []string{"--root", t.TempDir(),
		"--source", "web=https://conf.example/app.tar.gz",
		"--source", "bucket=s3://bucket/conf/?region=eu-west-1",
		"--source", "minio=s3::http://127.0.0.1:9000/bucket/conf/",
		"--source", "repo=git::https://git.example/repo.git//prod?ref=main",
		"--source", "image=oci://registry.example/conf:v1",
		"--source", "dir=file://" + t.TempDir(),
	}
	c, err := parse(cmdRun, args, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	d, err := build(c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if d.store != nil {
			d.store.Close()
		}
	}()
	if len(d.sources) != len(want) {
		t.Fatalf("%d sources built, want %d", len(d.sources), len(want))
	}
	for _, s := range d.sources {
		if s.Kind != want[s.Name] {
			t.Errorf("%s (%s): kind %q, want %q", s.Name, s.URL, s.Kind, want[s.Name])
		}
	}
}
