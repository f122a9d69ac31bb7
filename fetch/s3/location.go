package s3

import (
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/redact"
	"github.com/ferrysync/ferry/internal/report"
)

// location is where a source's content lives, resolved from the URL and
// the options without any network access.
type location struct {
	bucket string
	// key is the object key (single object) or the key prefix ("" for the
	// whole bucket, otherwise ending in "/").
	key    string
	prefix bool
	// version pins one version of a single object.
	version string
	// endpoint is scheme://host[:port] of an S3-compatible service; "" lets
	// the SDK resolve the AWS endpoint from the region.
	endpoint  string
	region    string // "" when neither the URL nor the options name one
	pathStyle bool
}

// String names the content for logs and errors: never the endpoint's
// userinfo, never a secret (none can be in it: New refuses them).
func (l location) String() string {
	s := "s3://" + l.bucket + "/" + l.key
	if l.version != "" {
		s += "?version=" + l.version
	}
	return s
}

// at names the endpoint in an error, " at http://127.0.0.1:9000", when the
// URL or the options chose one: "the bucket does not exist" means little
// without the server that said so.
func (l location) at() string {
	if l.endpoint == "" {
		return ""
	}
	return " at " + l.endpoint
}

// awsSuffixes are the DNS suffixes of AWS S3 endpoints. A URL on one of
// these is addressed the way AWS does it; any other host is a custom
// endpoint (MinIO, Ceph, R2, versitygw) spoken to in path style.
var awsSuffixes = []string{".amazonaws.com", ".amazonaws.com.cn"}

// CredentialParams are the query parameters of go-getter's S3 URLs that
// carry credentials: refused, since a URL is shown and written where a
// secret must not be (credentials come from files or the SDK's chain).
var CredentialParams = [...]string{"aws_access_key_id", "aws_access_key_secret", "aws_access_token"}

// parseLocation reads the source URL (without the "s3::" prefix) in the
// forms New documents, and applies the options that locate the content.
func parseLocation(u *fetch.URL, o Options) (location, error) {
	var l location
	q := u.URL.Query()
	for k := range q {
		switch {
		case k == "region", k == "version":
		case slices.Contains(CredentialParams[:], k):
			return l, report.Fieldf("credentials in the URL (%s) are not accepted: use {AccessKeyFile} and {SecretKeyFile}", k)
		default:
			return l, fmt.Errorf("unknown S3 URL option %q (known: region, version)", k)
		}
	}
	if u.URL.User != nil {
		return l, report.Fieldf("credentials in the URL are not accepted: use {AccessKeyFile} and {SecretKeyFile}")
	}
	if u.URL.Fragment != "" {
		return l, fmt.Errorf("S3 URL has a fragment %q", u.URL.Fragment)
	}

	var hostRegion, key string
	host := u.URL.Hostname()
	switch u.URL.Scheme {
	case "s3":
		if host == "" || u.URL.Port() != "" {
			return l, fmt.Errorf("S3 URL %s: want s3://BUCKET/KEY", fetch.Redact(u.URL))
		}
		l.bucket, key = host, strings.TrimPrefix(u.URL.Path, "/")
		l.endpoint, _ = parseEndpoint(o.Endpoint) // its errors are Validate's
	case "http", "https":
		if host == "" {
			return l, fmt.Errorf("S3 URL %s has no host", fetch.Redact(u.URL))
		}
		if bucket, region, ok := awsHost(host); ok {
			hostRegion = region
			if bucket != "" {
				l.bucket, key = bucket, strings.TrimPrefix(u.URL.Path, "/")
			} else {
				l.bucket, key, _ = strings.Cut(strings.TrimPrefix(u.URL.Path, "/"), "/")
			}
			if u.URL.Scheme == "http" {
				return l, fmt.Errorf("S3 URL %s: AWS endpoints need https", fetch.Redact(u.URL))
			}
		} else {
			l.endpoint = u.URL.Scheme + "://" + u.URL.Host
			l.bucket, key, _ = strings.Cut(strings.TrimPrefix(u.URL.Path, "/"), "/")
		}
		if o.Endpoint != "" {
			return l, report.Fieldf("S3 URL %s names its endpoint: {Endpoint} applies only to s3://BUCKET URLs", fetch.Redact(u.URL))
		}
	default:
		return l, fmt.Errorf("S3 URL %s: scheme must be s3, https or http", fetch.Redact(u.URL))
	}
	if l.bucket == "" {
		return l, fmt.Errorf("S3 URL %s names no bucket", fetch.Redact(u.URL))
	}

	l.prefix = key == "" || strings.HasSuffix(key, "/")
	if u.Subdir != "" {
		key = path.Join(key, u.Subdir) + "/"
		l.prefix = true
	}
	l.key = key
	if err := checkKeyPath(key); err != nil {
		return l, fmt.Errorf("S3 URL %s: %w", fetch.Redact(u.URL), err)
	}

	l.version = q.Get("version")
	if l.version != "" && l.prefix {
		return l, fmt.Errorf("S3 URL %s: version pins a single object, but the URL names a prefix (it ends in \"/\")", fetch.Redact(u.URL))
	}

	// The URL is more specific than an option that applies to every source.
	l.region = q.Get("region")
	switch {
	case l.region != "" && hostRegion != "" && l.region != hostRegion:
		return l, fmt.Errorf("S3 URL %s: region %q contradicts the host's region %q", fetch.Redact(u.URL), redact.Value(l.region), hostRegion)
	case l.region == "" && hostRegion != "":
		l.region = hostRegion
	case l.region == "":
		l.region = o.Region
	}

	// A custom endpoint is spoken to in path style: the bucket is in the
	// URL's path, and MinIO, Ceph and versitygw need no DNS per bucket.
	l.pathStyle = o.PathStyle || l.endpoint != ""
	return l, nil
}

