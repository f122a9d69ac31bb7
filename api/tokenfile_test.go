package api_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/api"
	"github.com/ferrysync/ferry/sync"
)

// TestTokenFileProblemsAreWarnedAtStart: a sync token file that is
// missing or empty is said at start, naming the path and never the token;
// a good one is not mentioned. (One readable by every user is warned about
// by cmd, which can name its flag.)
func TestTokenFileProblemsAreWarnedAtStart(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), mode)
		os.Chmod(p, mode)
		return p
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "missing"), "no such file"},
		{"empty", write("empty", " \n", 0o600), "is empty"},
		{"good", write("good", "s3cr3t-token\n", 0o600), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			api.Handler(fakeSyncer{}, api.Options{TokenFile: tc.path, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
			out := logs.String()
			if strings.Contains(out, "s3cr3t") {
				t.Fatalf("the token was logged: %s", out)
			}
			if tc.want == "" {
				if out != "" {
					t.Fatalf("warned about a good token file: %s", out)
				}
				return
			}
			if !strings.Contains(out, tc.want) || !strings.Contains(out, tc.path) || !strings.Contains(out, `"level":"WARN"`) {
				t.Fatalf("want a warning %q naming %s, got: %s", tc.want, tc.path, out)
			}
		})
	}
}

// fakeSyncer is a Syncer for handlers that are built but not called.
type fakeSyncer struct{}

func (fakeSyncer) Ready() (bool, string)       { return true, "ok" }
func (fakeSyncer) Healthy() (bool, string)     { return true, "ok" }
func (fakeSyncer) Status() []sync.SourceStatus { return nil }
func (fakeSyncer) Trigger(source string) error { return nil }
func (fakeSyncer) Adopt(source string) error   { return nil }
func (fakeSyncer) WaitChange(context.Context, string, string) (sync.SourceStatus, bool, error) {
	return sync.SourceStatus{}, false, nil
}
func (fakeSyncer) OpenFile(string, string) (*os.File, string, error) { return nil, "", os.ErrNotExist }
func (fakeSyncer) Events(context.Context, uint64) []sync.Event       { return nil }
