package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	gosync "sync"
	"testing"
)

// Binaries builds main packages for tests that run them as processes,
// each once per test binary however many tests ask. The zero value is
// ready to use; a package holds one in a variable and calls Close from
// its TestMain.
type Binaries struct {
	mu    gosync.Mutex
	dir   string
	built map[string]*binary
}

type binary struct {
	once gosync.Once
	path string
	err  error
}

// Path returns the executable of the main package pkg, an import path
// such as "github.com/ferrysync/ferry/cmd/ferry", building it on the first
// call. It is built with -trimpath and stripped (-ldflags '-s -w'), as
// make build does, so that a memory figure measured on it is the shipped
// binary's; it is named after the last element of pkg. A failed build
// fails the test, and every later one that asks.
func (b *Binaries) Path(t testing.TB, pkg string) string {
	t.Helper()
	b.mu.Lock()
	if b.built == nil {
		b.built = map[string]*binary{}
	}
	bin := b.built[pkg]
	if bin == nil {
		bin = &binary{}
		b.built[pkg] = bin
	}
	b.mu.Unlock()
	bin.once.Do(func() { bin.path, bin.err = b.build(pkg) })
	if bin.err != nil {
		t.Fatal(bin.err)
	}
	return bin.path
}

func (b *Binaries) build(pkg string) (string, error) {
	b.mu.Lock()
	if b.dir == "" {
		dir, err := os.MkdirTemp("", "ferry-test-bin-")
		if err != nil {
			b.mu.Unlock()
			return "", err
		}
		b.dir = dir
	}
	out := filepath.Join(b.dir, path.Base(pkg))
	b.mu.Unlock()
	if msg, err := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, msg)
	}
	return out, nil
}

// Close removes what Path built.
func (b *Binaries) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
	b.dir, b.built = "", nil
}

// RequireToolsEnv is set by `make test`: there a test that needs a program
// from a Debian package (promtool, nginx) fails when it is missing, since
// the Makefile installs them; a plain `go test` skips such a test instead.
const RequireToolsEnv = "FERRY_TEST_REQUIRE_TOOLS"

// Tool returns the path of the program name, from the Debian package pkg.
// When it is not on PATH the test fails under `make test` and is skipped,
// with the package to install, otherwise.
func Tool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s is not on PATH (Debian package %s; `make test` installs it)", name, pkg)
	if os.Getenv(RequireToolsEnv) != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
