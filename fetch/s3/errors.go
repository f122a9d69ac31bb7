package s3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/report"
)

// scrub removes the credentials of the failed Fetch from err's message. A
// server, a proxy or a buggy S3 implementation may copy the request's
// Authorization and X-Amz-Security-Token headers into its error message,
// which describe shows: the access key ID and the session token would then
// reach the logs and /status.
func scrub(ctx context.Context, err error, creds aws.CredentialsProvider) error {
	if creds == nil {
		return err
	}
	c, cerr := creds.Retrieve(ctx) // cached: no request
	if cerr != nil {
		return err
	}
	msg := err.Error()
	clean := msg
	for _, v := range []string{c.SecretAccessKey, c.SessionToken, c.AccessKeyID} {
		if len(v) >= 4 {
			clean = strings.ReplaceAll(clean, v, "REDACTED")
		}
	}
	if clean == msg {
		return err
	}
	return report.Errorf(err, "%s", clean)
}

// httpStatus returns the HTTP status of the response that failed an
// operation, or 0 when there was no response. The status, not the error
// code, is what to trust for a 304: with checksum validation on, the SDK
// reports a bodiless 304 without the NotModified code.
func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// describe turns an SDK error into one line a user can act on, marked
// permanent when retrying cannot help. what names the operation and its
// target ("s3 list s3://bucket/conf/"); the endpoint is shown when the server
// cannot be reached. The message never holds credentials: the SDK's errors
// do not carry them, and auth failures are described by us, not by the
// server's text.
func describe(what string, err error) error {
	for _, c := range []error{context.DeadlineExceeded, context.Canceled} {
		if errors.Is(err, c) {
			return report.Errorf(err, "%s: %v", what, c)
		}
	}
	status := httpStatus(err)
	var code, message string
	var api smithy.APIError
	if errors.As(err, &api) {
		code, message = api.ErrorCode(), api.ErrorMessage()
	}
	line := func(format string, args ...any) error {
		return report.Errorf(err, "%s: %s", what, fmt.Sprintf(format, args...))
	}
	permanent := func(format string, args ...any) error {
		return fetch.Permanent(line(format, args...))
	}
	switch code {
	case "NoSuchBucket":
		return permanent("the bucket does not exist (NoSuchBucket)")
	case "NoSuchKey":
		return permanent("the object does not exist (NoSuchKey; a URL ending in \"/\" names a prefix)")
	case "NoSuchVersion":
		return permanent("the object version does not exist (NoSuchVersion)")
	case "InvalidAccessKeyId", "XAdminUserNotFound": // the second is versitygw's
		return permanent("the server does not know the access key ID (%s): check the access key", code)
	case "SignatureDoesNotMatch":
		return permanent("the secret key does not match the access key (SignatureDoesNotMatch): check the secret key")
	case "ExpiredToken", "TokenRefreshRequired", "InvalidToken":
		return line("the session token was refused (%s)", code)
	case "AccessDenied", "AllAccessDisabled", "AccountProblem":
		return permanent("access denied (%s): the credentials' policy must allow s3:ListBucket on the bucket and s3:GetObject on the keys", code)
	case "InvalidBucketName":
		return permanent("invalid bucket name (InvalidBucketName)")
	case "PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException":
		if r := bucketRegion(err); r != "" {
			return permanent("the bucket is in region %s: set ?region=%s in the source URL (%s)", r, r, code)
		}
		return permanent("wrong region or endpoint for the bucket (%s): set ?region= in the source URL", code)
	case "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests", "RequestThrottled":
		return line("the server is throttling requests (%s); will retry", code)
	case "PreconditionFailed":
		return line("the object changed during the sync (PreconditionFailed); will retry")
	}
	switch {
	case status == 301 || status == 307:
		if r := bucketRegion(err); r != "" {
			return permanent("the bucket is in region %s: set ?region=%s in the source URL", r, r)
		}
		return permanent("the server redirected the request (HTTP %d): wrong region or endpoint for the bucket", status)
	case status == 304:
		// Only a conditional GET may be answered 304, and describe never
		// sees the answer to one: the server (or a cache in front of it)
		// does not serve the object.
		return line("unexpected HTTP 304 Not Modified to an unconditional request")
	case status == 403:
		return permanent("access denied (HTTP 403%s)", codeSuffix(code, message))
	case status == 404:
		return permanent("not found (HTTP 404%s)", codeSuffix(code, message))
	case status == 429 || status == 503:
		return line("the server is throttling requests or unavailable (HTTP %d); will retry", status)
	case status >= 500:
		return line("server error (HTTP %d%s)", status, codeSuffix(code, message))
	case status != 0:
		return line("request failed (HTTP %d%s)", status, codeSuffix(code, message))
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return line("cannot reach the S3 endpoint %s: %v", endpointOf(err), opErr)
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return line("cannot resolve the S3 endpoint %s: %v", endpointOf(err), dnsErr)
	}
	return line("%s", innermost(err))
}

// maxServerMessage bounds how much of a server's error message is shown:
// it is the server's text, repeated in every log line and in /status.
const maxServerMessage = 200

// codeSuffix formats an S3 error code and message for a generic failure.
func codeSuffix(code, message string) string {
	switch {
	case code != "" && message != "":
		m := report.FirstLine(message)
		if len(m) > maxServerMessage {
			m = strings.ToValidUTF8(m[:maxServerMessage], "") + "..."
		}
		return ", " + report.FirstLine(code) + ": " + m
	case code != "":
		return ", " + report.FirstLine(code)
	}
	return ""
}

// bucketRegion digs S3's answer to a wrong-region request out of err: the
// region the bucket is in.
func bucketRegion(err error) string {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		return re.Response.Header.Get("X-Amz-Bucket-Region")
	}
	return ""
}

// endpointOf returns scheme://host of the request that failed, or "".
func endpointOf(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			return u.Scheme + "://" + u.Host
		}
	}
	return ""
}

// innermost returns the first line of the innermost error: the SDK stacks
// "operation error S3: GetObject, https response error StatusCode..." in
// front of it.
func innermost(err error) string {
	for errors.Unwrap(err) != nil {
		err = errors.Unwrap(err)
	}
	return report.FirstLine(err.Error())
}
