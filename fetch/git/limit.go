package git

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrysync/ferry/fetch"
)

// What one fetch may receive follows from the revision limits (see the
// package doc), so that an origin cannot make ferry download, store or
// hold in memory more than the Writer would ever accept.
const (
	// A pack carries more than the published files: the commit, every
	// tree, and with depth > 1 older versions of files. Compression rarely
	// brings it near a text tree's size, but random data does not compress.
	packMarginShare = 4
	minPackMargin   = 16 << 20
	// A blob and a tree per file at worst, twice that for history. go-git
	// keeps ~200 bytes of bookkeeping per object, so a pack of millions of
	// tiny objects would cost gigabytes without a bound.
	objectsPerFile = 4
	extraObjects   = 10_000
	// Building a pack's objects from their deltas may cost this many times
	// what a fetch may receive, in bytes inflated and patched: an honest
	// pack builds each object about once, and its objects add up to about
	// what the published tree and its history hold.
	rebuildShare = 4
)

// bounds are the limits of one fetch.
type bounds struct {
	maxBytes, margin int64 // for the messages
	// packBytes bounds what one network operation receives (the HTTP
	// bodies or the SSH connection) and the pack written to the store.
	packBytes int64
	// fileSize bounds one blob: no file over it could be published.
	fileSize int64
	// objectSize bounds one object of any kind, which go-git reads whole
	// into memory (a pack's, or a tree's or commit's): fileSize plus a
	// margin for trees.
	objectSize      int64
	objectSizeLimit string // the limit fileSize and objectSize come from
	objects         uint32
	// rebuildBytes bounds the bytes one pass over a pack inflates and
	// patches to build its objects from their deltas (packed.go).
	rebuildBytes int64
}

func boundsFor(l fetch.Limits) bounds {
	l = l.WithDefaults()
	margin := max(minPackMargin, l.MaxBytes/packMarginShare)
	b := bounds{
		maxBytes:        l.MaxBytes,
		margin:          margin,
		packBytes:       satAdd(l.MaxBytes, margin),
		fileSize:        l.MaxFileSize,
		objectSizeLimit: "max-file-size",
		objects:         uint32(min(int64(l.MaxFiles)*objectsPerFile+extraObjects, math.MaxUint32)),
	}
	if l.MaxBytes < l.MaxFileSize {
		b.fileSize, b.objectSizeLimit = l.MaxBytes, "max-bytes"
	}
	b.objectSize = satAdd(b.fileSize, minPackMargin)
	b.rebuildBytes = math.MaxInt64
	if b.packBytes <= math.MaxInt64/rebuildShare {
		b.rebuildBytes = b.packBytes * rebuildShare
	}
	return b
}

func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// limitError is a fetch stopped by its bounds. Retrying fetches the same
// commit again: it is permanent until the origin or the limits change.
type limitError struct{ msg string }

func (e *limitError) Error() string { return e.msg }

func overLimit(format string, args ...any) error {
	return fetch.Permanent(&limitError{fmt.Sprintf(format, args...)})
}

// meter watches one network operation (a session: a listing and the
// fetch that follows it; a pinned commit's fetch). Two counters share
// its bound: the bytes the transport reads (HTTP bodies, the SSH or
// git:// connection; this also bounds a ref listing without end), and
// the pack bytes written to the store. The first failure, a count
// past the bound or a failed write, stops the operation by cancelling its
// context: go-git then tears the transport down at its next read (an
// error returned to it instead may leave it blocked on a read).
type meter struct {
	bounds
	id         uint64          // names it to the SSH and git:// dialer (dial.go)
	deadline   time.Time       // the operation's, for the dialer; zero: none
	ctx        context.Context // the operation's: its end ends a dial (dial.go)
	wire, pack atomic.Int64
	cancel     context.CancelFunc
	mu         sync.Mutex
	cause      error
}

// add counts n more bytes on c and fails once c passes the bound.
func (m *meter) add(c *atomic.Int64, n int) error {
	if c.Add(int64(n)) > m.packBytes {
		m.stop(overLimit("the origin sent more than %d bytes (the max-bytes limit, %d, plus a margin of %d for trees, commits and history)",
			m.packBytes, m.maxBytes, m.margin))
	}
	return m.err()
}

// stop ends the operation because of err, unless it was stopped already.
func (m *meter) stop(err error) {
	m.mu.Lock()
	if m.cause == nil {
		m.cause = err
	}
	m.mu.Unlock()
	m.cancel()
}

// err is why the operation was stopped; nil while it runs, and when only
// its caller's context ended it.
func (m *meter) err() error {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cause
}

var (
	// liveMeters holds the meters of the operations in progress by id:
	// go-git gives the SSH dialer (and ferry's git:// transport) a proxy
	// URL and nothing else.
	liveMeters sync.Map
	meterIDs   atomic.Uint64
)

type meterKey struct{}

// startMeter starts watching one network operation. The meter rides in
// the returned context (the HTTP client reads it from the request) and in
// liveMeters (the SSH and git:// dialer finds it by the id in its proxy
// URL); the context is cancelled when the meter stops it. done forgets it.
func (s *Source) startMeter(ctx context.Context) (_ context.Context, _ *meter, done func()) {
	ctx, cancel := context.WithCancel(ctx)
	m := &meter{bounds: s.bounds, id: meterIDs.Add(1), cancel: cancel}
	m.deadline, _ = ctx.Deadline()
	m.ctx = ctx
	liveMeters.Store(m.id, m)
	return context.WithValue(ctx, meterKey{}, m), m, func() {
		liveMeters.Delete(m.id)
		cancel()
	}
}

func meterFrom(ctx context.Context) *meter {
	m, _ := ctx.Value(meterKey{}).(*meter)
	return m
}

// meteredTransport is the HTTP client's transport: it counts each
// response body on the meter of the request's context.
type meteredTransport struct{ base http.RoundTripper }

func (t meteredTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if m := meterFrom(req.Context()); err == nil && m != nil {
		resp.Body = &meteredBody{ReadCloser: resp.Body, m: m}
	}
	return resp, err
}

type meteredBody struct {
	io.ReadCloser
	m *meter
}

func (b *meteredBody) Read(p []byte) (int, error) { return b.m.read(b.ReadCloser.Read(p)) }

// meteredConn counts what an SSH connection reads.
type meteredConn struct {
	net.Conn
	m *meter
}

func (c *meteredConn) Read(p []byte) (int, error) { return c.m.read(c.Conn.Read(p)) }

// read counts the n bytes a transport's Read returned; past the bound it
// returns the limit error instead of err.
func (m *meter) read(n int, err error) (int, error) {
	if merr := m.add(&m.wire, n); merr != nil {
		return n, merr
	}
	return n, err
}
