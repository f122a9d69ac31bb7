package sync

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	gosync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/fetch"
)

// crashHelperEnv makes the test binary a publisher that runs until killed.
const (
	crashHelperEnv = "FERRY_TEST_CRASH_PUBLISHER_ROOT"
	crashModeEnv   = "FERRY_TEST_CRASH_PUBLISH_MODE"
)

// crashFiles is how many files each revision of the crash test writes, all
// with the revision's token.
const crashFiles = 200

func TestMain(m *testing.M) {
	if root := os.Getenv(crashHelperEnv); root != "" {
		crashPublisher(root)
		return
	}
	os.Exit(m.Run())
}

// crashPublisher publishes revisions of a tree forever, with GC, the way the
// daemon does. The parent test kills it with SIGKILL at random moments.
func crashPublisher(root string) {
	s, err := OpenStore(root, fetch.Limits{})
	if err == nil {
		err = s.SetPublishMode("c", PublishMode(os.Getenv(crashModeEnv)))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	for i := 0; ; i++ {
		rev, _ := s.Current("c")
		token := fmt.Sprintf("%d-%d-%d", os.Getpid(), i, rand.Int())
		st := s.Begin("c", rev)
		for f := range crashFiles {
			// Half the files keep their content, so reuse by hard link is
			// exercised too.
			content, key := token, token
			if f%2 == 0 {
				content, key = "stable", "stable"
			}
			if err := st.WriteFile(fmt.Sprintf("d%d/f%d", f%7, f), 0o644, key, opener(content+"\n"+strconv.Itoa(f))); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(3)
			}
		}
		if err := st.Publish("rev-" + token); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		s.GC("c", 2)
	}
}

// checkComplete asserts that ROOT/c, if present, is a whole revision: every
// file there, and every varying file carrying the token in the link target.
func checkComplete(t *testing.T, root string) bool {
	t.Helper()
	target, err := os.Readlink(filepath.Join(root, "c"))
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	var token string
	if errors.Is(err, syscall.EINVAL) {
		// Exchange mode: a directory. Its revision is the token its first
		// varying file carries; every other one must carry it too.
		data, err := os.ReadFile(filepath.Join(root, "c", "d1/f1"))
		if err != nil {
			t.Fatalf("published directory is incomplete: %v", err)
		}
		token, _, _ = strings.Cut(string(data), "\n")
		target = "directory with token " + token
	} else if err != nil {
		t.Fatal(err)
	} else {
		token = strings.TrimPrefix(filepath.Base(target), "rev-")
	}
	for f := range crashFiles {
		data, err := os.ReadFile(filepath.Join(root, "c", fmt.Sprintf("d%d/f%d", f%7, f)))
		if err != nil {
			t.Fatalf("published revision %s is incomplete: %v", target, err)
		}
		want := token
		if f%2 == 0 {
			want = "stable"
		}
		if string(data) != want+"\n"+strconv.Itoa(f) {
			t.Fatalf("published revision %s has file f%d = %q, want token %q", target, f, data, want)
		}
	}
	return true
}

func waitForLink(t *testing.T, root string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Lstat(filepath.Join(root, "c")); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the publisher published nothing within a minute")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPublishSurvivesSIGKILLAtRandomMoments(t *testing.T) {
	for _, mode := range []PublishMode{PublishSymlink, PublishExchange} {
		t.Run(string(mode), func(t *testing.T) { testPublishSurvivesSIGKILL(t, mode) })
	}
}

func testPublishSurvivesSIGKILL(t *testing.T, mode PublishMode) {
	root := t.TempDir()
	published, midStage := 0, 0
	for i := range 20 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashHelperEnv+"="+root, crashModeEnv+"="+string(mode))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			// However loaded the machine, strike the first time only once
			// something is published: the later kills then always find a
			// revision to check.
			waitForLink(t, root)
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("kill %d: publisher ended on its own: %v\n%s", i, err, stderr.String())
		}
		if checkComplete(t, root) {
			published++
		}
		if m, _ := filepath.Glob(filepath.Join(root, ".ferry/c/.stage-*")); len(m) > 0 {
			midStage++
		}
		// The next start cleans what the killed one left.
		s, err := OpenStore(root, fetch.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		for _, pattern := range []string{".ferry/c/.stage-*", ".ferry/c/.link-*", ".ferry/c/.meta/.tmp-*", ".ferry/c/.mirror-*", ".ferry/c/.tmp-*"} {
			if m, _ := filepath.Glob(filepath.Join(root, pattern)); len(m) > 0 {
				t.Fatalf("kill %d: leftover %v after restart", i, m)
			}
		}
	}
	if published != 20 {
		t.Fatalf("only %d of 20 kills found a published revision after the first publish", published)
	}
	// And a publish after all that succeeds.
	s, err := OpenStore(root, fetch.Limits{})
	if err == nil {
		err = s.SetPublishMode("c", mode)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	publishFiles(t, s, "c", "final", map[string]string{"f": "ok"})
	if cur, err := s.Current("c"); err != nil || cur != "final" {
		t.Fatalf("after the kills, Current = %q, %v", cur, err)
	}
	t.Logf("20 kills, every published revision complete; %d struck mid-stage", midStage)
}

func TestPublishNeverExposesPartialTree(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	link := filepath.Join(s.Root(), "c")
	const revisions = 200
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var (
		wg                         gosync.WaitGroup
		reads, mismatches, readErr int
		firstErr                   error
	)
	published := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-published
		for ctx.Err() == nil {
			// An app reads a consistent pair by resolving the link once.
			// (No GC here: a reader descheduled for longer than --keep
			// publishes may lose its old tree, by design; this test is
			// about the swap.)
			dir, err := filepath.EvalSymlinks(link)
			if err == nil {
				var a, b []byte
				a, err = os.ReadFile(filepath.Join(dir, "a"))
				if err == nil {
					b, err = os.ReadFile(filepath.Join(dir, "sub/b"))
				}
				if err == nil && string(a) != string(b) {
					mismatches++
				}
			}
			if err != nil {
				readErr++
				if firstErr == nil {
					firstErr = err
				}
			}
			reads++
		}
	}()
	for i := range revisions {
		token := fmt.Sprintf("token-%d", i)
		publishFiles(t, s, "c", fmt.Sprintf("r%03d", i), map[string]string{"a": token, "sub/b": token, "stable": "same"})
		if i == 0 {
			close(published)
		}
	}
	cancel()
	wg.Wait()
	if mismatches != 0 || readErr != 0 {
		t.Fatalf("%d reads: %d mismatched pairs, %d read errors (first: %v)", reads, mismatches, readErr, firstErr)
	}
	if reads < revisions {
		t.Fatalf("only %d reads during %d publishes: the reader did not race the writer", reads, revisions)
	}
	t.Logf("%d consistent reads during %d publishes", reads, revisions)
}
