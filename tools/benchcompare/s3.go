package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ferrysync/ferry/internal/localproc"
)

// The S3 prefix issue 19 measures: 2,000 objects, 51 MB, 20% of them
// random bytes, in 20 directories.
const (
	s3Objects    = 2000
	s3ObjectSize = 25_500
	s3Bucket     = "bench"
	s3Access     = "benchaccess"
	s3Secret     = "benchsecret-benchsecret"
)

// s3 compares a cold sync of an S3 prefix served by versitygw on loopback:
// ferry once against rclone sync into a fresh directory and a symlink
// swap, each into a root of its own.
func (b *bench) s3(ctx context.Context, dir string) error {
	if b.versitygw == "" {
		return errors.New("needs -versitygw (make bench-compare builds it)")
	}
	rclone, err := exec.LookPath("rclone")
	if err != nil {
		return fmt.Errorf("needs rclone (Debian package rclone; make bench-compare installs it): %w", err)
	}
	endpoint, stop, err := startVersitygw(ctx, b.versitygw, filepath.Join(dir, "s3"))
	if err != nil {
		return err
	}
	defer stop()

	env := append(b.ferryEnv(),
		"RCLONE_CONFIG="+filepath.Join(dir, "rclone.conf"), // none: the remote is all in the environment
		"RCLONE_CONFIG_BENCH_TYPE=s3", "RCLONE_CONFIG_BENCH_PROVIDER=Other",
		"RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="+s3Access, "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="+s3Secret,
		"RCLONE_CONFIG_BENCH_ENDPOINT="+endpoint, "RCLONE_CONFIG_BENCH_REGION=us-east-1")
	if err := fillBucket(ctx, rclone, env, filepath.Join(dir, "upload")); err != nil {
		return err
	}
	keys := filepath.Join(dir, "keys")
	if err := os.Mkdir(keys, 0o755); err != nil {
		return err
	}
	for name, v := range map[string]string{"access": s3Access, "secret": s3Secret} {
		if err := os.WriteFile(filepath.Join(keys, name), []byte(v), 0o600); err != nil {
			return err
		}
	}
	url := "s3::" + endpoint + "/" + s3Bucket + "/data/"
	ferryJob := func(i int) job {
		root := filepath.Join(dir, fmt.Sprintf("ferry-%d", i))
		return job{
			Argv: []string{b.ferry, "once", "--source", url, "--root", root, "--log-format", "json",
				"--s3-access-key-file", filepath.Join(keys, "access"), "--s3-secret-key-file", filepath.Join(keys, "secret"), "--s3-no-imds"},
			Env: b.ferryEnv(),
			Log: root + ".log",
		}
	}
	rcloneJob := func(i int) job {
		root := filepath.Join(dir, fmt.Sprintf("rclone-%d", i))
		return job{
			Argv: []string{rclone, "sync", "bench:" + s3Bucket + "/data", filepath.Join(root, "rev")},
			Env:  env,
			Log:  root + ".log",
			Link: filepath.Join(root, "current"), LinkTarget: "rev",
		}
	}
	ferry, other, err := b.backToBack(ctx,
		func(i int) (sample, error) { return b.measure(ctx, ferryJob(i)) },
		func(i int) (sample, error) { return b.measure(ctx, rcloneJob(i)) })
	if err != nil {
		return err
	}
	for i := range b.warmups + b.runs {
		for _, link := range []string{filepath.Join(dir, fmt.Sprintf("ferry-%d", i), "current"), filepath.Join(dir, fmt.Sprintf("rclone-%d", i), "current")} {
			if n, err := countFiles(link); err != nil || n != s3Objects {
				return fmt.Errorf("%s: %d files (%v), want %d", link, n, err, s3Objects)
			}
		}
	}
	fmt.Fprintf(b.out, "prefix s3://%s/data/: %d objects of %d bytes (%.1f MB, 20%% random bytes) in 20 directories, served by versitygw (posix) at %s\n", s3Bucket, s3Objects, s3ObjectSize, float64(s3Objects*s3ObjectSize)/1e6, endpoint)
	fmt.Fprintf(b.out, "ferry:  %s\nrclone: %s\n", ferryJob(0).line(), rcloneJob(0).line())
	t := newTable("", "ferry once", "rclone sync + symlink", "ferry/rclone")
	t.compareRows(ferry, other, false)
	t.print(b.out)
	fmt.Fprintln(b.out, "rclone runs with its defaults (4 transfers, 8 checkers), ferry with its own (--s3-concurrency); both as their users run them.")
	return nil
}

// fillBucket writes the prefix's files under dir and uploads them with
// rclone.
func fillBucket(ctx context.Context, rclone string, env []string, dir string) error {
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, s3ObjectSize)
	for i := range s3Objects {
		if i%5 == 0 {
			for k := range buf {
				buf[k] = byte(r.Uint32())
			}
		} else {
			for k := range buf {
				buf[k] = "abcdefgh: 0123456789\n"[r.IntN(21)]
			}
		}
		name := filepath.Join(dir, fmt.Sprintf("d%02d", i%20), fmt.Sprintf("f%04d.conf", i))
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(name, buf, 0o644); err != nil {
			return err
		}
	}
	for _, args := range [][]string{{"mkdir", "bench:" + s3Bucket}, {"copy", dir, "bench:" + s3Bucket + "/data"}} {
		cmd := exec.CommandContext(ctx, rclone, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("rclone %v: %w: %s", args, err, out)
		}
	}
	return os.RemoveAll(dir)
}

// startVersitygw serves dir as S3 on a free loopback port.
func startVersitygw(ctx context.Context, bin, dir string) (endpoint string, stop func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	addr, err := localproc.FreeAddr()
	if err != nil {
		return "", nil, err
	}
	log, err := os.Create(dir + ".log")
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "--access", s3Access, "--secret", s3Secret, "--port", addr, "--quiet", "posix", dir)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir} // versitygw reads many VGW_* variables
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return "", nil, err
	}
	stop = func() { cmd.Process.Kill(); cmd.Wait(); log.Close() }
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return "http://" + addr, stop, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			return "", nil, fmt.Errorf("versitygw not listening on %s: %v (log: %s)", addr, err, tail(log.Name(), 5))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
