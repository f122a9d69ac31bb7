package gittest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strconv"
)

// Tree is the content of a generated repository: one commit on main
// holding Files files of FileSize bytes each, file i in directory i mod
// Dirs. RandomPercent of the files (spread evenly: with 20, every fifth)
// are random bytes that no compression shrinks; the others are YAML-like
// text. Refs lightweight tags point at the commit besides main. The same
// Tree always gives the same repository, down to the commit SHA, so
// figures taken on different days compare.
type Tree struct {
	Files, Dirs, FileSize int
	RandomPercent         int
	Refs                  int
}

// Size is the bytes of all files together.
func (t Tree) Size() int64 { return int64(t.Files) * int64(t.FileSize) }

// Name is the path of file i.
func (t Tree) Name(i int) string {
	return fmt.Sprintf("dir%0*d/file%0*d.yaml", digits(t.Dirs-1), i%t.Dirs, digits(t.Files-1), i)
}

// RefName is the name of extra ref i.
func (t Tree) RefName(i int) string { return fmt.Sprintf("refs/tags/t%0*d", digits(t.Refs-1), i) }

func digits(n int) int { return len(strconv.Itoa(max(n, 0))) }

// random says whether file i is random bytes.
func (t Tree) random(i int) bool { return (i+1)*t.RandomPercent/100 > i*t.RandomPercent/100 }

// Build creates the bare repository dir holding t, with git fast-import
// straight into a pack: the content is streamed, so neither time nor the
// caller's memory grows with more than one file. env is the environment
// of the git processes (see Env).
func (t Tree) Build(ctx context.Context, dir string, env []string) error {
	if err := runGit(ctx, env, "", "init", "-q", "--bare", "-b", "main", dir); err != nil {
		return err
	}
	// Packed, as a git host keeps objects, however few: fast-import
	// would leave fewer than 100 loose, which costs git upload-pack four
	// times the CPU to serve (100 ms a clone of 50 files here).
	if err := FastImport(ctx, env, dir, t.write, "-c", "fastimport.unpackLimit=0"); err != nil {
		return err
	}
	if t.Refs == 0 {
		return nil
	}
	// As a git host keeps them: in packed-refs, not one file a ref.
	return runGit(ctx, env, dir, "pack-refs", "--all")
}

func runGit(ctx context.Context, env []string, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env, cmd.Dir = env, dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %w: %s", args[0], err, out)
	}
	return nil
}

// write is t as a fast-import stream: the files as blobs :1 to :Files,
// the commit as :Files+1, then the tags.
func (t Tree) write(w *bufio.Writer) {
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, t.FileSize)
	for i := range t.Files {
		if t.random(i) {
			for j := range buf {
				buf[j] = byte(r.Uint32())
			}
		} else {
			FillText(r, buf)
		}
		fmt.Fprintf(w, "blob\nmark :%d\ndata %d\n", i+1, len(buf))
		w.Write(buf)
		w.WriteString("\n")
	}
	commit := t.Files + 1
	fmt.Fprintf(w, "commit refs/heads/main\nmark :%d\ncommitter bench <bench@ferry.invalid> 1700000000 +0000\ndata 5\nbench\n", commit)
	for i := range t.Files {
		fmt.Fprintf(w, "M 100644 :%d %s\n", i+1, t.Name(i))
	}
	w.WriteString("\n")
	for i := range t.Refs {
		fmt.Fprintf(w, "reset %s\nfrom :%d\n\n", t.RefName(i), commit)
	}
}

// words make up the text files: keys and values of a config file.
var words = [...]string{
	"replicas", "image", "port", "timeout", "enabled", "region", "limit", "cache",
	"backend", "frontend", "service", "route", "weight", "retries", "level", "queue",
	"cluster", "zone", "primary", "replica", "secret", "volume", "mount", "probe",
	"ingress", "egress", "policy", "window", "bucket", "shard", "tenant", "feature",
}

// Blobs returns n files such as a pack of the benchmark repository holds:
// about 10 KB each of config-file text, every fifth random bytes; the same
// n files at each call.
func Blobs(n int) [][]byte {
	r := rand.New(rand.NewPCG(7, 8))
	blobs := make([][]byte, n)
	for i := range blobs {
		b := make([]byte, 9000+r.IntN(2000))
		if i%5 == 4 {
			for j := range b {
				b[j] = byte(r.Uint32())
			}
		} else {
			FillText(r, b)
		}
		blobs[i] = b
	}
	return blobs
}

// FillText fills buf with lines such as "route_probe: shard-48213", cut
// at len(buf): text that deflate shrinks about 3:1, as config files do.
func FillText(r *rand.Rand, buf []byte) {
	var line []byte
	for off := 0; off < len(buf); {
		line = fmt.Appendf(line[:0], "%s_%s: %s-%d\n",
			words[r.IntN(len(words))], words[r.IntN(len(words))], words[r.IntN(len(words))], r.IntN(100_000))
		off += copy(buf[off:], line)
	}
}

// FastImport runs git fast-import in the repository dir on the stream
// write writes; args go before "fast-import" (git -c options). Large
// repositories go straight into a pack, without a work tree.
func FastImport(ctx context.Context, env []string, dir string, write func(w *bufio.Writer), args ...string) error {
	cmd := exec.CommandContext(ctx, "git", append(args, "fast-import", "--quiet")...)
	cmd.Env, cmd.Dir = env, dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("git fast-import: %w", err)
	}
	w := bufio.NewWriterSize(stdin, 1<<20)
	write(w)
	werr := w.Flush()
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git fast-import: %w: %s", err, out.Bytes())
	}
	return werr
}
