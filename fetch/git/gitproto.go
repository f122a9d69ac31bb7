package git

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// go-git's git:// transport dials with net.Dial and reads the connection
// without any bound: neither the meter (limit.go) nor the operation's
// deadline reach it, so an endless ref advertisement would be read, and
// kept in memory, until the sync timed out. go-git builds its transports
// on an internal package, so ferry installs one of its own for the git
// scheme (global.go): the same upload-pack exchange, with go-git's
// encoders and decoders, over a connection dialed like SSH's (dial.go),
// counted on the operation's meter and bounded by its deadline. ferry
// only fetches: it opens no receive-pack session.

// gitDefaultPort is where a git:// URL without a port is served.
const gitDefaultPort = 9418

// gitTransport is the git:// transport.
type gitTransport struct{}

// NewUploadPackSession dials the server ep names and asks for
// git-upload-pack on the repository's path.
func (gitTransport) NewUploadPackSession(ep *transport.Endpoint, auth transport.AuthMethod) (transport.UploadPackSession, error) {
	if auth != nil {
		return nil, transport.ErrInvalidAuthMethod // git:// has no authentication
	}
	port := ep.Port
	if port <= 0 {
		port = gitDefaultPort
	}
	conn, err := dialGit(ep.Proxy, net.JoinHostPort(ep.Host, strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	host := ep.Host
	if port != gitDefaultPort {
		host = net.JoinHostPort(ep.Host, strconv.Itoa(port))
	}
	req := packp.GitProtoRequest{RequestCommand: transport.UploadPackServiceName, Pathname: ep.Path, Host: host}
	if err := req.Encode(conn); err != nil {
		conn.Close()
		return nil, err
	}
	return &gitSession{conn: conn}, nil
}

// NewReceivePackSession refuses: ferry never pushes.
func (gitTransport) NewReceivePackSession(*transport.Endpoint, transport.AuthMethod) (transport.ReceivePackSession, error) {
	return nil, errors.New("git:// push is not supported")
}

// dialGit dials addr as go-git's git:// transport would (no proxy), with
// the meter the proxy option names (proxy() in dial.go): the connection
// is counted and bounded as an SSH one. Without a meter it refuses: an
// unbounded connection is what this transport is for avoiding.
func dialGit(opts transport.ProxyOptions, addr string) (net.Conn, error) {
	if opts.URL == "" {
		return nil, errors.New("ferry dialer: a git:// connection without its operation's meter")
	}
	u, err := url.Parse(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("ferry dialer: %w", err)
	}
	m, err := meterOf(u)
	if err != nil {
		return nil, err
	}
	return dialer{m: m, direct: true}.DialContext(context.Background(), "tcp", addr)
}

// gitSession is one upload-pack exchange over a git:// connection: the
// advertisement of every ref, then at most one request and its pack.
type gitSession struct {
	conn     net.Conn
	adv      *packp.AdvRefs
	packRun  bool
	finished bool
	stops    []func() bool // end the watches of the contexts (watch)
}

// watch ends the exchange when ctx is done: every read and write fails
// at once (the meter also ends an operation by its context).
func (s *gitSession) watch(ctx context.Context) {
	s.stops = append(s.stops, context.AfterFunc(ctx, func() { s.conn.SetDeadline(time.Unix(1, 0)) }))
}

// AdvertisedReferences reads the server's advertisement of its refs.
func (s *gitSession) AdvertisedReferences() (*packp.AdvRefs, error) {
	return s.AdvertisedReferencesContext(context.Background())
}

// AdvertisedReferencesContext reads the server's advertisement of its
// refs, once.
func (s *gitSession) AdvertisedReferencesContext(ctx context.Context) (*packp.AdvRefs, error) {
	if s.adv != nil {
		return s.adv, nil
	}
	s.watch(ctx)
	ar := packp.NewAdvRefs()
	if err := ar.Decode(s.conn); err != nil {
		return nil, s.advertisementError(err)
	}
	if ar.IsEmpty() {
		return nil, transport.ErrEmptyRemoteRepository
	}
	transport.FilterUnsupportedCapabilities(ar.Capabilities)
	s.adv = ar
	return ar, nil
}

// advertisementError says what a failed advertisement means, as go-git's
// transport does: a missing or empty repository, or the server's error.
func (s *gitSession) advertisementError(err error) error {
	var line *pktline.ErrorLine
	var data *packp.ErrUnexpectedData
	switch {
	case errors.As(err, &line) && repoNotFound(line.Text):
		return transport.ErrRepositoryNotFound
	case errors.As(err, &line):
		return line
	case errors.Is(err, packp.ErrEmptyInput):
		// git daemon hangs up on a path it does not serve.
		s.finished = true
		return io.ErrUnexpectedEOF
	case errors.Is(err, packp.ErrEmptyAdvRefs):
		s.finish()
		return transport.ErrEmptyRemoteRepository
	case errors.As(err, &data) && repoNotFound(string(data.Data)):
		return transport.ErrRepositoryNotFound
	}
	return err
}

// repoNotFound tells whether a git:// server's message says that the
// repository is not there (or not served).
func repoNotFound(msg string) bool {
	for _, s := range []string{"Repository not found.", "no such repository", "access denied", "does not appear to be a git repository"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// UploadPack sends the request and returns the server's answer, the pack
// to read, which ends with the session.
func (s *gitSession) UploadPack(ctx context.Context, req *packp.UploadPackRequest) (*packp.UploadPackResponse, error) {
	if req.IsEmpty() {
		s.finish()
		return nil, transport.ErrEmptyUploadPackRequest
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if _, err := s.AdvertisedReferencesContext(ctx); err != nil {
		return nil, err
	}
	s.watch(ctx)
	s.packRun = true
	w := bufio.NewWriter(s.conn)
	if err := req.UploadRequest.Encode(w); err != nil {
		return nil, fmt.Errorf("sending the upload-pack request: %w", err)
	}
	if err := req.UploadHaves.Encode(w, true); err != nil {
		return nil, fmt.Errorf("sending the upload-pack haves: %w", err)
	}
	if err := pktline.NewEncoder(w).Encodef("done\n"); err != nil {
		return nil, fmt.Errorf("sending the upload-pack request: %w", err)
	}
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("sending the upload-pack request: %w", err)
	}
	res := packp.NewUploadPackResponse(req)
	if err := res.Decode(sessionReader{s}); err != nil {
		return nil, fmt.Errorf("decoding the upload-pack response: %w", err)
	}
	return res, nil
}

// sessionReader reads the connection; closing it ends the session.
type sessionReader struct{ s *gitSession }

func (r sessionReader) Read(p []byte) (int, error) { return r.s.conn.Read(p) }
func (r sessionReader) Close() error               { return r.s.Close() }

// finish tells the server, when no pack was asked for, that nothing will
// be: a flush instead of a request.
func (s *gitSession) finish() {
	if s.finished {
		return
	}
	s.finished = true
	if !s.packRun {
		s.conn.Write(pktline.FlushPkt)
	}
}

// Close ends the session and its connection.
func (s *gitSession) Close() error {
	s.finish()
	for _, stop := range s.stops {
		stop()
	}
	s.stops = nil
	err := s.conn.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil // closed already, by the response's Close
	}
	return err
}
