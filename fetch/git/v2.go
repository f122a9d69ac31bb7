package git

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
)

// Protocol v2 over smart HTTP, for listing refs (gitprotocol-v2(5)).
// go-git v5 speaks protocol v0, whose listing is the advertisement of
// every ref of the repository: tens of megabytes for a monorepo, on every
// poll. A v2 server answers ls-refs with just the refs asked for.
//
// The first listing of a source sends GET info/refs with "Git-Protocol:
// version=2". A v2 server answers with its capabilities, and every later
// listing is one POST of ls-refs (HTTP is stateless: the capabilities
// need not be asked again). An older server ignores the header and
// answers with its v0 advertisement, which is then the listing: it costs
// no request more than go-git's. A server that redirects is left to
// go-git, whose rules for credentials across a redirect are not repeated
// here, for the life of the source.
//
// The fetch that follows a change stays protocol v0 (session.go), which
// every v2 server also serves: go-git v5 cannot read a v2 fetch response,
// whose sections are framed by delim-pkts.

// httpMode is what a Source has learnt of its HTTP server's protocol.
type httpMode int

const (
	probeV2  httpMode = iota // ask for v2 on GET info/refs; v0 answers with its refs
	speaksV2                 // send ls-refs straight away
	viaGoGit                 // the server redirects: go-git lists the refs
)

const (
	protocolHeader = "Git-Protocol"
	protocolV2     = "version=2"
)

// errUseGoGit says that go-git must list the refs: the server redirected,
// or speaks a v2 without what ferry asks of it (ls-refs, shallow fetch).
var errUseGoGit = errors.New("listing left to go-git")

// delimPkt ends a v2 command's capabilities and starts its arguments.
// go-git v5's pktline package predates protocol v2 and has no delim-pkt:
// these four bytes are the only framing not written by that package.
var delimPkt = []byte("0001")

