package http_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ferrysync/ferry/fetch"
	fhttp "github.com/ferrysync/ferry/fetch/http"
	"github.com/ferrysync/ferry/internal/sourcetest"
)

// nobody is the UID (and GID) an app of another user runs as in the test.
const nobody = 65534

func TestPublishedFilesAreReadableByAnotherUserWhateverTheUmask(t *testing.T) {
	for _, tc := range []struct {
		name, path, published string
		body                  func(t *testing.T) []byte
	}{
		{"File", "/app.conf", "app.conf", func(*testing.T) []byte { return []byte("good\n") }},
		{"Archive", "/b.tar.gz", "conf/app.yaml", func(t *testing.T) []byte {
			return tarOf(t, true, file("conf/app.yaml", "good\n"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t, false)
			o.set(tc.body(t))
			h := newVolume(t, fetch.Limits{}) // a fresh root: ROOT/.ferry/c does not exist
			// The strictest umask a sidecar may run with; ROOT itself is
			// the operator's and was made before.
			old := syscall.Umask(0o077)
			defer syscall.Umask(old)
			sourcetest.MustSync(t, h.store, "c", h.source(t, o.url(tc.path), fhttp.Options{}))

			// Every directory from ROOT down to the file lets others
			// through, and the file lets them read.
			link, err := filepath.EvalSymlinks(h.store.LinkPath("c"))
			if err != nil {
				t.Fatal(err)
			}
			target := filepath.Join(link, filepath.FromSlash(tc.published))
			rel, err := filepath.Rel(h.root, target)
			if err != nil {
				t.Fatal(err)
			}
			p := h.root
			for _, c := range append([]string{"."}, strings.Split(rel, string(filepath.Separator))...) {
				p = filepath.Join(p, c)
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				want := os.FileMode(0o005) // r-x for others
				if !fi.IsDir() {
					want = 0o004
				}
				if fi.Mode().Perm()&want != want {
					t.Errorf("%s is %v: another user cannot read the published file", p, fi.Mode().Perm())
				}
			}
			if fi, err := os.Stat(h.stateDir); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("state directory: %v, %v; want it private (0700)", fi.Mode(), err)
			}

			if os.Geteuid() != 0 {
				t.Skip("not root: the file is not read as another user")
			}
			// The test's own temporary directories are 0700: open them.
			for _, d := range []string{h.base, filepath.Dir(h.base)} {
				if err := os.Chmod(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			cat := exec.Command("cat", filepath.Join(h.store.LinkPath("c"), tc.published))
			cat.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
			out, err := cat.CombinedOutput()
			if err != nil || string(out) != "good\n" {
				t.Fatalf("read as uid %d: %v: %s", nobody, err, out)
			}
		})
	}
}
