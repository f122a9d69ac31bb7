package http

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	nethttp "net/http"
	"net/url"
	"path"
	"strings"

	getter "github.com/hashicorp/go-getter/v2"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/redact"
)

// maxChecksumFile bounds a checksum file: a SHA256SUMS of a large release
// is a few KiB.
const maxChecksumFile = 1 << 20

// checksumSpec is the ?checksum= option.
type checksumSpec struct {
	typ  string // md5, sha1, sha256, sha512
	want []byte
	// fileURL is set for "file:URL": the expected sum is read from that
	// checksum file whenever a new body is downloaded.
	fileURL *url.URL
	// fileName is the name looked up in the checksum file.
	fileName string
}

// parseChecksum reads the checksum option. The literal forms ("sha256:HEX",
// or a bare HEX whose type follows from its length) are parsed by
// go-getter. For "file:URL" go-getter would download the file with its own
// HTTP getter into the system temp dir, so the URL is kept here and fetched
// with this source's client.
func parseChecksum(v string, src *url.URL) (*checksumSpec, error) {
	c := &checksumSpec{}
	escaped := src.EscapedPath()
	c.fileName, _ = url.PathUnescape(escaped[strings.LastIndex(escaped, "/")+1:])
	if v == "" {
		return nil, errors.New("checksum= is empty: want TYPE:HEX, HEX or file:URL")
	}
	if kind, rest, ok := strings.Cut(v, ":"); ok && strings.EqualFold(kind, "file") {
		u, err := url.Parse(rest)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("checksum=file:%s: want file:https://HOST/PATH of a GNU or BSD style checksum file", redact.String(rest, nil))
		}
		if u.User != nil {
			return nil, errors.New("checksum=file:URL: credentials in the URL are not accepted")
		}
		c.fileURL = u
		return c, nil
	}
	fc, err := new(getter.Client).GetChecksum(context.Background(), &getter.Request{Src: src.String()})
	if err != nil {
		// go-getter's message may quote the URL, query and all.
		msg := strings.ReplaceAll(err.Error(), src.String(), redact.URL(src, nil))
		return nil, fmt.Errorf("checksum=%s: %s", redact.Value(v), msg)
	}
	if fc == nil || newHash(fc.Type) == nil {
		return nil, fmt.Errorf("checksum=%s: want TYPE:HEX (md5, sha1, sha256, sha512), HEX or file:URL", v)
	}
	c.typ, c.want = fc.Type, fc.Value
	return c, nil
}

func newHash(typ string) hash.Hash {
	switch typ {
	case "md5":
		return md5.New()
	case "sha1":
		return sha1.New()
	case "sha256":
		return sha256.New()
	case "sha512":
		return sha512.New()
	}
	return nil
}

// verify checks the downloaded body against the expected checksum before
// anything is written. A mismatch is permanent: downloading the same
// bytes again will not fix it.
func (s *Source) verify(ctx context.Context, client *nethttp.Client, a auth, b *body) error {
	typ, want := s.checksum.typ, s.checksum.want
	if u := s.checksum.fileURL; u != nil {
		data, err := s.checksumFile(ctx, client, a)
		if err == nil {
			typ, want, err = parseChecksumFile(data, s.checksum.fileName)
			err = fetch.Permanent(err)
		}
		if err != nil {
			return fmt.Errorf("checksum file %s: %w", redact.URL(u, nil), err)
		}
	}
	got := b.sum
	if typ != "sha256" {
		// The spool is hashed again, by go-getter's own verifier: only
		// sha256, the common case, is worth hashing on the way in.
		fc := &getter.FileChecksum{Type: typ, Hash: newHash(typ), Value: want}
		err := fc.Checksum(b.path)
		var ce *getter.ChecksumError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ce):
			got = hex.EncodeToString(ce.Actual)
		default:
			return fmt.Errorf("checksum: %w", err)
		}
	}
	if exp := hex.EncodeToString(want); got != exp {
		return fetch.Permanent(fmt.Errorf("checksum mismatch: expected %s:%s, got %s:%s", typ, exp, typ, got))
	}
	return nil
}

// checksumFile downloads the checksum file.
func (s *Source) checksumFile(ctx context.Context, client *nethttp.Client, a auth) ([]byte, error) {
	return s.getSmall(ctx, client, a, s.checksum.fileURL, maxChecksumFile)
}

// getSmall downloads a small file that goes with the body (a checksum
// file, a signature): up to limit bytes, more is a permanent error.
// Credentials go only to the source's own host.
func (s *Source) getSmall(ctx context.Context, client *nethttp.Client, a auth, u *url.URL, limit int64) ([]byte, error) {
	req, err := nethttp.NewRequestWithContext(ctx, nethttp.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if sameHost(s.req, req.URL) {
		a.apply(req)
	} else {
		auth{}.apply(req) // User-Agent alone
	}
	resp, err := get(ctx, client, req, a.any(), false)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	switch {
	case err != nil:
		return nil, bodyError(ctx, err, int64(len(data)), resp.ContentLength)
	case int64(len(data)) > limit:
		return nil, fetch.Permanent(fmt.Errorf("larger than %d bytes", limit))
	}
	return data, nil
}

// parseChecksumFile finds the checksum of name in a checksum file, in the
// formats go-getter accepts:
//
//	GNU:  HEX  name   or   HEX *name        (type from the length)
//	BSD:  SHA256 (name) = HEX
//	HEX                                      (a file holding one sum)
func parseChecksumFile(data []byte, name string) (string, []byte, error) {
	// An entry named exactly like the file wins over "dir/name", which is
	// taken only when nothing closer is listed.
	var fallback []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		typ, sum, file := checksumEntry(line)
		switch {
		case file == "" || file == name || file == "./"+name:
			return checksumOf(typ, sum, name)
		case fallback == nil && path.Base(file) == name:
			fallback = []string{typ, sum}
		}
	}
	if fallback != nil {
		return checksumOf(fallback[0], fallback[1], name)
	}
	return "", nil, fmt.Errorf("no checksum for %q", name)
}

// checksumEntry splits a line: "SHA256 (file) = HEX" gives its type; a
// bare sum, no file.
func checksumEntry(line string) (typ, sum, file string) {
	f := strings.Fields(line)
	if len(f) == 4 && f[2] == "=" && len(f[1]) > 2 && strings.HasPrefix(f[1], "(") && strings.HasSuffix(f[1], ")") {
		return strings.ToLower(f[0]), f[3], f[1][1 : len(f[1])-1]
	}
	file = strings.TrimSpace(line[len(f[0]):])
	return "", f[0], strings.TrimPrefix(strings.TrimPrefix(file, "*"), "?")
}

// checksumOf reads a sum of the given type, or of the type its length
// gives.
func checksumOf(typ, sum, name string) (string, []byte, error) {
	want, err := hex.DecodeString(sum)
	if err != nil {
		return "", nil, fmt.Errorf("the line for %q holds no hex checksum", name)
	}
	for _, t := range []string{"md5", "sha1", "sha256", "sha512"} {
		if typ == "" && newHash(t).Size() == len(want) {
			typ = t
		}
	}
	if h := newHash(typ); h == nil || h.Size() != len(want) {
		return "", nil, fmt.Errorf("the line for %q holds no md5, sha1, sha256 or sha512 checksum", name)
	}
	return typ, want, nil
}
