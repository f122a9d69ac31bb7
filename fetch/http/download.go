package http

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
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
}

// download spools the body to a file in the state directory (never /tmp:
// it may be large and the state directory is on the shared volume), hashing
// it on the way. It fails, never truncates, past the body limit: a body
// cut there and published as complete would be worse than no publish. A
// body shorter than its Content-Length is an error too. The returned
// body's file is the caller's to remove, also on error.
func (s *Source) download(ctx context.Context, resp *nethttp.Response) (*body, error) {
	if resp.ContentLength > s.maxBody {
		return nil, fetch.Permanent(fmt.Errorf("body of %d bytes is over the http-max-body limit of %d bytes", resp.ContentLength, s.maxBody))
	}
	f, err := os.CreateTemp(s.stateDir, kit.TempPrefix+"body-*")
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	b := &body{path: f.Name()}
	sum := sha256.New()
	b.size, err = io.Copy(io.MultiWriter(f, sum), io.LimitReader(resp.Body, s.maxBody+1))
	if cerr := f.Close(); err == nil && cerr != nil {
		return b, fmt.Errorf("spool: %w", cerr)
	}
	switch {
	case err != nil:
		return b, bodyError(ctx, err, b.size, resp.ContentLength)
	case b.size > s.maxBody:
		return b, fetch.Permanent(fmt.Errorf("body is over the http-max-body limit of %d bytes", s.maxBody))
	case resp.ContentLength >= 0 && b.size != resp.ContentLength:
		return b, fmt.Errorf("truncated body: got %d of %d bytes", b.size, resp.ContentLength)
	}
	b.sum = hex.EncodeToString(sum.Sum(nil))
	return b, nil
}

// bodyError explains a failure while reading the body.
func bodyError(ctx context.Context, err error, n, length int64) error {
	switch {
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

// state is what the state file holds: the validators of one revision.
type state struct {
	Revision     string `json:"revision"`
	Key          string `json:"key"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	// Keys is the digest of the keys file the body was verified with:
	// when the file changes, the next GET is unconditional, so that the
	// published body is verified again.
	Keys string `json:"keys,omitempty"`
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
