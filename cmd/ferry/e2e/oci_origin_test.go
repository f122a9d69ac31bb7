package e2e

import (
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ociPadFiles lengthens each generation of the OCI origin.
const ociPadFiles = 400

// ociOrigin is a registry (go-containerregistry's, in process) holding
// each generation as an OCI artifact of one tar+gzip layer, pushed under
// the same tag: what a CI job that runs flux push artifact does.
type ociOrigin struct {
	srv  *httptest.Server
	host string
}

func newOCIOrigin(t testing.TB) *ociOrigin {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return &ociOrigin{srv: srv, host: strings.TrimPrefix(srv.URL, "http://")}
}

func (o *ociOrigin) source(name string) []string {
	return []string{"--source", name + "=oci::http://" + o.host + "/config:live"}
}

func (o *ociOrigin) set(t testing.TB, gen int, extra map[string]string) {
	t.Helper()
	// A registry answers fast and a small layer expands in no time: with
	// more files, a publish lasts long enough for the chaos test's kills
	// to land in it too, not only between polls.
	files := generation(gen, extra)
	for i := range ociPadFiles {
		if _, ok := files[fmt.Sprintf("pad/p%03d", i)]; !ok {
			files[fmt.Sprintf("pad/p%03d", i)] = fmt.Sprintf("gen %d pad %d\n", gen, i)
		}
	}
	layer := static.NewLayer(tarGz(t, files), types.OCILayer)
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{Layer: layer, MediaType: types.OCILayer})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(o.host+"/config:live", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push generation %d: %v", gen, err)
	}
}
