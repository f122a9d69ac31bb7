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
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	gosync "sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrysync/ferry/fetch"
)

// DefaultConcurrency is how many objects are downloaded at once.
const DefaultConcurrency = 8

// fileMode is the mode of every published object: S3 has no exec bit.
const fileMode fs.FileMode = 0o644

// Options configure S3 sources. Secrets are given as file paths and read
// again on every sync, so a rotated Kubernetes Secret is picked up without
// a restart. The zero value uses the AWS SDK's default credential chain.
type Options struct {
	// Endpoint is http(s)://HOST[:PORT] of an S3-compatible service, for
	// s3://BUCKET URLs (--s3-endpoint). A URL written as
	// http(s)://HOST/BUCKET/KEY names its endpoint itself.
	Endpoint string
	// Region signs the requests when the URL does not name one
	// (--s3-region); otherwise the SDK's (AWS_REGION, the profile), then
	// us-east-1.
	Region string
	// PathStyle puts the bucket in the path rather than the host name
	// (--s3-path-style). Custom endpoints always use path style.
	PathStyle bool
	// AccessKeyFile and SecretKeyFile hold a static key pair
	// (--s3-access-key-file, --s3-secret-key-file); both or neither.
	AccessKeyFile string
	SecretKeyFile string
	// SessionTokenFile holds a session token for temporary keys
	// (--s3-session-token-file).
	SessionTokenFile string
	// Anonymous sends unsigned requests, for public buckets (--s3-anonymous).
	Anonymous bool
	// NoIMDS keeps the SDK from asking the EC2 instance metadata service
	// for credentials (--s3-no-imds). It is implied by the key files,
	// Anonymous, AWS_EC2_METADATA_DISABLED=true and credentials in the
	// environment.
	NoIMDS bool
	// Concurrency bounds parallel downloads (--s3-concurrency); 0 means
	// DefaultConcurrency.
	Concurrency int
	// AllowEmpty publishes an empty tree when the prefix holds no object
	// (--allow-empty); by default that is an error, since replacing real
	// configuration with nothing is almost never intended.
	AllowEmpty bool
}

// Source publishes an S3 prefix or object. Fetch is not called
// concurrently (the daemon syncs a source at a time).
type Source struct {
	loc      location
	opts     Options
	log      *slog.Logger
	client   *s3.Client
	cfg      aws.Config
	imdsOnly bool // the SDK chain found nothing but EC2 instance metadata
	stateDir string
	limits   fetch.Limits // the publish engine's, with defaults: they bound the listing

	// object remembers the ETag behind the published revision of a single
	// object, for the conditional GET.
	object     objectState
	objectRead bool
}

var _ fetch.Source = (*Source)(nil)

// New builds a source for u, the URL without its "s3::" prefix:
//
//	s3://BUCKET/KEY?region=R                     AWS; region from the URL, --s3-region, the SDK, else us-east-1
//	https://s3.REGION.amazonaws.com/BUCKET/KEY   AWS, path style (also s3.amazonaws.com, s3-REGION.amazonaws.com)
//	https://BUCKET.s3.REGION.amazonaws.com/KEY   AWS, virtual-hosted (also BUCKET.s3-REGION, BUCKET.s3)
//	http(s)://HOST[:PORT]/BUCKET/KEY             any other host: a custom endpoint, path style
//
// A KEY that is empty or ends in "/" is a prefix, published as a tree (keys
// below it, minus the prefix, are the paths); any other KEY names a single
// object, published under its base name, and ?version=ID may pin one of its
// versions. A "//subdir" names a prefix below KEY. New checks the URL, the
// options, and that the key files exist and are not empty, all without
// network access.
func New(u *fetch.URL, o Options, env fetch.Env) (*Source, error) {
	var problems []error
	if o.Concurrency < 0 {
		problems = append(problems, fmt.Errorf("--s3-concurrency %d: must be positive", o.Concurrency))
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if (o.AccessKeyFile == "") != (o.SecretKeyFile == "") {
		problems = append(problems, errors.New("--s3-access-key-file and --s3-secret-key-file go together"))
	}
	if o.SessionTokenFile != "" && o.AccessKeyFile == "" {
		problems = append(problems, errors.New("--s3-session-token-file needs --s3-access-key-file and --s3-secret-key-file"))
	}
	if o.Anonymous && o.AccessKeyFile != "" {
		problems = append(problems, errors.New("--s3-anonymous contradicts --s3-access-key-file"))
	}
	for _, f := range []struct{ flag, path string }{
		{"--s3-access-key-file", o.AccessKeyFile},
		{"--s3-secret-key-file", o.SecretKeyFile},
		{"--s3-session-token-file", o.SessionTokenFile},
	} {
		if f.path == "" {
			continue
		}
		if fi, err := os.Stat(f.path); err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", f.flag, err))
		} else if fi.IsDir() {
			problems = append(problems, fmt.Errorf("%s: %s is a directory", f.flag, f.path))
		} else if _, err := readSecret(f.path, f.flag); err != nil {
			// Empty or unreadable: a configuration error now, as for the
			// HTTP source's files, not a failed sync later.
			problems = append(problems, err)
		}
	}
	loc, err := parseLocation(u, o)
	if err != nil {
		problems = append(problems, err)
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fetch.WarnExposedSecret(log, "--s3-access-key-file", o.AccessKeyFile)
	fetch.WarnExposedSecret(log, "--s3-secret-key-file", o.SecretKeyFile)
	fetch.WarnExposedSecret(log, "--s3-session-token-file", o.SessionTokenFile)
	client, cfg, err := newClient(loc, o, log)
	if err != nil {
		return nil, err
	}
	return &Source{loc: loc, opts: o, log: log, client: client, cfg: cfg, imdsOnly: chainIsIMDS(cfg, o),
		stateDir: env.StateDir, limits: env.Limits.WithDefaults()}, nil
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
	sorted := append([]object(nil), objs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].key < sorted[j].key })
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
		return "", fetch.Permanent(fmt.Errorf("s3 list %s: no objects under the prefix (use --allow-empty to publish an empty tree)", s.loc))
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
// within --max-files takes MaxFiles/1000 pages from a server that fills
// its pages; S3 allows short pages before the end, hence the margin.
func maxListPages(l fetch.Limits) int { return max(l.MaxFiles/10, 1000) }

