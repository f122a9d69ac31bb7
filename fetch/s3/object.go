package s3

import (
	"context"
	"io"
	"path"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrysync/ferry/fetch"
)

// objectState is what a single-object source keeps between syncs.
type objectState struct {
	Rev  string `json:"rev"`
	ETag string `json:"etag"`
}

const objectStateFile = "s3-object.json"

// fetchObject publishes one object. One conditional GET (If-None-Match on
// the published ETag) is both the change check and the download.
func (s *Source) fetchObject(ctx context.Context, prev string, w fetch.Writer, creds aws.CredentialsProvider) (string, error) {
	what := "s3 get " + s.loc.String() + s.loc.at()
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
			s.log.Warn("s3 state not saved", "error", err)
		}
	}
	s.object = st
	return rev, nil
}
