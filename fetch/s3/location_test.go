package s3

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/ferrysync/ferry/fetch"
)

func TestURLFormsResolveToBucketKeyEndpointAndRegion(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		opts Options
		want location
	}{
		{"s3://bucket/conf/prod/?region=eu-west-1", Options{},
			location{bucket: "bucket", key: "conf/prod/", prefix: true, region: "eu-west-1"}},
		{"s3://bucket", Options{Region: "us-west-2"},
			location{bucket: "bucket", key: "", prefix: true, region: "us-west-2"}},
		{"s3://bucket/app.yaml?version=abc", Options{},
			location{bucket: "bucket", key: "app.yaml", version: "abc"}},
		{"s3://bucket/conf/", Options{Endpoint: "http://minio:9000", Region: "x"},
			location{bucket: "bucket", key: "conf/", prefix: true, endpoint: "http://minio:9000", region: "x", pathStyle: true}},
		{"https://s3.eu-west-1.amazonaws.com/bucket/conf/", Options{Region: "ignored-by-url"},
			location{bucket: "bucket", key: "conf/", prefix: true, region: "eu-west-1"}},
		{"https://s3.amazonaws.com/bucket/conf/app.yaml", Options{},
			location{bucket: "bucket", key: "conf/app.yaml"}},
		{"https://s3-eu-west-1.amazonaws.com/bucket/conf/", Options{},
			location{bucket: "bucket", key: "conf/", prefix: true, region: "eu-west-1"}},
		{"https://my.bucket.s3.eu-central-1.amazonaws.com/conf/", Options{},
			location{bucket: "my.bucket", key: "conf/", prefix: true, region: "eu-central-1"}},
		{"https://bucket.s3-ap-south-1.amazonaws.com/a.yaml", Options{},
			location{bucket: "bucket", key: "a.yaml", region: "ap-south-1"}},
		{"https://bucket.s3.amazonaws.com/", Options{PathStyle: true},
			location{bucket: "bucket", key: "", prefix: true, pathStyle: true}},
		{"https://s3.dualstack.us-east-2.amazonaws.com/bucket/x/", Options{},
			location{bucket: "bucket", key: "x/", prefix: true, region: "us-east-2"}},
		{"https://s3.cn-north-1.amazonaws.com.cn/bucket/x/", Options{},
			location{bucket: "bucket", key: "x/", prefix: true, region: "cn-north-1"}},
		{"http://127.0.0.1:9000/bucket/conf/", Options{},
			location{bucket: "bucket", key: "conf/", prefix: true, endpoint: "http://127.0.0.1:9000", pathStyle: true}},
		{"https://r2.example.com/bucket/conf/app.yaml?region=auto", Options{},
			location{bucket: "bucket", key: "conf/app.yaml", endpoint: "https://r2.example.com", region: "auto", pathStyle: true}},
		{"http://127.0.0.1:9000/bucket/conf//prod", Options{},
			location{bucket: "bucket", key: "conf/prod/", prefix: true, endpoint: "http://127.0.0.1:9000", pathStyle: true}},
		{"http://127.0.0.1:9000/bucket/my%20dir/", Options{},
			location{bucket: "bucket", key: "my dir/", prefix: true, endpoint: "http://127.0.0.1:9000", pathStyle: true}},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			u, err := fetch.Parse("s3::" + tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseLocation(u, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestBadURLsAreRefusedWithTheReason(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		opts Options
		want string
	}{
		{"s3://bucket/conf/?version=1", Options{}, "version pins a single object"},
		{"s3://bucket/conf/?ref=main", Options{}, `unknown S3 URL option "ref"`},
		{"s3://bucket/conf/?aws_access_key_secret=x", Options{}, "credentials in the URL"},
		{"http://user:pw@127.0.0.1:9000/bucket/", Options{}, "credentials in the URL"},
		{"http://127.0.0.1:9000/", Options{}, "names no bucket"},
		{"http://127.0.0.1:9000/bucket/", Options{Endpoint: "http://other:9000"}, "Endpoint applies only to s3://"},
		{"s3://bucket/", Options{Endpoint: "minio:9000"}, "want http(s)://HOST[:PORT]"},
		{"s3://bucket/", Options{Endpoint: "http://minio:9000/bucket"}, "without a path"},
		{"http://s3.eu-west-1.amazonaws.com/bucket/", Options{}, "need https"},
		{"https://s3.eu-west-1.amazonaws.com/bucket/?region=us-east-1", Options{}, "contradicts the host's region"},
		{"s3://bucket/a/../b/", Options{}, `".." component`},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			u, err := fetch.Parse("s3::" + tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			_, err = New(u, tc.opts, fetch.Env{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "pw@") || strings.Contains(err.Error(), "=x") {
				t.Fatalf("error shows a secret: %v", err)
			}
		})
	}
}

// apiError builds the error the SDK returns for an S3 error response.
func apiError(status int, code string, header http.Header) error {
	resp := &http.Response{StatusCode: status, Header: header}
	if header == nil {
		resp.Header = http.Header{}
	}
	inner := errors.New("no code")
	if code != "" {
		inner = &smithy.GenericAPIError{Code: code, Message: "server text"}
	}
	return &smithy.OperationError{ServiceID: "S3", OperationName: "ListObjectsV2", Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: resp}, Err: inner},
		RequestID:     "REQ",
	}}
}

func TestErrorsAreClassifiedByCodeAndStatus(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       error
		permanent bool
		want      string
	}{
		{"throttled", apiError(503, "SlowDown", nil), false, "throttling requests (SlowDown); will retry"},
		{"too many", apiError(429, "", nil), false, "HTTP 429"},
		{"server error", apiError(500, "InternalError", nil), false, "server error (HTTP 500, InternalError: server text)"},
		{"denied", apiError(403, "AccessDenied", nil), true, "access denied (AccessDenied)"},
		{"wrong region", apiError(301, "PermanentRedirect", http.Header{"X-Amz-Bucket-Region": {"eu-west-3"}}), true, "the bucket is in region eu-west-3: set ?region=eu-west-3"},
		{"wrong region no code", apiError(301, "", http.Header{"X-Amz-Bucket-Region": {"eu-west-3"}}), true, "region eu-west-3"},
		{"expired token", apiError(400, "ExpiredToken", nil), false, "session token was refused"},
		{"unknown 400", apiError(400, "Weird", nil), false, "request failed (HTTP 400, Weird: server text)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := describe("list s3://b/p/", tc.err)
			if fetch.IsPermanent(err) != tc.permanent {
				t.Errorf("IsPermanent = %v, want %v", !tc.permanent, tc.permanent)
			}
			if !strings.HasPrefix(err.Error(), "list s3://b/p/: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to say %q", err, tc.want)
			}
			if httpStatus(err) == 0 {
				t.Error("the SDK error is no longer reachable with errors.As")
			}
		})
	}
}
