package oci

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	nethttp "net/http"
	"net/url"
	"os"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/archive"
	"github.com/ferrysync/ferry/fetch/kit"
)

// userAgent is sent on every request.
const userAgent = "ferry"

// Fetch resolves the reference to a manifest digest: one HEAD (one GET
// when the registry gives no digest on HEAD), after one tag listing for a
// range. The same digest as prev's returns prev and writes nothing; a
// source pinned by digest that has published does not ask at all.
// Otherwise the manifest is read, a layer chosen, downloaded into the
// state directory with its digest verified, and written through w.
func (s *Source) Fetch(ctx context.Context, prev string, w fetch.Writer) (string, error) {
	rev, err := s.fetch(ctx, prev, w)
	if err != nil {
		return "", fmt.Errorf("oci pull %s: %w", s.redacted, err)
	}
	return rev, nil
}

func (s *Source) fetch(ctx context.Context, prev string, w fetch.Writer) (string, error) {
	if s.digest != "" {
		h, err := v1.NewHash(s.digest)
		if err != nil {
			return "", fetch.Permanent(err)
		}
		if prev != "" && prev == s.revision(h) {
			s.origin = s.digest
			return prev, nil // a digest names its content for good
		}
	}
	if s.opts.InsecureSkipVerify {
		s.log.Warn("TLS certificate verification is disabled for this source")
	}
	p, hasCreds, err := s.client(ctx)
	if err != nil {
		return "", err
	}
	ref, err := s.reference(ctx, p, hasCreds)
	if err != nil {
		return "", err
	}
	desc, manifest, err := s.resolve(ctx, p, ref, hasCreds)
	if err != nil {
		return "", err
	}
	if desc.Digest.Algorithm != "sha256" {
		return "", fetch.Permanent(fmt.Errorf("manifest digest %s: only sha256 digests are supported", desc.Digest))
	}
	origin := desc.Digest.String()
	if t, ok := ref.(name.Tag); ok {
		origin = t.TagStr() + "@" + origin
	}
	rev := s.revision(desc.Digest)
	if rev == prev {
		s.origin = origin
		s.log.Debug("manifest unchanged", "revision", prev)
		return prev, nil
	}
	if err := s.pull(ctx, p, ref.Context().Digest(desc.Digest.String()), manifest, hasCreds, w); err != nil {
		return "", err
	}
	s.origin = origin
	s.log.Info("pulled new revision", "revision", rev, "origin_revision", origin)
	return rev, nil
}

// client returns the puller, rebuilt when the credentials or the CA file
// changed since the last call. A kept puller keeps its token and
// connection, so an idle poll is one request.
func (s *Source) client(ctx context.Context) (*remote.Puller, bool, error) {
	creds, err := s.opts.credentials(s.repo.Registry)
	if err != nil {
		return nil, false, err
	}
	pem, err := kit.ReadCAFile(s.opts.CAFile)
	if err != nil {
		return nil, false, err
	}
	key := clientKey(creds, pem)
	if s.puller != nil && key == s.clientKey {
		return s.puller, hasCredentials(creds), nil
	}
	tr, err := kit.CATransport(pem, s.opts.CAFile, s.opts.InsecureSkipVerify)
	if err != nil {
		return nil, false, err
	}
	var auth authn.Authenticator = authn.Anonymous
	if hasCredentials(creds) {
		auth = authn.FromConfig(creds)
	}
	p, err := remote.NewPuller(
		remote.WithAuth(auth),
		remote.WithTransport(budgetTransport{next: &schemeGuard{next: tr, host: s.repo.RegistryStr(), plain: s.plainHTTP}}),
		remote.WithUserAgent(userAgent),
		// The sync loop retries with its own backoff; a retry here would
		// hide an outage for seconds and count as extra polls.
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}),
		remote.WithContext(ctx),
	)
	if err != nil {
		return nil, false, fmt.Errorf("registry client: %w", err)
	}
	if s.transport != nil {
		s.transport.CloseIdleConnections()
	}
	s.puller, s.transport, s.clientKey = p, tr, key
	return p, hasCredentials(creds), nil
}

