package s3

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	gosync "sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrysync/ferry/fetch"
)

// fileMode is the mode of every published object: S3 has no exec bit.
const fileMode fs.FileMode = 0o644

// download writes every object through w, at most Concurrency at once.
// The Writer calls an Opener, and so issues a GET, only for objects it
// cannot reuse from the published revision; each body streams to disk.
// The first failure cancels the rest: they would only add noise.
//
// A fixed set of workers takes the objects in turn: a goroutine per object
// would grow a fresh stack through the SDK's deep middleware chain for
// every GET, a cost a cold sync of thousands of small objects pays in full.
func (s *Source) download(ctx context.Context, objs []object, w fetch.Writer, creds aws.CredentialsProvider) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan object)
	var wg gosync.WaitGroup
	for range min(s.opts.Concurrency, len(objs)) {
		wg.Go(func() {
			for o := range next {
				if ctx.Err() != nil {
					continue // the feed stops too; drain what it sent
				}
				if err := w.WriteFile(o.name, fileMode, o.contentKey(), s.opener(ctx, o, creds)); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for _, o := range objs {
		select {
		case next <- o:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
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
		what := "s3 get s3://" + s.loc.bucket + "/" + o.key + s.loc.at()
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

// Size returns the bytes left to read: before the first read, the object's
// size.
func (e *exactReader) Size() int64 { return e.left }

var _ fetch.Sized = (*exactReader)(nil)
