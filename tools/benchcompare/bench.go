package main

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/ferrysync/ferry/internal/gittest"
)

// The generated repositories, served as NAME.git. Each is one commit; the
// files are the same shape in all three (10,400 bytes, one in five random
// bytes, the rest YAML-like text), so only the count differs.
var repoTrees = map[string]gittest.Tree{
	// 50 files in 5 directories, 0.5 MB: a typical config repository.
	"small": {Files: 50, Dirs: 5, FileSize: 10_400, RandomPercent: 20},
	// 5,000 files in 500 directories, 52 MB: the large one of issue 19.
	"large": {Files: 5000, Dirs: 500, FileSize: 10_400, RandomPercent: 20},
	// The small tree and 10,000 tags: a monorepo's ref count, for polls.
	"refs": {Files: 50, Dirs: 5, FileSize: 10_400, RandomPercent: 20, Refs: 10_000},
}

// bench is one run of the tool: its options, its scratch directory, the
// origin serving the repositories, and the output.
type bench struct {
	options
	measurer string // tools/measure, built into scratch
	scratch  string // everything written goes under here
	repos    string // the origin's base: NAME.git for each built repository
	built    map[string]bool
	origin   *origin
	out      io.Writer
}

func newBench(ctx context.Context, o options, out io.Writer) (*bench, error) {
	ferry, err := exec.LookPath(o.ferry)
	if err != nil {
		return nil, fmt.Errorf("the ferry binary (make build): %w", err)
	}
	if o.ferry, err = filepath.Abs(ferry); err != nil {
		return nil, err
	}
	scratch, err := os.MkdirTemp(o.workDir, "ferry-bench-")
	if err != nil {
		return nil, err
	}
	b := &bench{options: o, scratch: scratch, repos: filepath.Join(scratch, "repos"), built: map[string]bool{}, out: out}
	if err = os.Mkdir(b.repos, 0o755); err == nil {
		b.measurer, err = buildMeasurer(ctx, scratch)
	}
	if err == nil {
		b.origin, err = startOrigin(b.repos)
	}
	if err != nil {
		os.RemoveAll(scratch)
		return nil, err
	}
	return b, nil
}

// close stops the origin and removes the scratch directory.
func (b *bench) close() {
	b.origin.close()
	os.RemoveAll(b.scratch)
}

// repo builds the repository name on first use and returns its tree and
// its URL at the origin.
func (b *bench) repo(ctx context.Context, name string) (gittest.Tree, string, error) {
	t := repoTrees[name]
	url := b.origin.url + "/" + name + ".git"
	if b.built[name] {
		return t, url, nil
	}
	start := time.Now()
	if err := t.Build(ctx, filepath.Join(b.repos, name+".git"), b.gitEnv()); err != nil {
		return t, "", err
	}
	b.built[name] = true
	fmt.Fprintf(b.out, "repository %s.git: %s (built in %s)\n", name, describeTree(t), time.Since(start).Round(time.Millisecond))
	return t, url, nil
}

func describeTree(t gittest.Tree) string {
	s := fmt.Sprintf("%d files of %d bytes (%.1f MB, %d%% random bytes) in %d directories", t.Files, t.FileSize, float64(t.Size())/1e6, t.RandomPercent, t.Dirs)
	if t.Refs > 0 {
		s += fmt.Sprintf(", main and %d tags", t.Refs)
	}
	return s
}

// gitEnv is the environment of every git process: no system or user
// configuration (HOME is an empty directory of the scratch's).
func (b *bench) gitEnv() []string { return gittest.Env(filepath.Join(b.scratch, "home")) }

