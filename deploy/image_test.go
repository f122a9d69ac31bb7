package deploy

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The image copies what 'make build' produces into distroless/static, which
// has no libc: the binary must be static (what ldd calls "not a dynamic
// executable": no interpreter, no needed libraries).
func TestMakeBuildIsStatic(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "ferry")
	out, err := exec.Command("make", "-C", "..", "build", "BIN="+bin).CombinedOutput()
	if err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the binary has an ELF interpreter: it is dynamically linked")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Fatalf("the binary needs %v", libs)
	}
	version, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(version), "ferry ") || strings.TrimSpace(string(version)) == "ferry dev" {
		t.Fatalf("version %q, %v: want the stamp from make build's -ldflags", version, err)
	}
}

func TestDockerfileShipsMakeBuild(t *testing.T) {
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(data)
	for _, want := range []string{"RUN make build", "COPY --from=build /src/bin/ferry /ferry",
		"FROM gcr.io/distroless/static-debian12:nonroot", "USER 65532:65532", `ENTRYPOINT ["/ferry"]`} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}