// v2Client sends ferry's own v2 requests through go-git's HTTP transport
// (global.go): the same connections, TLS, proxy and byte bounds. It does
// not follow redirects (see errUseGoGit).
var v2Client = &http.Client{
	Transport:     httpTransport,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// listHTTP lists the refs over smart HTTP as the server allows: ls-refs
// for a v2 server, the v0 advertisement of the probe for an older one.
// errUseGoGit hands the listing to go-git.
func (ss *session) listHTTP() (refs []*plumbing.Reference, err error) {
	s := ss.s
	defer func() {
		switch {
		case errors.Is(err, errUseGoGit):
			if s.http != viaGoGit {
				s.log.Info("git server redirects, or lacks a protocol v2 feature: listing every ref with protocol v0 from now on", "url", s.display)
			}
			s.http = viaGoGit
		case err != nil && s.http == speaksV2:
			// The server may have changed (a rollback, another replica
			// behind the balancer): ask again on the next poll.
			s.http = probeV2
		}
	}()
	switch s.http {
	case viaGoGit:
		return nil, errUseGoGit
	case probeV2:
		v2, ar, err := ss.infoRefs()
		if err != nil {
			return nil, err
		}
		if !v2 {
			ss.caps = ar.Capabilities
			return advertisedRefs(ar)
		}
		s.http = speaksV2
	}
	if refs, err = ss.lsRefs(); err != nil {
		return nil, err
	}
	ss.caps, ss.v2 = v0FetchCaps(), true
	return refs, nil
}

// v0FetchCaps are the capabilities of the v0 fetch after an ls-refs: git
// (and JGit) servers that speak v2 serve all of them in v0.
func v0FetchCaps() *capability.List {
	l := capability.NewList()
	for _, c := range []capability.Capability{capability.OFSDelta, capability.ThinPack, capability.Sideband64k, capability.NoProgress, capability.Shallow} {
		l.Set(c)
	}
	l.Set(capability.Agent, capability.DefaultAgent())
	return l
}

// infoRefs sends GET info/refs asking for protocol v2. It tells whether
// the server speaks a v2 that ferry can use; a server that does not speak
// v2 answers with its v0 advertisement, which it returns.
func (ss *session) infoRefs() (v2 bool, _ *packp.AdvRefs, _ error) {
	res, err := ss.request(http.MethodGet, "/info/refs?service="+transport.UploadPackServiceName, nil)
	if err != nil {
		return false, nil, err
	}
	defer res.Body.Close()
	// What the scanner reads is kept, for the v0 decoder to read again.
	var seen bytes.Buffer
	sc := pktline.NewScanner(io.TeeReader(res.Body, &seen))
	line, err := nextLine(sc)
	if err == nil && strings.HasPrefix(line, "# service=") {
		// Smart HTTP's v0 header and its flush-pkt, which some servers
		// send before a v2 answer too.
		if _, err = nextLine(sc); err == nil {
			line, err = nextLine(sc)
		}
	}
	if err != nil || line != "version 2" {
		ar := packp.NewAdvRefs()
		if err := ar.Decode(io.MultiReader(&seen, res.Body)); err != nil {
			if errors.Is(err, packp.ErrEmptyAdvRefs) {
				err = transport.ErrEmptyRemoteRepository
			}
			return false, nil, err
		}
		if ar.IsEmpty() {
			return false, nil, transport.ErrEmptyRemoteRepository
		}
		transport.FilterUnsupportedCapabilities(ar.Capabilities)
		return false, ar, nil
	}
	// One capability a line, up to a flush-pkt: "ls-refs[=FEATURES]",
	// "fetch[=FEATURES]", ...
	var lsRefs, shallow bool
	for {
		if line, err = nextLine(sc); err != nil {
			return false, nil, fmt.Errorf("protocol v2 capabilities: %w", err)
		}
		if line == "" {
			break
		}
		key, features, _ := strings.Cut(line, "=")
		switch key {
		case "ls-refs":
			lsRefs = true
		case "fetch":
			shallow = slices.Contains(strings.Fields(features), "shallow")
		}
	}
	if !lsRefs || !shallow {
		return false, nil, errUseGoGit
	}
	return true, nil, nil
}

// lsRefs asks a v2 server for the candidates only: the branch and the tag
// the ref may name (or HEAD, with the branch it points at), and the
// commit of an annotated tag.
func (ss *session) lsRefs() ([]*plumbing.Reference, error) {
	var body bytes.Buffer
	e := pktline.NewEncoder(&body)
	err := e.EncodeString("command=ls-refs\n")
	body.Write(delimPkt)
	args := []string{"peel\n", "symrefs\n"}
	for _, name := range ss.s.candidates() {
		args = append(args, "ref-prefix "+name.String()+"\n")
	}
	if err == nil {
		err = e.EncodeString(args...)
	}
	if err == nil {
		err = e.Flush()
	}
	if err != nil {
		return nil, err
	}
	res, err := ss.request(http.MethodPost, "/"+transport.UploadPackServiceName, &body)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	return readLsRefs(pktline.NewScanner(res.Body), ss.s.listed)
}

// readLsRefs reads an ls-refs answer: one "OID NAME[ ATTRIBUTE]..." line
// a ref, up to a flush-pkt. It keeps the refs keep says resolve may need
// (a prefix also matches longer names: refs/tags/v1 matches refs/tags/v1.2), listed as
// go-git's Remote.List lists them: a symbolic ref with its target, and an
// annotated tag's commit as "NAME^{}".
func readLsRefs(sc *pktline.Scanner, keep func(plumbing.ReferenceName) bool) ([]*plumbing.Reference, error) {
	var refs []*plumbing.Reference
	for {
		line, err := nextLine(sc)
		if err != nil {
			return nil, fmt.Errorf("ls-refs: %w", err)
		}
		if line == "" {
			return refs, nil
		}
		f := strings.Fields(line)
		if len(f) < 2 || !plumbing.IsHash(f[0]) {
			return nil, fmt.Errorf("ls-refs: unexpected line %.80q", line)
		}
		name, hash := plumbing.ReferenceName(f[1]), plumbing.NewHash(f[0])
		if !keep(name) {
			continue
		}
		ref := plumbing.NewHashReference(name, hash)
		for _, attr := range f[2:] {
			if target, ok := strings.CutPrefix(attr, "symref-target:"); ok {
				ref = plumbing.NewSymbolicReference(name, plumbing.ReferenceName(target))
				refs = append(refs, plumbing.NewHashReference(ref.Target(), hash))
			}
			if peeled, ok := strings.CutPrefix(attr, "peeled:"); ok && plumbing.IsHash(peeled) {
				refs = append(refs, plumbing.NewHashReference(name+"^{}", plumbing.NewHash(peeled)))
			}
		}
		refs = append(refs, ref)
	}
}

// nextLine reads one pkt-line and returns its payload without the line
// feed; "" is a flush-pkt (pktline refuses an empty data pkt-line).
func nextLine(sc *pktline.Scanner) (string, error) {
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return "", err
		}
		return "", io.ErrUnexpectedEOF
	}
	return strings.TrimSuffix(string(sc.Bytes()), "\n"), nil
}

// request sends one protocol v2 request to the repository with the
// source's credentials. A redirect is errUseGoGit; an error status is the
// error go-git makes of it, so that it is classified alike (errors.go).
func (ss *session) request(method, path string, body *bytes.Buffer) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = body
	}
	req, err := http.NewRequestWithContext(ss.ctx, method, ss.base+path, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set(protocolHeader, protocolV2)
	req.Header.Set("User-Agent", capability.DefaultAgent())
	if body != nil {
		req.Header.Set("Content-Type", "application/x-git-upload-pack-request")
		req.Header.Set("Accept", "application/x-git-upload-pack-result")
	}
	if a, ok := ss.auth.(githttp.AuthMethod); ok {
		a.SetAuth(req)
	}
	res, err := v2Client.Do(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode >= 300 && res.StatusCode < 400 {
		res.Body.Close()
		return nil, errUseGoGit
	}
	if err := githttp.NewErr(res); err != nil {
		return nil, err
	}
	return res, nil
}