// ferryEnv is the environment of every ferry process: none of the
// caller's FERRY_ variables but those naming profiles, which a ferry built
// with -tags pprof writes (each run overwrites the last's), the S3
// concurrency, and the Go runtime's settings, to try them.
func (b *bench) ferryEnv() []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + filepath.Join(b.scratch, "home")}
	for _, k := range []string{"FERRY_CPUPROFILE", "FERRY_BLOCKPROFILE", "FERRY_MEMPROFILE", "FERRY_S3_CONCURRENCY", "GODEBUG", "GOGC", "GOMEMLIMIT"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// header prints what the figures depend on: versions, machine, disk and
// method.
func (b *bench) header() {
	ferryVersion := "unknown"
	if out, err := exec.Command(b.ferry, "version").Output(); err == nil {
		ferryVersion = strings.TrimSpace(string(out))
	}
	if info, err := buildinfo.ReadFile(b.ferry); err == nil {
		ferryVersion += ", built with " + info.GoVersion
	}
	gitVersion, _ := exec.Command("git", "version").Output()
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	w := b.out
	fmt.Fprintf(w, "ferry bench-compare, %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "ferry     %s: %s\n", b.ferry, ferryVersion)
	fmt.Fprintf(w, "git       %s (the client, and the server: git http-backend behind net/http/cgi at %s)\n", strings.TrimSpace(string(gitVersion)), b.origin.url)
	var memKB float64
	fmt.Sscanf(procField("/proc/meminfo", "MemTotal"), "%g", &memKB)
	fmt.Fprintf(w, "machine   %d CPUs (%s), %.1f GiB, Linux %s, this tool built with %s\n",
		runtime.NumCPU(), procField("/proc/cpuinfo", "model name"), memKB/(1<<20), strings.TrimSpace(string(kernel)), runtime.Version())
	mount, dev, fstype := mountOf(b.scratch)
	fmt.Fprintf(w, "scratch   %s on %s\n", b.scratch, mount)
	if fstype == "ext4" && !hasJournal(dev) {
		fmt.Fprintf(w, "          ext4 without a journal: creating a file scans past every inode freed in the last 5 s\n")
		fmt.Fprintf(w, "          (300 s while its inode table block is unwritten), for both tools; kernel times then\n")
		fmt.Fprintf(w, "          measure that scan as much as the tools (README, Development: a journaled volume)\n")
	}
	fmt.Fprintf(w, "before    %s (the machine is shared: see each scenario's line too)\n", machineLoad())
	fmt.Fprintf(w, "method    %d runs after %d warm-up; ferry and git back to back, first one then the other in turn;\n", b.runs, b.warmups)
	fmt.Fprintf(w, "          each run into a root of its own, all removed after the last run; sync(2) before each run.\n")
	fmt.Fprintf(w, "          Cells: median [min-max]. ferry/git: median [min-max] of the runs' ratios, each of two\n")
	fmt.Fprintf(w, "          commands run back to back (a load that comes and goes moves it less than the cells).\n")
}

// procField is the value of the first "name: value" line of a /proc file.
func procField(file, name string) string {
	f, err := os.Open(file)
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// mountOf describes the filesystem holding dir, from /proc/self/mounts:
// its type and options (discard, for one, slows removing files).
func mountOf(dir string) (desc, dev, fstype string) {
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "?", "", ""
	}
	best := ""
	desc = "?"
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		mnt := f[1]
		if (dir == mnt || strings.HasPrefix(dir, strings.TrimSuffix(mnt, "/")+"/")) && len(mnt) >= len(best) {
			best, desc, dev, fstype = mnt, fmt.Sprintf("%s %s (%s)", f[2], mnt, f[3]), f[0], f[2]
		}
	}
	return desc, dev, fstype
}

// hasJournal reports whether the ext4 filesystem on dev has a journal:
// jbd2 lists the devices it journals as NAME-INODE.
func hasJournal(dev string) bool {
	entries, err := os.ReadDir("/proc/fs/jbd2")
	if err != nil {
		return true // cannot tell: say nothing
	}
	name := filepath.Base(dev)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), name+"-") {
			return true
		}
	}
	return false
}

// machineLoad says how busy the machine was over the last minute, this
// program included: with other users, figures are noisier.
func machineLoad() string {
	var load string
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		load, _, _ = strings.Cut(string(data), " ")
	}
	s := "over the last minute: load " + load
	for _, r := range []string{"cpu", "io"} {
		if v := pressure(r); v != "" {
			s += fmt.Sprintf(", %s pressure %s%%", r, v)
		}
	}
	return s
}

// pressure is the share of the last minute some task waited for resource
// r (/proc/pressure/r, "some avg60"), or "" where the kernel does not say.
func pressure(r string) string {
	data, err := os.ReadFile("/proc/pressure/" + r)
	if err != nil {
		return ""
	}
	for _, f := range strings.Fields(strings.SplitN(string(data), "\n", 2)[0]) {
		if v, ok := strings.CutPrefix(f, "avg60="); ok {
			return v
		}
	}
	return ""
}