// checkKeyPath refuses a key or prefix in the URL whose path would not
// map cleanly onto a file name: it would make every object name escape.
func checkKeyPath(key string) error {
	k := strings.TrimSuffix(key, "/")
	if k == "" {
		return nil
	}
	for _, c := range strings.Split(k, "/") {
		if c == "" || c == "." || c == ".." {
			return fmt.Errorf("key %q has an empty, \".\" or \"..\" component", key)
		}
	}
	return nil
}

// parseEndpoint returns Options.Endpoint as scheme://host[:port], or
// refuses anything more; "" for none.
func parseEndpoint(raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", report.Fieldf("{Endpoint} %q: want http(s)://HOST[:PORT]", fetch.RedactString(raw))
	}
	if u.User != nil {
		return "", report.Fieldf("{Endpoint}: credentials in the URL are not accepted")
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", report.Fieldf("{Endpoint} %q: want http(s)://HOST[:PORT] without a path (the bucket goes in the source URL)", fetch.RedactString(raw))
	}
	return u.Scheme + "://" + u.Host, nil
}

// awsHost recognises an AWS S3 host, the forms go-getter's S3 detector
// knows and the current ones: s3.amazonaws.com, s3.REGION.amazonaws.com,
// s3-REGION.amazonaws.com, s3.dualstack.REGION.amazonaws.com (path style)
// and BUCKET. in front of any of those (virtual-hosted; a bucket may hold
// dots). It returns the bucket ("" for path style) and the region ("" when
// the host does not say).
func awsHost(host string) (bucket, region string, ok bool) {
	host = strings.ToLower(host)
	var rest string
	for _, suf := range awsSuffixes {
		if r, found := strings.CutSuffix(host, suf); found {
			rest = r
			ok = true
			break
		}
	}
	if !ok {
		return "", "", false
	}
	labels := strings.Split(rest, ".")
	i := len(labels) - 1
	// Find the "s3" label from the right: a bucket name may hold dots, and
	// even a label "s3", but the endpoint part never has more than three.
	for ; i >= 0; i-- {
		if labels[i] == "s3" || strings.HasPrefix(labels[i], "s3-") {
			break
		}
	}
	if i < 0 {
		return "", "", false
	}
	bucket = strings.Join(labels[:i], ".")
	s3Label, after := labels[i], labels[i+1:]
	if r, found := strings.CutPrefix(s3Label, "s3-"); found {
		region = r
		if r == "external-1" {
			region = "us-east-1"
		}
	}
	for _, a := range after {
		if a != "dualstack" {
			region = a
		}
	}
	return bucket, region, true
}
