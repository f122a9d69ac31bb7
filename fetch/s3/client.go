package s3

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/http"
	gosync "sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/logging"

	"github.com/ferrysync/ferry/internal/report"
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
		return nil, cfg, report.Fieldf("no AWS credentials: the environment and the shared config name none, and the EC2 instance metadata service is disabled " +
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
