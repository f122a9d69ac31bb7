package s3

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrysync/ferry/fetch"
)

// object is one entry of a listing.
type object struct {
	key  string // the S3 key
	name string // its path in the revision
	etag string // as the server sent it, quotes included
	size int64
}

// contentKey tells the Writer when a published file can be reused: the
// ETag identifies content within a bucket, and the size guards against a
// server whose ETags are not content hashes.
func (o object) contentKey() string {
	return strings.Trim(o.etag, `"`) + ":" + fmt.Sprint(o.size)
}

// revision digests the sorted (key, ETag, size) list: a single object's
// revision, whose key also decides its name.
func revision(objs []object) string {
	sorted := slices.SortedFunc(slices.Values(objs), func(a, b object) int { return strings.Compare(a.key, b.key) })
	h := sha256.New()
	for _, o := range sorted {
		fmt.Fprintf(h, "%q %s %d\n", o.key, o.etag, o.size)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// prefixRevision is a prefix's revision: the listing's, followed, as the
// HTTP and OCI sources write theirs, by a short digest of the layout, the
// prefix the keys are published under (with the //subdir in it). Another
// prefix listing the same keys publishes them under other names, so it
// must not give the same revision.
func (s *Source) prefixRevision(objs []object) string {
	layout := sha256.Sum256([]byte("prefix\x00" + s.loc.key))
	return revision(objs) + "-" + hex.EncodeToString(layout[:4])
}

func (s *Source) fetchPrefix(ctx context.Context, prev string, w fetch.Writer, creds aws.CredentialsProvider) (string, error) {
	objs, err := s.list(ctx, creds)
	if err != nil {
		return "", err
	}
	if len(objs) == 0 && !s.opts.AllowEmpty {
		return "", fetch.Permanent(fmt.Errorf("s3 list %s: no objects under the prefix (allow an empty prefix to publish an empty tree)", s.loc))
	}
	rev := s.prefixRevision(objs)
	if rev == prev {
		return prev, nil
	}
	if err := s.download(ctx, objs, w, creds); err != nil {
		return "", err
	}
	return rev, nil
}

// listPageKeys is the page size asked for: S3's maximum, and the default
// of every server, said explicitly so that no server's own default applies.
const listPageKeys = 1000

// maxListPages bounds the pages of one listing, so that a server that
// paginates forever is refused even when its pages are empty. A listing
// within MaxFiles takes MaxFiles/1000 pages from a server that fills its
// pages; S3 allows short pages before the end, hence the margin.
func maxListPages(l fetch.Limits) int { return max(l.MaxFiles/10, 1000) }

// list pages through ListObjectsV2 and maps keys to names, refusing keys
// that cannot be published safely. It is bounded by the limits, not by
// the server: it stops as soon as the objects, or the directory markers,
// are more than MaxFiles allows (the Writer would refuse that tree), a
// page's body is larger than maxListPageBytes, or the pages are more than
// maxListPages.
func (s *Source) list(ctx context.Context, creds aws.CredentialsProvider) ([]object, error) {
	what := "s3 list " + s.loc.String() + s.loc.at()
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket:  aws.String(s.loc.bucket),
		Prefix:  aws.String(s.loc.key),
		MaxKeys: aws.Int32(listPageKeys),
	})
	refuse := func(format string, args ...any) error {
		return fetch.Permanent(fmt.Errorf("%s: "+format, append([]any{what}, args...)...))
	}
	var objs []object
	markers, pages := 0, 0
	for p.HasMorePages() {
		if pages == maxListPages(s.limits) {
			return nil, refuse("the listing did not end after %d pages, the bound for %d files (max-files): the server keeps paginating", pages, s.limits.MaxFiles)
		}
		page, err := p.NextPage(ctx, withCredentials(creds), withBodyLimit(maxListPageBytes))
		if err != nil {
			var big *bodyTooLarge
			if errors.As(err, &big) && httpStatus(err) < 300 {
				return nil, refuse("a page of the listing is larger than %d bytes although at most %d keys were asked for: the server ignores max-keys", big.limit, listPageKeys)
			}
			return nil, describe(what, err)
		}
		pages++
		if aws.ToBool(page.IsTruncated) && aws.ToString(page.NextContinuationToken) == "" {
			// The paginator would end here, and a partial tree be published.
			return nil, refuse("page %d of the listing is truncated but has no continuation token", pages)
		}
		for _, c := range page.Contents {
			key, size := aws.ToString(c.Key), aws.ToInt64(c.Size)
			if strings.HasSuffix(key, "/") {
				if size != 0 {
					return nil, refuse("key %q ends in \"/\" but holds %d bytes: it cannot be published as a file", key, size)
				}
				// A "directory marker" made by consoles and tools: nothing
				// to publish, but counted as the Writer counts directories.
				if markers++; markers > s.limits.MaxFiles {
					return nil, refuse("more than %d directory markers under the prefix (max-files)", s.limits.MaxFiles)
				}
				continue
			}
			name, err := nameOf(key, s.loc.key)
			if err != nil {
				return nil, refuse("key %q: %w", key, err)
			}
			if len(objs) == s.limits.MaxFiles {
				return nil, refuse("more than %d objects under the prefix (max-files)", s.limits.MaxFiles)
			}
			objs = append(objs, object{key: key, name: name, etag: aws.ToString(c.ETag), size: size})
		}
	}
	s.log.Debug("s3 listed", "objects", len(objs), "markers", markers, "pages", pages)
	return objs, nil
}

// nameOf maps a key under prefix to its path in the revision. It applies
// the Writer's rules (fetch.CleanName) here, so that a hostile listing is
// refused, naming the key, before any GET; and it refuses a key the rules
// would rename (an empty or "." component): S3 keys are opaque strings, so
// "a//b" and "a/b" are two objects that must not alias one file.
func nameOf(key, prefix string) (string, error) {
	name := strings.TrimPrefix(key, prefix)
	clean, err := fetch.CleanName(name)
	if err == nil && clean != name {
		err = errors.New(`empty or "." path component`)
	}
	return name, err
}
