package signal

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrysync/ferry/internal/report"
	"github.com/ferrysync/ferry/internal/testkit"
)

// Every problem names the field to fix; the command line shows it as a
// flag. A URL shows without its userinfo and query values.
func TestValidateNamesTheFieldOfEveryProblem(t *testing.T) {
	const url = "http://h/x"
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"scheme", fastOptions("ftp://host/x"), `URLs "ftp://host/x": need an http:// or https:// URL`},
		{"no scheme", fastOptions("localhost:8080/r?t=s3cret"), `URLs "localhost:8080/r?t=REDACTED": need an http:// or https:// URL: put http:// in front of it`},
		{"relative", fastOptions("/reload"), `URLs "/reload": need an http:// or https:// URL: put http://`},
		{"no host", fastOptions("http:///reload"), `URLs "http:///reload": need an http:// or https:// URL`},
		{"unparsable", fastOptions("http://u:s3cret@host:port/x"), `URLs "http://REDACTED@host:port/x": need an http:// or https:// URL`},
		{"credentials", fastOptions("http://u:s3cret@h/x"), `URLs "http://REDACTED@h/x": credentials in the URL are not accepted`},
		{"twice", fastOptions(url, url), `URLs "http://h/x" given twice`},
		{"method", Options{Method: "PO ST"}, `Method "PO ST": want an HTTP method such as POST or PUT`},
		{"method with URLs", Options{URLs: []string{url}, Timeout: time.Second}, `Method "": want an HTTP method`},
		{"negative timeout", Options{Timeout: -1}, "Timeout must be positive"},
		{"timeout with URLs", Options{URLs: []string{url}, Method: "POST"}, "Timeout must be positive"},
		{"negative max elapsed", Options{MaxElapsed: -1}, "MaxElapsed must not be negative (0 retries until a newer revision)"},
		{"negative reject after", Options{RejectAfter: -1}, "RejectAfter must not be negative (0: only a final reply refuses)"},
		{"intervals", Options{InitialInterval: time.Minute, MaxInterval: time.Second}, "InitialInterval 1m0s and MaxInterval 1s: want 0 <= initial <= max"},
		{"signal without name", Options{Signal: "HUP"}, "Signal and Name go together"},
		{"name without signal", Options{Name: "nginx"}, "Signal and Name go together"},
		{"unknown signal", Options{Signal: "KILLALL", Name: "nginx"}, `Signal "KILLALL": unknown signal`},
		{"signal out of range", Options{Signal: "99", Name: "nginx"}, `Signal "99": number out of range 1-64`},
		{"path as name", Options{Signal: "HUP", Name: "/usr/sbin/nginx"}, `Name "/usr/sbin/nginx": want the base name of a program`},
		{"shell in exec", Options{ExecCommand: "nginx -t && nginx -s reload"}, `ExecCommand "nginx -t && nginx -s reload": "&& nginx -s reload" needs a shell`},
		{"exec not on PATH", Options{ExecCommand: "no-such-ferry-hook --x"}, `ExecCommand "no-such-ferry-hook --x": no-such-ferry-hook: not found on PATH`},
		{"negative exec timeout", Options{ExecTimeout: -1}, "ExecTimeout must not be negative"},
		{"relative touch file", Options{TouchFile: "reload"}, `TouchFile "reload": want an absolute path`},
		{"touch file dir", Options{TouchFile: "/tmp/"}, `TouchFile "/tmp/": want the path of a file, not a directory`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			if err == nil || strings.Count(err.Error(), "\n") > 0 || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want one line with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error shows a secret: %v", err)
			}
			var fe *report.FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(tc.want, fe.Fields()[0]) {
				t.Errorf("Validate() = %v: not a FieldError naming the field", err)
			}
			if _, err := New(tc.o); err == nil {
				t.Errorf("New accepted what Validate refuses")
			}
		})
	}
}

func TestValidateReportsEveryProblemTogether(t *testing.T) {
	o := fastOptions("ftp://a/", "http:///b")
	o.Method, o.Signal = "A B", "HUP"
	err := o.Validate()
	if err == nil || strings.Count(err.Error(), "\n") != 3 {
		t.Fatalf("Validate() = %v, want four problems", err)
	}
	for _, o := range []Options{{}, fastOptions("http://h/x"), {Signal: "hup", Name: "nginx"}} {
		if err := o.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", o, err)
		}
	}
}

func TestNotifiersWithNothingConfiguredTellNobody(t *testing.T) {
	n, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(Change{Source: "app", Revision: "r1"})
	if err := n.Run(t.Context()); err != nil {
		t.Errorf("Run() = %v, want nil at once", err)
	}
}

func TestRunTwiceAtOnceIsRefused(t *testing.T) {
	n := newNotifiers(t, fastOptions("http://127.0.0.1:1/"))
	stop := n.start(t)
	testkit.Eventually(t, wait, "Run to start", n.running.Load)
	if err := n.Run(t.Context()); err == nil {
		t.Errorf("second concurrent Run returned nil, want an error")
	}
	stop()
	if n.running.Load() {
		t.Errorf("still marked running after Run returned")
	}
}

func TestNotifiersShareARegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, o := range []Options{
		{URLs: []string{"http://127.0.0.1:1/"}, Method: "POST", Timeout: time.Second, Signal: "HUP", Name: "nginx"},
		{URLs: []string{"http://127.0.0.2:1/"}, Method: "POST", Timeout: time.Second},
	} {
		o.Registerer = reg
		if _, err := New(o); err != nil {
			t.Fatal(err)
		}
	}
	// Two HTTP targets with 4 results each, one process with ok and failed.
	if n := testutil.CollectAndCount(reg, "ferry_notify_total"); n != 10 {
		t.Errorf("ferry_notify_total has %d series, want 10", n)
	}
}

func TestMetricsWithoutRegistererStillCount(t *testing.T) {
	n, err := New(Options{Signal: "HUP", Name: uniqueName("ferry-none-")})
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(Change{Source: "app", Revision: "r1"})
	p := n.ways[0].(*process)
	if got := testutil.ToFloat64(p.metrics.total.WithLabelValues(p.target, resultFailed)); got != 1 {
		t.Errorf("failed = %v, want 1", got)
	}
}
