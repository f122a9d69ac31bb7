// Package s3 is the S3 source: it publishes a key prefix as a tree, or one
// object as a file, from AWS S3 or any S3-compatible service (MinIO, Ceph,
// R2, versitygw). A poll costs one ListObjectsV2 page per 1,000 keys (or one
// conditional GET for a single object), and only changed objects are
// downloaded.
package s3

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"path/filepath"
	"slices"
	"strings"
	gosync "sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/kit"
)

// DefaultConcurrency is how many objects are downloaded at once.
const DefaultConcurrency = 8

// Options configure S3 sources. Secrets are given as file paths and read
// again on every sync, so a rotated Kubernetes Secret is picked up without
// a restart. The zero value uses the AWS SDK's default credential chain.
type Options struct {
	// Endpoint is http(s)://HOST[:PORT] of an S3-compatible service, for
	// s3://BUCKET URLs. A URL written as http(s)://HOST/BUCKET/KEY names
	// its endpoint itself.
	Endpoint string
	// Region signs the requests when the URL does not name one; otherwise
	// the SDK's (AWS_REGION, the profile), then us-east-1.
	Region string
	// PathStyle puts the bucket in the path rather than the host name.
	// Custom endpoints always use path style.
	PathStyle bool
	// AccessKeyFile and SecretKeyFile hold a static key pair; both or
	// neither.
	AccessKeyFile string
	SecretKeyFile string
	// SessionTokenFile holds a session token for temporary keys.
	SessionTokenFile string
	// Anonymous sends unsigned requests, for public buckets.
	Anonymous bool
	// NoIMDS keeps the SDK from asking the EC2 instance metadata service
	// for credentials. It is implied by the key files, Anonymous,
	// AWS_EC2_METADATA_DISABLED=true and credentials in the environment.
	NoIMDS bool
	// Concurrency bounds parallel downloads; 0 means DefaultConcurrency.
	Concurrency int
	// AllowEmpty publishes an empty tree when the prefix holds no object;
	// by default that is an error, since replacing real configuration
	// with nothing is almost never intended.
	AllowEmpty bool
}

// secretFile is a field of Options that names a secret file.
type secretFile struct{ field, path string }

func (o Options) secretFiles() []secretFile {
	return []secretFile{{"AccessKeyFile", o.AccessKeyFile}, {"SecretKeyFile", o.SecretKeyFile}, {"SessionTokenFile", o.SessionTokenFile}}
}

// Validate reports every problem of the options at once, naming their
// fields. It reads the secret files, so that an empty or missing one is a
// configuration error now rather than a failed sync later; it does no
// network access.
func (o Options) Validate() error {
	var problems []error
	if o.Concurrency < 0 {
		problems = append(problems, kit.Fieldf("{Concurrency} %d: must be positive", o.Concurrency))
	}
	if (o.AccessKeyFile == "") != (o.SecretKeyFile == "") {
		problems = append(problems, kit.Fieldf("{AccessKeyFile} and {SecretKeyFile} go together"))
	}
	if o.SessionTokenFile != "" && o.AccessKeyFile == "" {
		problems = append(problems, kit.Fieldf("{SessionTokenFile} needs {AccessKeyFile} and {SecretKeyFile}"))
	}
	if o.Anonymous && o.AccessKeyFile != "" {
		problems = append(problems, kit.Fieldf("{Anonymous} contradicts {AccessKeyFile}"))
	}
	for _, f := range o.secretFiles() {
		if f.path == "" {
			continue
		}
		if _, err := kit.ReadSecret(f.path); err != nil {
			problems = append(problems, kit.Fieldf("{"+f.field+"}: %v", err))
		}
	}
	if _, err := parseEndpoint(o.Endpoint); err != nil {
		problems = append(problems, err)
	}
	return errors.Join(problems...)
}

// Source publishes an S3 prefix or object. Fetch is not called
// concurrently (the daemon syncs a source at a time).
type Source struct {
	loc      location
	opts     Options
	log      *slog.Logger
	client   *s3.Client
	cfg      aws.Config
	imdsOnly bool         // the SDK chain found nothing but EC2 instance metadata
	limits   fetch.Limits // the publish engine's, with defaults: they bound the listing

	// A single object's source remembers the ETag behind the published
	// revision, for the conditional GET, in state ("" without a state
	// directory).
	state  kit.StateFile
	object objectState
}

