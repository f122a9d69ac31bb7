package e2e

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferrysync/ferry/internal/signtest"
)

// TestOnceRefusesUnsignedConfig plays a one-shot init container with
// --http-verify-keys-file: a bundle signed by a trusted key is published
// and once exits 0; a bundle signed by another key makes once exit 1 at
// once, naming the key, and publishes nothing, so the pod does not start
// on config nobody trusted.
func TestOnceRefusesUnsignedConfig(t *testing.T) {
	t.Parallel()
	trusted, stranger := signtest.NewGPG(t), signtest.NewGPG(t)
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.asc")
	if err := os.WriteFile(keys, []byte(trusted.Public), 0o644); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "bundle.tar.gz")
	if err := os.WriteFile(bundle, tarGz(t, map[string]string{"app.yaml": "signed"}), 0o644); err != nil {
		t.Fatal(err)
	}
	var sig atomic.Pointer[[]byte]
	srv := quietServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".asc") {
			w.Write(*sig.Load())
			return
		}
		http.ServeFile(w, r, bundle)
	}))
	defer srv.Close()
	source := srv.URL + "/bundle.tar.gz?signature=" + url.QueryEscape(srv.URL+"/bundle.tar.gz.asc")

	stray := stranger.DetachSign(bundle)
	sig.Store(&stray)
	root := filepath.Join(dir, "refused")
	code, _, stderr := runToEnd(t, "once", "--source", source, "--root", root, "--http-verify-keys-file", keys, "--http-addr", "")
	if code != 1 || !strings.Contains(stderr, "openpgp:"+stranger.Fingerprint+", which is not in the keys file") {
		t.Fatalf("signed by a stranger: exit %d, want 1 naming the key\n%s", code, tail(stderr, 2000))
	}
	if _, err := os.Lstat(filepath.Join(root, "current")); !os.IsNotExist(err) {
		t.Fatalf("something was published: %v", err)
	}

	good := trusted.DetachSign(bundle)
	sig.Store(&good)
	root = filepath.Join(dir, "published")
	code, _, stderr = runToEnd(t, "once", "--source", source, "--root", root, "--http-verify-keys-file", keys, "--http-addr", "")
	if code != 0 {
		t.Fatalf("signed by a trusted key: exit %d\n%s", code, tail(stderr, 2000))
	}
	if b, err := os.ReadFile(filepath.Join(root, "current", "app.yaml")); err != nil || string(b) != "signed" {
		t.Fatalf("published app.yaml: %q, %v", b, err)
	}
}