// schemeGuard holds requests to the registry to the scheme the URL
// chose: go-containerregistry speaks plain http to a loopback or private
// address unless told otherwise, and an oci:// source must not.
type schemeGuard struct {
	next  nethttp.RoundTripper
	host  string
	plain bool
}

func (g *schemeGuard) RoundTrip(req *nethttp.Request) (*nethttp.Response, error) {
	want := "https"
	if g.plain {
		want = "http"
	}
	if req.URL.Host == g.host && req.URL.Scheme != want {
		u := *req.URL
		u.Scheme = want
		req = req.Clone(req.Context())
		req.URL = &u
	}
	return g.next.RoundTrip(req)
}

// reference is what to ask the registry for: the digest, the tag, or the
// highest tag in the range, from one listing.
func (s *Source) reference(ctx context.Context, p *remote.Puller, hasCreds bool) (name.Reference, error) {
	switch {
	case s.digest != "":
		return s.repo.Digest(s.digest), nil
	case s.semver == nil:
		return s.repo.Tag(s.tag), nil
	}
	tags, err := s.listTags(ctx, p, hasCreds)
	if err != nil {
		return nil, err
	}
	tag, err := s.resolveTag(tags)
	if err != nil {
		return nil, err
	}
	return s.repo.Tag(tag), nil
}

// resolve returns the descriptor ref points at: from a HEAD, or from a
// GET (with the manifest, then returned too) when the registry gives no
// digest on HEAD. A source remembers that, so its next polls are one GET.
func (s *Source) resolve(ctx context.Context, p *remote.Puller, ref name.Reference, hasCreds bool) (v1.Descriptor, []byte, error) {
	if !s.headless {
		d, err := p.Head(ctx, ref)
		if err == nil {
			return *d, nil, nil
		}
		if ctx.Err() != nil || isStatus(err) {
			return v1.Descriptor{}, nil, registryError(ctx, "HEAD manifest", err, hasCreds)
		}
		// Some registries answer HEAD without Docker-Content-Digest.
		d2, gerr := p.Get(ctx, ref)
		if gerr != nil {
			return v1.Descriptor{}, nil, registryError(ctx, "HEAD manifest", err, hasCreds)
		}
		s.log.Info("the registry gives no digest on HEAD; polling with GET", "reason", oneLine(err))
		s.headless = true
		return d2.Descriptor, d2.Manifest, nil
	}
	d, err := p.Get(ctx, ref)
	if err != nil {
		return v1.Descriptor{}, nil, registryError(ctx, "GET manifest", err, hasCreds)
	}
	return d.Descriptor, d.Manifest, nil
}