var _ fetch.Source = (*Source)(nil)

// New builds a source for u, the URL without its "s3::" prefix:
//
//	s3://BUCKET/KEY?region=R                     AWS; region from the URL, the options, the SDK, else us-east-1
//	https://s3.REGION.amazonaws.com/BUCKET/KEY   AWS, path style (also s3.amazonaws.com, s3-REGION.amazonaws.com)
//	https://BUCKET.s3.REGION.amazonaws.com/KEY   AWS, virtual-hosted (also BUCKET.s3-REGION, BUCKET.s3)
//	http(s)://HOST[:PORT]/BUCKET/KEY             any other host: a custom endpoint, path style
//
// A KEY that is empty or ends in "/" is a prefix, published as a tree (keys
// below it, minus the prefix, are the paths); any other KEY names a single
// object, published under its base name, and ?version=ID may pin one of its
// versions. A "//subdir" names a prefix below KEY. New checks the URL and
// the options (Validate), all without network access.
func New(u *fetch.URL, o Options, env fetch.Env) (*Source, error) {
	loc, err := parseLocation(u, o)
	if err := errors.Join(o.Validate(), err); err != nil {
		return nil, err
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, f := range o.secretFiles() {
		kit.WarnExposed(log.With("field", f.field), f.path)
	}
	client, cfg, err := newClient(loc, o, log)
	if err != nil {
		return nil, err
	}
	s := &Source{loc: loc, opts: o, log: log, client: client, cfg: cfg, imdsOnly: chainIsIMDS(cfg, o),
		limits: env.Limits.WithDefaults()}
	if !loc.prefix && env.StateDir != "" {
		// What a previous process saved: after a restart the first poll
		// is still a conditional GET. Without it, the GET is unconditional.
		kit.RemoveTemp(env.StateDir)
		s.state = kit.StateFile(filepath.Join(env.StateDir, objectStateFile))
		s.state.Load(&s.object)
	}
	return s, nil
}

// Fetch lists the prefix (or asks for the object only if it changed) and,
// when the revision differs from prev, writes the new tree. Objects whose
// ETag and size are those of the published revision are reused by the
// Writer without a GET.
func (s *Source) Fetch(ctx context.Context, prev string, w fetch.Writer) (string, error) {
	creds, err := s.credentials(ctx)
	if err != nil {
		return "", fmt.Errorf("s3 %s: %w", s.loc, err)
	}
	var rev string
	if s.loc.prefix {
		rev, err = s.fetchPrefix(ctx, prev, w, creds)
	} else {
		rev, err = s.fetchObject(ctx, prev, w, creds)
	}
	if err != nil {
		return "", scrub(ctx, err, creds)
	}
	return rev, nil
}

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

// revision digests the sorted (key, ETag, size) list.
func revision(objs []object) string {
	sorted := slices.SortedFunc(slices.Values(objs), func(a, b object) int { return strings.Compare(a.key, b.key) })
	h := sha256.New()
	for _, o := range sorted {
		fmt.Fprintf(h, "%q %s %d\n", o.key, o.etag, o.size)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Source) fetchPrefix(ctx context.Context, prev string, w fetch.Writer, creds aws.CredentialsProvider) (string, error) {
	objs, err := s.list(ctx, creds)
	if err != nil {
		return "", err
	}
	if len(objs) == 0 && !s.opts.AllowEmpty {
		return "", fetch.Permanent(fmt.Errorf("s3 list %s: no objects under the prefix (allow an empty prefix to publish an empty tree)", s.loc))
	}
	rev := revision(objs)
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
	what := "s3 list " + s.loc.String()
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

// fileMode is the mode of every published object: S3 has no exec bit.
const fileMode fs.FileMode = 0o644

// download writes every object through w, at most Concurrency at once.
// The Writer calls an Opener, and so issues a GET, only for objects it
// cannot reuse from the published revision; each body streams to disk.
// The first failure cancels the rest: they would only add noise.
func (s *Source) download(ctx context.Context, objs []object, w fetch.Writer, creds aws.CredentialsProvider) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg gosync.WaitGroup
	slots := make(chan struct{}, s.opts.Concurrency)
	for _, o := range objs {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-slots }()
			if err := w.WriteFile(o.name, fileMode, o.contentKey(), s.opener(ctx, o, creds)); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// opener returns the Opener that GETs o. If-Match pins the GET to the
// listed ETag: an object replaced between the listing and the GET fails the
// sync (a transient error; the next attempt lists again) instead of mixing
// the new content into a revision named after the old listing. The ETag is
// checked again on the answer for servers that ignore If-Match.
func (s *Source) opener(ctx context.Context, o object, creds aws.CredentialsProvider) fetch.Opener {
	return func() (io.ReadCloser, error) {
		what := "s3 get s3://" + s.loc.bucket + "/" + o.key
		out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
			Bucket:  aws.String(s.loc.bucket),
			Key:     aws.String(o.key),
			IfMatch: aws.String(o.etag),
		}, withCredentials(creds))
		if err != nil {
			return nil, describe(what, err)
		}
		if got := aws.ToString(out.ETag); got != o.etag || aws.ToInt64(out.ContentLength) != o.size {
			out.Body.Close()
			return nil, fmt.Errorf("%s: the object changed during the sync (ETag %s, %d bytes; listed %s, %d bytes); will retry",
				what, got, aws.ToInt64(out.ContentLength), o.etag, o.size)
		}
		return &exactReader{r: out.Body, left: o.size, what: what}, nil
	}
}

// exactReader fails a body that ends before its announced size: a cut
// connection must not publish a truncated file.
type exactReader struct {
	r    io.ReadCloser
	left int64
	what string
}

func (e *exactReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF && e.left != 0 {
		return n, fmt.Errorf("%s: body ended %d bytes short", e.what, e.left)
	}
	return n, err
}

func (e *exactReader) Close() error { return e.r.Close() }

// objectState is what a single-object source keeps between syncs.
type objectState struct {
	Rev  string `json:"rev"`
	ETag string `json:"etag"`
}

const objectStateFile = "s3-object.json"

// fetchObject publishes one object. One conditional GET (If-None-Match on
// the published ETag) is both the change check and the download.
func (s *Source) fetchObject(ctx context.Context, prev string, w fetch.Writer, creds aws.CredentialsProvider) (string, error) {
	what := "s3 get " + s.loc.String()
	in := &s3.GetObjectInput{Bucket: aws.String(s.loc.bucket), Key: aws.String(s.loc.key)}
	if s.loc.version != "" {
		in.VersionId = aws.String(s.loc.version)
	}
	if prev != "" && s.object.Rev == prev && s.object.ETag != "" {
		in.IfNoneMatch = aws.String(s.object.ETag)
	}
	out, err := s.client.GetObject(ctx, in, withCredentials(creds))
	if err != nil {
		if httpStatus(err) == 304 && in.IfNoneMatch != nil {
			return prev, nil
		}
		// A 304 to a GET without If-None-Match is described as an error:
		// taken for "unchanged", it would end a first sync with nothing
		// published and no error.
		return "", describe(what, err)
	}
	// The Writer may reuse the published file and never open the body.
	defer out.Body.Close()
	o := object{key: s.loc.key, name: path.Base(s.loc.key), etag: aws.ToString(out.ETag), size: aws.ToInt64(out.ContentLength)}
	rev := revision([]object{o})
	if rev != prev {
		err := w.WriteFile(o.name, fileMode, o.contentKey(), func() (io.ReadCloser, error) {
			return &exactReader{r: io.NopCloser(out.Body), left: o.size, what: what}, nil
		})
		if err != nil {
			return "", err
		}
	}
	st := objectState{Rev: rev, ETag: o.etag}
	if st != s.object && s.state != "" {
		// Losing it costs one unconditional GET, never correctness.
		if err := s.state.Save(st); err != nil {
			s.log.Warn("s3 state not saved", "err", err)
		}
	}
	s.object = st
	return rev, nil
}
