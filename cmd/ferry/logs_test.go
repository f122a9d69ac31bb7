package main

import (
	"context"
	"time"

	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/internal/testkit"
	"github.com/ferrysync/ferry/signal"

	"github.com/ferrysync/ferry/internal/localproc"
)

// TestLogLinesAreGolden: what an operator reads at 3 a.m., in both
// formats: a publish and a failed sync of `ferry once`. Times, durations,
// attempt counts, paths and ports vary from run to run and are masked; the
// rest (keys, order, readable durations, short revisions in text, the
// source on every line about one) is the contract. After a change on
// purpose: go test ./cmd/ferry -run TestLogLinesAreGolden -update.
func TestLogLinesAreGolden(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "app.yaml"), []byte("greeting: hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	closed, err := localproc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	noEnv := func(string) (string, bool) { return "", false }
	mask := []struct {
		re   *regexp.Regexp
		with string
	}{
		{regexp.MustCompile(regexp.QuoteMeta(dir)), "DIR"},
		{regexp.MustCompile(regexp.QuoteMeta(closed)), "127.0.0.1:PORT"},
		{regexp.MustCompile(`time=\S+`), "time=T"},
		{regexp.MustCompile(`"time":"[^"]*"`), `"time":"T"`},
		{regexp.MustCompile(`\b(?:\d+(?:\.\d+)?(?:ns|µs|ms|h|m|s))+\b`), "D"},
		{regexp.MustCompile(`\b\d+ attempts?\b`), "N attempts"},
	}
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var out strings.Builder
			for _, args := range [][]string{
				{"once", "--source", "app=" + src, "--root", filepath.Join(dir, "root-"+format)},
				{"once", "--source", "app=http://" + closed + "/config.tar.gz", "--root", filepath.Join(dir, "fail-"+format), "--once-timeout", "300ms"},
			} {
				var stdout, stderr strings.Builder
				run(context.Background(), append(args, "--log-format", format), noEnv, &stdout, &stderr)
				out.WriteString(stderr.String())
			}
			out.WriteString(notifyRetryLine(t, format, closed))
			got := out.String()
			for _, m := range mask {
				got = m.re.ReplaceAllString(got, m.with)
			}
			golden := filepath.Join("testdata", "logs-"+format+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("the log lines differ from %s (run with -update if the change is meant):\n%s", golden, lineDiff(string(want), got))
			}
		})
	}
}

// notifyRetryLine is the first line a failing notify writes, through the
// logger run gives the notifiers, in format.
func notifyRetryLine(t *testing.T, format, closed string) string {
	t.Helper()
	var buf testkit.LogBuffer
	log, err := newLogger(&options{logFormat: format, logLevel: "info"}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	n, err := signal.New(signal.Options{URLs: []string{"http://" + closed + "/-/reload"}, Method: signal.DefaultMethod, Timeout: time.Second, MaxInterval: time.Hour,
		InitialInterval: time.Hour, Logger: log}) // one attempt, then a long wait
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	n.Notify(signal.Change{Source: "app", Revision: "ac440780e7dabac7d0752887f96627bdf1943bf6b9ef55aab07e655010f549dc", Path: "/srv/config/app"})
	testkit.Eventually(t, 10*time.Second, "the first failure logged", func() bool { return strings.Contains(buf.String(), "will retry") })
	cancel()
	<-done
	return buf.String()
}