// pull reads the manifest at ref (manifest, when the poll already has
// it), picks the platform and the layer, and writes the layer through w.
func (s *Source) pull(ctx context.Context, p *remote.Puller, ref name.Digest, manifest []byte, hasCreds bool, w fetch.Writer) error {
	mt := types.MediaType("")
	if manifest == nil {
		d, err := p.Get(ctx, ref)
		if err != nil {
			return registryError(ctx, "GET manifest", err, hasCreds)
		}
		manifest, mt = d.Manifest, d.MediaType
	}
	if mt == "" || mt.IsIndex() || !mt.IsImage() {
		if peek := mediaTypeOf(manifest); peek != "" {
			mt = peek
		}
	}
	if mt.IsIndex() {
		idx, err := v1.ParseIndexManifest(bytes.NewReader(manifest))
		if err != nil {
			return fetch.Permanent(fmt.Errorf("image index %s does not parse: %w", ref.DigestStr(), err))
		}
		m, err := s.choosePlatform(idx)
		if err != nil {
			return err
		}
		ref = ref.Context().Digest(m.Digest.String())
		d, err := p.Get(ctx, ref)
		if err != nil {
			return registryError(ctx, "GET manifest", err, hasCreds)
		}
		manifest = d.Manifest
	}
	m, err := v1.ParseManifest(bytes.NewReader(manifest))
	if err != nil {
		return fetch.Permanent(fmt.Errorf("manifest %s does not parse: %w", ref.DigestStr(), err))
	}
	l, err := s.chooseLayer(m)
	if err != nil {
		return err
	}
	format, file, err := s.layout(l)
	if err != nil {
		return err
	}
	spool, err := s.download(ctx, p, ref.Context().Digest(l.Digest.String()), l, hasCreds)
	if spool != "" {
		defer os.Remove(spool)
	}
	if err != nil {
		return err
	}
	if format == "" {
		return w.WriteFile(file, 0o644, l.Digest.String(), func() (io.ReadCloser, error) { return os.Open(spool) })
	}
	f, err := os.Open(spool)
	if err != nil {
		return err
	}
	defer f.Close()
	return archive.Extract(ctx, w, f, l.Size, format, archive.Options{
		Subdir: s.subdir, MaxBytes: s.limits.MaxBytes, LimitName: "max-bytes", MaxFiles: s.limits.MaxFiles, TmpDir: s.stateDir,
	})
}

// mediaTypeOf reads a manifest's own mediaType field.
func mediaTypeOf(manifest []byte) types.MediaType {
	if idx, err := v1.ParseIndexManifest(bytes.NewReader(manifest)); err == nil && idx.MediaType.IsIndex() {
		return idx.MediaType
	}
	if m, err := v1.ParseManifest(bytes.NewReader(manifest)); err == nil {
		if m.MediaType != "" {
			return m.MediaType
		}
		if len(m.Layers) > 0 {
			return types.OCIManifestSchema1
		}
	}
	return ""
}

// download spools the layer's blob to the state directory (never /tmp),
// verifying its size and digest as it streams; nothing of a blob that
// fails either is ever expanded. The returned file is the caller's to
// remove, also on error.
func (s *Source) download(ctx context.Context, p *remote.Puller, ref name.Digest, l v1.Descriptor, hasCreds bool) (string, error) {
	if l.Size > s.limits.MaxBytes {
		return "", fetch.Permanent(fmt.Errorf("layer %s of %d bytes is over the max-bytes limit of %d bytes", l.Digest, l.Size, s.limits.MaxBytes))
	}
	if err := kit.StateDir(s.stateDir); err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	if !s.cleaned {
		kit.RemoveTemp(s.stateDir) // spools of a process killed mid-download
		s.cleaned = true
	}
	layer, err := p.Layer(ctx, ref)
	if err != nil {
		return "", registryError(ctx, "layer", err, hasCreds)
	}
	rc, err := layer.Compressed()
	if err != nil {
		return "", registryError(ctx, "GET layer", err, hasCreds)
	}
	defer rc.Close()
	f, err := os.CreateTemp(s.stateDir, kit.TempPrefix+"layer-*")
	if err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, sum), io.LimitReader(rc, l.Size+1))
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("spool: %w", cerr)
	}
	got := "sha256:" + hex.EncodeToString(sum.Sum(nil))
	switch {
	case n > l.Size:
		return f.Name(), fetch.Permanent(fmt.Errorf("layer %s: the registry sent more than the %d bytes its manifest gives", l.Digest, l.Size))
	case n == l.Size && got != l.Digest.String():
		return f.Name(), fetch.Permanent(fmt.Errorf("layer %s: content digest %s does not match: refused", l.Digest, got))
	case err != nil:
		return f.Name(), registryError(ctx, fmt.Sprintf("GET layer (after %d bytes)", n), err, hasCreds)
	case n < l.Size:
		return f.Name(), fmt.Errorf("layer %s: truncated: got %d of %d bytes", l.Digest, n, l.Size)
	}
	return f.Name(), nil
}

func digestHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func urlPathUnescape(s string) (string, error) { return url.PathUnescape(s) }