// list pages through ListObjectsV2 and maps keys to names, refusing keys
// that cannot be published safely. It is bounded by the limits, not by
// the server: it stops as soon as the objects, or the directory markers,
// are more than --max-files allows (the Writer would refuse that tree), a
// page's body is larger than maxListPageBytes, or the pages are more than
// maxListPages.
func (s *Source) list(ctx context.Context, creds aws.CredentialsProvider) ([]object, error) {
	what := "list " + s.loc.String()
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket:  aws.String(s.loc.bucket),
		Prefix:  aws.String(s.loc.key),
		MaxKeys: aws.Int32(listPageKeys),
	})
	refuse := func(format string, args ...any) error {
		return fetch.Permanent(fmt.Errorf("s3 %s: %s", what, fmt.Sprintf(format, args...)))
	}
	var objs []object
	markers, pages := 0, 0
	for p.HasMorePages() {
		if pages == maxListPages(s.limits) {
			return nil, refuse("the listing did not end after %d pages, the bound for --max-files %d: the server keeps paginating", pages, s.limits.MaxFiles)
		}
		page, err := p.NextPage(ctx, withCredentials(creds), withBodyLimit(maxListPageBytes))
		if err != nil {
			var big *bodyTooLarge
			if errors.As(err, &big) && httpStatus(err) < 300 {
				return nil, refuse("a page of the listing is larger than %d bytes although at most %d keys were asked for: the server ignores max-keys", big.limit, listPageKeys)
			}
			return nil, fmt.Errorf("s3 %w", describe(what, err))
		}
		pages++
		if aws.ToBool(page.IsTruncated) && aws.ToString(page.NextContinuationToken) == "" {
			// The paginator would end here, and a partial tree be published.
			return nil, refuse("page %d of the listing is truncated but has no continuation token", pages)
		}
		for _, c := range page.Contents {
			key, size := aws.ToString(c.Key), aws.ToInt64(c.Size)
			name := strings.TrimPrefix(key, s.loc.key)
			if strings.HasSuffix(key, "/") {
				if size != 0 {
					return nil, refuse("key %q ends in \"/\" but holds %d bytes: it cannot be published as a file", key, size)
				}
				// A "directory marker" made by consoles and tools: nothing
				// to publish, but counted as the Writer counts directories.
				if markers++; markers > s.limits.MaxFiles {
					return nil, refuse("more than %d directory markers under the prefix (--max-files)", s.limits.MaxFiles)
				}
				continue
			}
			if err := checkName(name); err != nil {
				return nil, fetch.Permanent(fmt.Errorf("s3 %s: key %q: %w", what, key, err))
			}
			if len(objs) == s.limits.MaxFiles {
				return nil, refuse("more than %d objects under the prefix (--max-files)", s.limits.MaxFiles)
			}
			objs = append(objs, object{key: key, name: name, etag: aws.ToString(c.ETag), size: size})
		}
	}
	s.log.Debug("s3 listed", "objects", len(objs), "markers", markers, "pages", pages)
	return objs, nil
}

// checkName refuses a name that would not stay inside the revision, or
// would alias another: the Writer refuses escapes too, but this names the
// S3 key and the reason.
func checkName(name string) error {
	if name == "" {
		return errors.New("empty name")
	}
	if strings.HasPrefix(name, "/") {
		return errors.New("absolute path: it would leave the revision")
	}
	if strings.ContainsRune(name, 0) {
		return errors.New("NUL in the name")
	}
	for _, c := range strings.Split(name, "/") {
		switch c {
		case "..":
			return errors.New("\"..\" component: it would leave the revision")
		case ".", "":
			return errors.New("empty or \".\" path component")
		}
	}
	return nil
}

