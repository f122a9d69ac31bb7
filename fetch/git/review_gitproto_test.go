package git_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing/format/pktline"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/fetchtest"
	"github.com/ferrysync/ferry/fetch/git"
)

// TestEndlessGitProtocolAdvertisementIsBounded: over git:// go-git dials
// the server itself (net.Dial), so ferry's meter counts nothing the
// connection reads (limit.go: "where it can count them"), only the pack
// written to the store. A git:// server (or anyone on the path: git:// is
// plaintext) that answers with an endless ref advertisement is read until
// the sync's timeout (2 minutes by default), and go-git keeps every ref
// in memory: memory grows with what the origin sends, not with
// --max-bytes. The same answer over HTTP fails at once with the
// max-bytes limit (TestHostileV2AnswersAreBoundedOneLineErrors,
// "endless").
func TestEndlessGitProtocolAdvertisementIsBounded(t *testing.T) {
	t.Parallel()
	ln := listen(t)
	var sent atomic.Int64
	hash := strings.Repeat("ab", 20)
	acceptLoop(t, ln, func(conn net.Conn) {
		go func() { // the request line, then nothing
			buf := make([]byte, 4096)
			for {
				if _, err := conn.Read(buf); err != nil {
					return
				}
			}
		}()
		w := bufio.NewWriterSize(conn, 64<<10)
		e := pktline.NewEncoder(w)
		if e.EncodeString(hash+" HEAD\x00multi_ack side-band-64k ofs-delta shallow\n") != nil {
			return
		}
		for i := 0; ; i++ {
			line := fmt.Sprintf("%s refs/tags/t%09d\n", hash, i)
			if e.EncodeString(line) != nil {
				return
			}
			sent.Add(int64(len(line) + 4))
		}
	})
	limits := fetch.Limits{MaxBytes: 1 << 20}
	src, _ := newSourceEnv(t, "git::git://"+ln.Addr().String()+"/r.git", git.Options{}, fetch.Env{StateDir: t.TempDir(), Limits: limits})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := src.Fetch(ctx, "", fetchtest.NewWriter(limits))
	t.Logf("the server sent %d MiB; err = %v", sent.Load()>>20, err)
	// 1 MiB of max-bytes allows 17 MiB a session (the 16 MiB margin); the
	// socket buffers hold a few MiB more at most.
	if n := sent.Load(); n > 34<<20 {
		t.Errorf("read %d MiB of ref advertisement with --max-bytes 1 MiB", n>>20)
	}
	if err == nil || !strings.Contains(err.Error(), "max-bytes limit") {
		t.Errorf("err = %v, want the max-bytes limit", err)
	}
}
