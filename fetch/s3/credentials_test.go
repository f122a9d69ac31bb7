package s3_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/fetch"
	s3src "github.com/ferrysync/ferry/fetch/s3"
	"github.com/ferrysync/ferry/internal/report"
)

// imdsProbe listens where the SDK looks for the EC2 instance metadata
// service and counts the connections it gets; it answers none of them.
func imdsProbe(t *testing.T) *atomic.Int64 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://"+l.Addr().String())
	return &n
}

// noAmbientCredentials hides any AWS configuration of the machine running
// the tests, so that the SDK's chain ends at IMDS.
func noAmbientCredentials(t *testing.T) {
	dir := t.TempDir()
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_DEFAULT_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_EC2_METADATA_DISABLED", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
}

func TestNewDoesNoNetworkAccess(t *testing.T) {
	noAmbientCredentials(t)
	probes := imdsProbe(t)
	// An endpoint nothing listens on: a request there would fail New.
	for _, o := range []s3src.Options{{}, {Region: "eu-west-1"}, {Anonymous: true}} {
		if _, err := s3src.New(parse(t, "s3://bucket/conf/"), o, fetch.Env{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s3src.New(parse(t, "s3::http://127.0.0.1:1/bucket/conf/"), s3src.Options{}, fetch.Env{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let a stray connection be counted
	if n := probes.Load(); n != 0 {
		t.Fatalf("New made %d connections to the instance metadata service", n)
	}
}

func TestIMDSIsNotProbedWhenDisabledOrOtherCredentialsAreConfigured(t *testing.T) {
	s := newGofakes3(t)
	bucket := s.newBucket(t, false)
	s.put(t, bucket, "conf/a.yaml", "a")
	a, sec := keyFiles(t, testAccess, testSecret)
	for _, tc := range []struct {
		name string
		opts s3src.Options
		env  map[string]string
		// newErr: New refuses the options, nothing can give credentials;
		// fetchErr: the Fetch fails, after probing IMDS.
		newErr, fetchErr string
	}{
		// The control: with nothing configured the chain does ask IMDS.
		{"DefaultChainProbesIMDS", s3src.Options{}, nil, "", "no AWS credentials"},
		{"NoIMDS", s3src.Options{NoIMDS: true}, nil, "no AWS credentials", ""},
		{"EnvDisabled", s3src.Options{}, map[string]string{"AWS_EC2_METADATA_DISABLED": "true"}, "no AWS credentials", ""},
		{"KeyFiles", s3src.Options{AccessKeyFile: a, SecretKeyFile: sec}, nil, "", ""},
		{"Anonymous", s3src.Options{Anonymous: true}, nil, "", ""},
		{"EnvKeys", s3src.Options{}, map[string]string{"AWS_ACCESS_KEY_ID": testAccess, "AWS_SECRET_ACCESS_KEY": testSecret}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noAmbientCredentials(t)
			probes := imdsProbe(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			src, err := s3src.New(parse(t, "s3::"+s.url(bucket, "conf/")), tc.opts, fetch.Env{})
			if tc.newErr != "" {
				// It says how to give credentials, in the options' names.
				if err == nil || !strings.Contains(err.Error(), tc.newErr) || !strings.Contains(err.Error(), "AccessKeyFile") {
					t.Fatalf("New: err = %v, want %q naming the options to set", err, tc.newErr)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				_, _, err = fetchNew(t, src, fetch.Limits{})
				if tc.fetchErr != "" {
					assertErr(t, err, false, tc.fetchErr, "turn the instance metadata service off")
				} else if err != nil {
					t.Fatal(err)
				} else if d := time.Since(start); d > 2*time.Second {
					t.Errorf("sync took %v", d)
				}
			}
			if n := probes.Load(); (n != 0) != (tc.fetchErr != "") {
				t.Fatalf("%d connections to the instance metadata service", n)
			}
		})
	}
}

func TestNewReportsEveryConfigurationProblemAtOnceNamingFields(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	_, err := s3src.New(parse(t, "s3://bucket/conf/?version=3"), s3src.Options{
		AccessKeyFile: missing, Concurrency: -1, SessionTokenFile: missing, Endpoint: "minio:9000",
	}, fetch.Env{})
	var fe *report.FieldError
	if err == nil || !errors.As(err, &fe) {
		t.Fatalf("New accepted a broken configuration, or named no field: %v", err)
	}
	for _, want := range []string{"Concurrency -1", "AccessKeyFile and SecretKeyFile go together", "AccessKeyFile: open " + missing,
		"SessionTokenFile: open", "Endpoint \"minio:9000\"", "version pins a single object"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
	_, err = s3src.New(parse(t, "s3://bucket/conf/"), s3src.Options{Anonymous: true, AccessKeyFile: missing, SecretKeyFile: missing}, fetch.Env{})
	if err == nil || !strings.Contains(err.Error(), "Anonymous contradicts AccessKeyFile") {
		t.Fatalf("err = %v", err)
	}
}

func TestEmptyKeyFileIsAPermanentErrorNamingTheFile(t *testing.T) {
	var sec string
	// The file is read before any request: no server is needed.
	src := newSource(t, "http://127.0.0.1:1/bucket/conf/", fetch.Env{}, func(o *s3src.Options) { sec = o.SecretKeyFile })
	writeFile(t, sec, "\n")
	_, _, err := fetchNew(t, src, fetch.Limits{})
	assertErr(t, err, true, sec+" is empty")
}
