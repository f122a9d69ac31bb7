package s3

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strings"
	gosync "sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/logging"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/kit"
)

// newClient builds the S3 client from the SDK's default configuration
// (environment, shared config and credentials files, web identity, EKS Pod
// Identity, ECS, IMDS) and the options. It does no network access:
// LoadDefaultConfig only reads the environment and local files, and every
// credential provider is resolved lazily, on the first request.
func newClient(l location, o Options, log *slog.Logger) (*s3.Client, aws.Config, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithLogger(sdkLogger{log}),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) {
				// One more try absorbs a dropped keep-alive connection; the
				// daemon's loop does the rest with its backoff, so that its
				// timeout of a sync keeps its meaning.
				so.MaxAttempts = 2
				so.MaxBackoff = time.Second
				// The client-side retry quota would turn a long outage into
				// "retry quota exceeded" errors after it ends.
				so.RateLimiter = ratelimit.None
			})
		}),
	}
	if l.region != "" {
		opts = append(opts, config.WithRegion(l.region))
	} else {
		// Used only when neither AWS_REGION nor the profile names one;
		// also the region of STS for web identity credentials. It is what
		// MinIO, Ceph and versitygw expect by default, and on AWS a wrong
		// region is reported with the bucket's real one (see describe).
		opts = append(opts, config.WithDefaultRegion("us-east-1"))
	}
	// Keep a connection per download worker alive between syncs.
	opts = append(opts, config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConnsPerHost = max(tr.MaxIdleConnsPerHost, o.Concurrency)
	})))
	if imdsOff(o) {
		// Outside EC2 the instance metadata probe costs seconds per sync
		// before failing; with credentials configured it is never useful.
		opts = append(opts, config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	}
	if o.Anonymous || o.AccessKeyFile != "" {
		// The chain is not used: each Fetch passes its own credentials. A
		// placeholder keeps LoadDefaultConfig from building the chain.
		opts = append(opts, config.WithCredentialsProvider(aws.AnonymousCredentials{}))
	}
	cfg, err := config.LoadDefaultConfig(context.Background(), opts...)
	if err != nil {
		return nil, cfg, fmt.Errorf("AWS configuration: %w", err)
	}
	if chainIsIMDS(cfg, o) && imdsOff(o) {
		return nil, cfg, kit.Fieldf("no AWS credentials: the environment and the shared config name none, and the EC2 instance metadata service is disabled " +
			"({NoIMDS} or AWS_EC2_METADATA_DISABLED); use {AccessKeyFile} and {SecretKeyFile}, or {Anonymous} for a public bucket")
	}
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		so.UsePathStyle = l.pathStyle
		if l.endpoint != "" {
			so.BaseEndpoint = aws.String(l.endpoint)
		}
		// Objects uploaded without a checksum (most of them, and all on
		// older servers) would log a warning on every GET.
		so.DisableLogOutputChecksumValidationSkipped = true
		so.HTTPSignerV4 = &rotatingSigner{logger: so.Logger}
		so.HTTPClient = boundedClient{next: so.HTTPClient}
	})
	return client, cfg, nil
}

// rotatingSigner signs with SigV4 like the SDK's default S3 signer, but
// starts a fresh signer when the secret key changes. The SDK's signer
// caches the derived signing key by access key ID and day only
// (aws/aws-sdk-go-v2#3350): a secret rotated, or corrected, under the same
// key ID would otherwise keep failing with SignatureDoesNotMatch until
// midnight UTC.
type rotatingSigner struct {
	logger logging.Logger

	mu     gosync.Mutex
	secret [sha256.Size]byte // a digest: the secret itself is not kept here
	signer *v4.Signer
}

func (r *rotatingSigner) SignHTTP(ctx context.Context, creds aws.Credentials, req *http.Request, payloadHash, service, region string, t time.Time, optFns ...func(*v4.SignerOptions)) error {
	sum := sha256.Sum256([]byte(creds.SecretAccessKey))
	r.mu.Lock()
	if r.signer == nil || sum != r.secret {
		r.secret = sum
		r.signer = v4.NewSigner(func(so *v4.SignerOptions) {
			so.Logger = r.logger
			// As the S3 client's own signer: keys are already escaped.
			so.DisableURIPathEscaping = true
		})
	}
	signer := r.signer
	r.mu.Unlock()
	return signer.SignHTTP(ctx, creds, req, payloadHash, service, region, t, optFns...)
}

// sdkLogger sends the SDK's own log lines to the source's logger.
type sdkLogger struct{ log *slog.Logger }

func (l sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	level := slog.LevelDebug
	if c == logging.Warn {
		level = slog.LevelWarn
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, v...), "component", "aws-sdk")
}

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

// credentials returns the credentials one Fetch uses. Key files are read
// again on every call, so a rotated Kubernetes Secret takes effect at the
// next sync; the SDK chain caches and refreshes on its own. Resolving them
// up front gives a credentials problem its own clear error.
func (s *Source) credentials(ctx context.Context) (aws.CredentialsProvider, error) {
	switch {
	case s.opts.Anonymous:
		// No provider at all makes the S3 client choose its anonymous
		// scheme; aws.AnonymousCredentials would fail to sign.
		return nil, nil
	case s.opts.AccessKeyFile != "":
		var keys [3]string // access key ID, secret key, session token
		for i, f := range s.opts.secretFiles() {
			if f.path == "" {
				continue
			}
			v, err := kit.ReadSecret(f.path)
			var pe *fs.PathError
			switch {
			case errors.As(err, &pe):
				return nil, err // unreadable, maybe being swapped: worth a retry
			case err != nil:
				return nil, fetch.Permanent(err) // the content is refused
			}
			keys[i] = v
		}
		return credentials.NewStaticCredentialsProvider(keys[0], keys[1], keys[2]), nil
	}
	if _, err := s.cfg.Credentials.Retrieve(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if s.imdsOnly {
			return nil, kit.Errorf(err, "no AWS credentials: none configured, and the EC2 instance metadata service gave none (%s); "+
				"outside EC2 give key files or ask for anonymous access, and turn the instance metadata service off", innermost(err))
		}
		return nil, kit.Errorf(err, "AWS credentials: %s", innermost(err))
	}
	return s.cfg.Credentials, nil
}

// withCredentials makes one operation use p.
func withCredentials(p aws.CredentialsProvider) func(*s3.Options) {
	return func(o *s3.Options) { o.Credentials = p }
}

// chainIsIMDS reports whether the SDK's chain, finding nothing configured
// (no keys in the environment, no profile, no web identity, no container
// credentials), fell back to the EC2 instance metadata service. The chain
// picks one provider from the configuration; it does not try them in turn.
func chainIsIMDS(cfg aws.Config, o Options) bool {
	return !o.Anonymous && o.AccessKeyFile == "" &&
		aws.IsCredentialsProvider(cfg.Credentials, (*ec2rolecreds.Provider)(nil))
}

// imdsOff reports whether the instance metadata service must not be
// probed: the user said so, or credentials come from somewhere else.
func imdsOff(o Options) bool {
	if o.NoIMDS || o.Anonymous || o.AccessKeyFile != "" ||
		strings.EqualFold(os.Getenv("AWS_EC2_METADATA_DISABLED"), "true") {
		return true
	}
	// Static keys, web identity (IRSA) and container credentials (ECS,
	// EKS Pod Identity) in the environment are chosen before IMDS.
	for _, env := range []string{"AWS_ACCESS_KEY_ID", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"} {
		if os.Getenv(env) != "" {
			return true
		}
	}
	return false
}
