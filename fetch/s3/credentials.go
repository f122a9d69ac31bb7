package s3

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/kit"
	"github.com/ferrysync/ferry/internal/report"
)

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
			return nil, report.Errorf(err, "no AWS credentials: none configured, and the EC2 instance metadata service gave none (%s); "+
				"outside EC2 give key files or ask for anonymous access, and turn the instance metadata service off", innermost(err))
		}
		return nil, report.Errorf(err, "AWS credentials: %s", innermost(err))
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
