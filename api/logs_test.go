package api_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/api"
)

// TestRefusedRequestsAreLoggedWithACount: a flood of refused POST /sync
// (here from a web page of another origin, over real connections) writes
// a bounded number of lines, each saying how many were refused since the
// previous one, and the counts add up once the server stops.
func TestRefusedRequestsAreLoggedWithACount(t *testing.T) {
	const posts, workers = 2000, 8
	var logs bytes.Buffer
	addr, stop := serveUntil(t, fakeSyncer{}, api.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	var refused atomic.Int64
	var wg gosync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			for range posts / workers {
				req, _ := http.NewRequest("POST", "http://"+addr+api.SyncPath, nil)
				req.Header.Set("Origin", "https://attacker.example")
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusForbidden {
					refused.Add(1)
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	stop()
	if refused.Load() != posts {
		t.Fatalf("%d of %d POST /sync refused", refused.Load(), posts)
	}
	lines, total := countedLines(t, &logs, "refused POST /sync")
	// One line at the first refusal, one per 10 s of flood, one at stop.
	if max := 2 + int(took/(10*time.Second)); lines < 1 || lines > max {
		t.Fatalf("%d refusals in %s logged %d lines, want 1 to %d:\n%s", posts, took, lines, max, logs.String())
	}
	if total != posts {
		t.Fatalf("the lines count %d refusals, want %d:\n%s", total, posts, logs.String())
	}
	t.Logf("%d refusals in %s: %d log lines", posts, took.Round(time.Millisecond), lines)
}

// TestServerErrorsGoToTheLogWithACount: what net/http itself reports (here
// a panicking handler, recovered by net/http) is a slog line at ERROR,
// rate-limited like refusals, not a line per event on stderr.
func TestServerErrorsGoToTheLogWithACount(t *testing.T) {
	const requests = 300
	var logs bytes.Buffer
	addr, stop := serveUntil(t, panickingSyncer{}, api.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	client := &http.Client{Timeout: 5 * time.Second}
	for range requests {
		if resp, err := client.Get("http://" + addr + api.HealthPath); err == nil {
			resp.Body.Close()
			t.Fatalf("a panicking handler answered %d", resp.StatusCode)
		}
	}
	stop()
	lines, total := countedLines(t, &logs, "endpoint server error")
	if lines < 1 || lines > 2 || total != requests {
		t.Fatalf("%d panics logged %d lines counting %d, want 1 or 2 lines counting %d:\n%s", requests, lines, total, requests, logs.String())
	}
}

// countedLines reads JSON log lines and returns how many have msg and the
// sum of their counts; every such line must be at ERROR or WARN and have a
// count.
func countedLines(t *testing.T, logs *bytes.Buffer, msg string) (lines, total int) {
	t.Helper()
	sc := bufio.NewScanner(logs)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec struct {
			Level, Msg string
			Count      *int
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("not a JSON log line: %s", sc.Bytes())
		}
		if rec.Msg != msg {
			continue
		}
		if rec.Count == nil || *rec.Count < 1 || (rec.Level != "WARN" && rec.Level != "ERROR") {
			t.Fatalf("want a WARN or ERROR line with a count: %s", sc.Bytes())
		}
		lines++
		total += *rec.Count
	}
	return lines, total
}

// panickingSyncer is a Syncer whose probes panic.
type panickingSyncer struct{ fakeSyncer }

func (panickingSyncer) Healthy() (bool, string) { panic("probe bug") }
