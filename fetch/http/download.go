package http

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	nethttp "net/http"
	"os"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/kit"
)

// stateFile holds the validators, in the state directory.
const stateFile = "http.json"

// body is a downloaded response body, spooled in the state directory.
type body struct {
	path string
	size int64
	sum  string // hex sha256
	// extra is the digest for a checksum type other than sha256, when
	// the type was known before the download.
	extra, extraType string
}

// download spools the body to a file in the state directory (never /tmp:
// it may be large and the state directory is on the shared volume), hashing
// it on the way. It fails, never truncates, past the body limit, and a body
// shorter than its Content-Length is an error. The returned body's file is
// the caller's to remove, also on error.
func (s *Source) download(ctx context.Context, resp *nethttp.Response) (*body, error) {
	if resp.ContentLength > s.maxBody {
		return nil, fetch.Permanent(fmt.Errorf("body of %d bytes is over the max-body limit of %d bytes", resp.ContentLength, s.maxBody))
	}
	f, err := os.CreateTemp(s.stateDir, kit.TempPrefix+"body-*")
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	b := &body{path: f.Name()}
	sum := sha256.New()
	sinks := []io.Writer{f, sum}
	var extra hash.Hash
	if c := s.checksum; c != nil && c.fileURL == nil && c.typ != "sha256" {
		extra = newHash(c.typ)
		sinks = append(sinks, extra)
		b.extraType = c.typ
	}
	lr := &limitedReader{r: resp.Body, max: s.maxBody}
	n, err := io.Copy(io.MultiWriter(sinks...), lr)
	b.size = n
	if cerr := f.Close(); err == nil && cerr != nil {
		return b, fmt.Errorf("spool: %w", cerr)
	}
	if err != nil {
		return b, bodyError(ctx, err, n, resp.ContentLength)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return b, fmt.Errorf("truncated body: got %d of %d bytes", n, resp.ContentLength)
	}
	b.sum = hex.EncodeToString(sum.Sum(nil))
	if extra != nil {
		b.extra = hex.EncodeToString(extra.Sum(nil))
	}
	return b, nil
}

// bodyError explains a failure while reading the body.
func bodyError(ctx context.Context, err error, n, length int64) error {
	switch {
	case fetch.IsPermanent(err):
		return err
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("timed out after %d bytes of the body: %w", n, ctx.Err())
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, io.ErrUnexpectedEOF) && length >= 0:
		return fmt.Errorf("truncated body: got %d of %d bytes: %w", n, length, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("truncated body: connection closed after %d bytes: %w", n, err)
	}
	return fmt.Errorf("reading body after %d bytes: %w", n, err)
}

// limitedReader fails once more than max bytes were read: a body cut at
// the limit and published as complete would be worse than no publish.
type limitedReader struct {
	r   io.Reader
	n   int64
	max int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if rem := l.max - l.n; int64(len(p)) > rem {
		p = p[:rem+1] // one byte past the limit is enough to know
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.n > l.max {
		return n, fetch.Permanent(fmt.Errorf("body is over the max-body limit of %d bytes", l.max))
	}
	return n, err
}

// state is what the state file holds: the validators of one revision.
type state struct {
	Revision     string `json:"revision"`
	Key          string `json:"key"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
}

// loadState returns the saved validators, or none when the file is missing
// or unreadable: that only costs an unconditional GET.
func (s *Source) loadState() state {
	var st state
	if err := s.state.Load(&st); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("ignoring unreadable state file", "error", err)
		}
		return state{}
	}
	return st
}

// saveState replaces the state file. A failure is logged, not returned:
// validators only save bandwidth.
func (s *Source) saveState(st state) {
	if err := s.state.Save(st); err != nil {
		s.log.Warn("cannot save validators; the next poll downloads the body again", "error", err)
	}
}
