package s3

import (
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// The SDK decodes an XML response, a listing page or an error, whole into
// memory: these bound how much of one it may read. Object bodies are
// streamed to disk and bounded by the Writer instead.
const (
	// maxListPageBytes bounds one ListObjectsV2 page. A page of 1,000 keys
	// is at most about 6.6 MB even with 1 KiB keys whose every byte is
	// escaped as an XML entity (6 bytes), plus ~500 bytes of fields each;
	// a larger page comes from a server that ignores max-keys.
	maxListPageBytes = 8 << 20
	// maxErrorBody bounds an error response: S3's are a few hundred bytes.
	maxErrorBody = 1 << 20
)

// boundedClient is the SDK's HTTP client with response bodies capped: an
// error body always at maxErrorBody, any other at max when it is set. A
// body past its cap fails with bodyTooLarge instead of growing the heap
// for as long as the server keeps sending.
type boundedClient struct {
	next s3.HTTPClient
	max  int64 // 0: only error bodies are capped
}

func (c boundedClient) Do(req *http.Request) (*http.Response, error) {
	resp, err := c.next.Do(req)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	limit := c.max
	if (resp.StatusCode < 200 || resp.StatusCode > 299) && (limit == 0 || limit > maxErrorBody) {
		limit = maxErrorBody
	}
	if limit > 0 {
		resp.Body = &cappedBody{rc: resp.Body, limit: limit, declared: resp.ContentLength}
	}
	return resp, nil
}

// withBodyLimit caps every response body of one operation at max bytes.
func withBodyLimit(max int64) func(*s3.Options) {
	return func(o *s3.Options) { o.HTTPClient = boundedClient{next: o.HTTPClient, max: max} }
}

// cappedBody fails, never truncates, once more than limit bytes were read;
// a declared Content-Length over the limit fails the first read.
type cappedBody struct {
	rc       io.ReadCloser
	limit    int64
	declared int64
	n        int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.declared > b.limit || b.n > b.limit {
		return 0, &bodyTooLarge{limit: b.limit}
	}
	if rem := b.limit - b.n; int64(len(p)) > rem+1 {
		p = p[:rem+1] // one byte past the limit is enough to know
	}
	n, err := b.rc.Read(p)
	if b.n += int64(n); b.n > b.limit {
		return n, &bodyTooLarge{limit: b.limit}
	}
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }

// bodyTooLarge is a response body over its cap. The SDK does not retry
// it: the server would send the same body again.
type bodyTooLarge struct{ limit int64 }

func (e *bodyTooLarge) Error() string {
	return fmt.Sprintf("response body larger than %d bytes", e.limit)
}

func (e *bodyTooLarge) RetryableError() bool { return false }