// download writes every object through w with bounded concurrency. The
// Writer calls an Opener, and so issues a GET, only for objects it cannot
// reuse from the published revision; each body streams to disk.
func (s *Source) download(ctx context.Context, objs []object, w fetch.Writer, creds aws.CredentialsProvider) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       gosync.Mutex
		firstErr error
		wg       gosync.WaitGroup
		jobs     = make(chan object)
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel() // the others would only add noise
		}
		mu.Unlock()
	}
	for range min(s.opts.Concurrency, len(objs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range jobs {
				if ctx.Err() != nil {
					continue
				}
				if err := w.WriteFile(o.name, fileMode, o.contentKey(), s.opener(ctx, o, creds)); err != nil {
					fail(err)
				}
			}
		}()
	}
feed:
	for _, o := range objs {
		select {
		case jobs <- o:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// opener returns the Opener that GETs o. If-Match pins the GET to the
// listed ETag: an object replaced between the listing and the GET fails the
// sync (a transient error; the next attempt lists again) instead of mixing
// the new content into a revision named after the old listing. The ETag is
// checked again on the answer for servers that ignore If-Match.
func (s *Source) opener(ctx context.Context, o object, creds aws.CredentialsProvider) fetch.Opener {
	return func() (io.ReadCloser, error) {
		what := "get s3://" + s.loc.bucket + "/" + o.key
		out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
			Bucket:  aws.String(s.loc.bucket),
			Key:     aws.String(o.key),
			IfMatch: aws.String(o.etag),
		}, withCredentials(creds))
		if err != nil {
			return nil, fmt.Errorf("s3 %w", describe(what, err))
		}
		if got := aws.ToString(out.ETag); got != o.etag || aws.ToInt64(out.ContentLength) != o.size {
			out.Body.Close()
			return nil, fmt.Errorf("s3 %s: the object changed during the sync (ETag %s, %d bytes; listed %s, %d bytes); will retry",
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
		return n, fmt.Errorf("s3 %s: body ended %d bytes short", e.what, e.left)
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
	s.loadObjectState()
	what := "get " + s.loc.String()
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
		return "", fmt.Errorf("s3 %w", describe(what, err))
	}
	body := &onceCloser{rc: out.Body}
	defer body.Close()
	o := object{key: s.loc.key, name: path.Base(s.loc.key), etag: aws.ToString(out.ETag), size: aws.ToInt64(out.ContentLength)}
	if err := checkName(o.name); err != nil {
		return "", fetch.Permanent(fmt.Errorf("s3 %s: key %q: %w", what, o.key, err))
	}
	rev := revision([]object{o})
	if rev != prev {
		err := w.WriteFile(o.name, fileMode, o.contentKey(), func() (io.ReadCloser, error) {
			return &exactReader{r: body, left: o.size, what: what}, nil
		})
		if err != nil {
			return "", err
		}
	}
	s.saveObjectState(objectState{Rev: rev, ETag: o.etag})
	return rev, nil
}

// loadObjectState reads the state a previous process left, once: after a
// restart the first poll is then still a conditional GET.
func (s *Source) loadObjectState() {
	if s.objectRead || s.stateDir == "" {
		return
	}
	s.objectRead = true
	data, err := os.ReadFile(filepath.Join(s.stateDir, objectStateFile))
	if err != nil {
		return
	}
	var st objectState
	if json.Unmarshal(data, &st) == nil {
		s.object = st
	}
}

// saveObjectState remembers st in memory and, best effort, on disk: losing
// it costs one unconditional GET, never correctness.
func (s *Source) saveObjectState(st objectState) {
	s.objectRead = true
	if s.object == st {
		return
	}
	s.object = st
	if s.stateDir == "" {
		return
	}
	data, _ := json.Marshal(st)
	// Only the state directory itself, private: its parent, ROOT/.ferry/NAME,
	// holds the published revisions and was made 0755 by the Writer before
	// any state is saved (there is a revision, or one being staged).
	// Creating it here would give it the umask's mode, maybe too narrow
	// for an app running as another user.
	if err := os.Mkdir(s.stateDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		s.log.Warn("s3 state not saved", "err", err)
		return
	}
	tmp := filepath.Join(s.stateDir, "."+objectStateFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		s.log.Warn("s3 state not saved", "err", err)
		return
	}
	if err := os.Rename(tmp, filepath.Join(s.stateDir, objectStateFile)); err != nil {
		s.log.Warn("s3 state not saved", "err", err)
	}
}

// onceCloser lets both the Writer and fetchObject close the body.
type onceCloser struct {
	rc   io.ReadCloser
	once gosync.Once
	err  error
}

func (c *onceCloser) Read(p []byte) (int, error) { return c.rc.Read(p) }
func (c *onceCloser) Close() error {
	c.once.Do(func() { c.err = c.rc.Close() })
	return c.err
}
