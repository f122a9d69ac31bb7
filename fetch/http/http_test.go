package http_test

import (
	"archive/tar"
	"crypto/md5"
	"crypto/sha512"
	"errors"
	"fmt"
	nethttp "net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/fetch"
	fhttp "github.com/ferrysync/ferry/fetch/http"
	"github.com/ferrysync/ferry/fetch/kit"
	"github.com/ferrysync/ferry/internal/report"
	"github.com/ferrysync/ferry/internal/sourcetest"
)

// contractOrigin serves a tar.gz of the files over TLS, trusted through a
// CA file, as the shared contract needs.
type contractOrigin struct{ o *origin }

func (c *contractOrigin) Source(t *testing.T, stateDir string) fetch.Source {
	f := &fixture{stateDir: stateDir}
	return f.source(t, c.o.url("/bundle.tar.gz"), fhttp.Options{CAFile: c.o.caFile(t)})
}

func (c *contractOrigin) Set(t *testing.T, files map[string]string) {
	c.o.set(tarOf(t, true, filesOf(files)...))
}

func (c *contractOrigin) Break(t *testing.T) { c.o.setStatus(503) }

func (c *contractOrigin) SetEscape(t *testing.T) string {
	c.o.set(tarOf(t, true, file("app.yaml", "x"), file("../escape", "x")))
	return `"../escape"`
}

func TestContract(t *testing.T) {
	sourcetest.Run(t, &contractOrigin{o: newOrigin(t, true)})
}

func TestSingleFilePublishedUnderBaseName(t *testing.T) {
	o := newOrigin(t, false)
	o.set([]byte("port: 8080\n"))
	r := mustFetch(t, newFixture(t).source(t, o.url("/conf/app.yaml"), fhttp.Options{}), "")
	sourcetest.AssertTree(t, r.w.Tree(), map[string]string{"app.yaml": "port: 8080\n"})
	if !strings.HasPrefix(r.rev, sha256Hex([]byte("port: 8080\n"))+"-") {
		t.Fatalf("revision %q does not start with the body's sha256", r.rev)
	}
}

func TestArchivesArePublishedAsTrees(t *testing.T) {
	files := map[string]string{"app.yaml": "a: 1\n", "conf.d/x.conf": "x\n", "bin/run.sh": "#!/bin/sh\n"}
	entries := func() []entry {
		es := filesOf(files)
		for i := range es {
			if es[i].name == "bin/run.sh" {
				es[i].mode = 0o4755 // setuid: must not survive
			}
		}
		return append([]entry{{name: "conf.d/", typeflag: tar.TypeDir, mode: 0o755}}, es...)
	}
	for _, tc := range []struct{ name, path, kind string }{
		{"TarGz", "/b.tar.gz", "tgz"},
		{"Tgz", "/b.tgz", "tgz"},
		{"Tar", "/b.tar", "tar"},
		{"Zip", "/b.zip", "zip"},
		{"ArchiveParamZip", "/download?archive=zip&token=abc", "zip"},
		{"ArchiveParamTgz", "/b.bin?archive=tgz", "tgz"},
		{"ArchiveParamTar", "/b.bin?archive=tar", "tar"},
		{"ArchiveParamTarGz", "/b?archive=tar.gz", "tgz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t, false)
			switch tc.kind {
			case "tgz":
				o.set(tarOf(t, true, entries()...))
			case "tar":
				o.set(tarOf(t, false, entries()...))
			case "zip":
				o.set(zipOf(t, entries()[1:]...))
			}
			r := mustFetch(t, newFixture(t).source(t, o.url(tc.path), fhttp.Options{}), "")
			sourcetest.AssertTree(t, r.w.Tree(), files)
			if m := r.w.Files()["bin/run.sh"].Mode; m != 0o755 {
				t.Fatalf("bin/run.sh written with mode %v, want 0755 without setuid", m)
			}
		})
	}
}

func TestOwnQueryOptionsAreNotSentToTheServer(t *testing.T) {
	o := newOrigin(t, false)
	body := []byte("x")
	o.set(body)
	mustFetch(t, newFixture(t).source(t, o.url("/f.txt?X-Sig=a%2Fb&archive=false&checksum=sha256:"+sha256Hex(body)), fhttp.Options{}), "")
	if got := o.lastQuery(); got != "X-Sig=a%2Fb" {
		t.Fatalf("server saw query %q, want the signed part unchanged and nothing else", got)
	}
}

func TestArchiveFalsePublishesArchiveAsFile(t *testing.T) {
	o := newOrigin(t, false)
	body := tarOf(t, true, file("a", "1"))
	o.set(body)
	r := mustFetch(t, newFixture(t).source(t, o.url("/b.tar.gz?archive=false"), fhttp.Options{}), "")
	sourcetest.AssertTree(t, r.w.Tree(), map[string]string{"b.tar.gz": string(body)})
}

func TestSubdirPublishesOnlyThatSubtree(t *testing.T) {
	files := map[string]string{
		"conf/prod/app.yaml": "prod\n", "conf/prod/d/x": "x\n",
		"conf/dev/app.yaml": "dev\n", "README": "r\n", "conf/production": "p\n",
	}
	for _, tc := range []struct{ name, path, want string }{
		{"TarGz", "/b.tar.gz//conf/prod", ""},
		{"Zip", "/b.zip//conf/prod/", ""},
		{"MissingSubdirIsPermanent", "/b.tar.gz//conf/staging", `"conf/staging" is not in the archive`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t, false)
			if strings.Contains(tc.path, ".zip") {
				o.set(zipOf(t, filesOf(files)...))
			} else {
				o.set(tarOf(t, true, filesOf(files)...))
			}
			r := fetchFrom(t, newFixture(t).source(t, o.url(tc.path), fhttp.Options{}), "")
			if tc.want != "" {
				assertError(t, r.err, tc.want, true)
				return
			}
			if r.err != nil {
				t.Fatal(r.err)
			}
			sourcetest.AssertTree(t, r.w.Tree(), map[string]string{"app.yaml": "prod\n", "d/x": "x\n"})
		})
	}
}

func TestChangingLayoutRepublishesTheSameBody(t *testing.T) {
	o := newOrigin(t, false)
	o.set(tarOf(t, true, file("prod/a", "p"), file("dev/a", "d")))
	f := newFixture(t)
	r1 := mustFetch(t, f.source(t, o.url("/b.tar.gz//prod"), fhttp.Options{}), "")
	sourcetest.AssertTree(t, r1.w.Tree(), map[string]string{"a": "p"})
	// Same state directory, same body, another sub-directory: the saved
	// validators must not answer for it, and the tree must change.
	r2 := mustFetch(t, f.source(t, o.url("/b.tar.gz//dev"), fhttp.Options{}), r1.rev)
	if r2.rev == r1.rev {
		t.Fatal("revision did not change with the sub-directory")
	}
	sourcetest.AssertTree(t, r2.w.Tree(), map[string]string{"a": "d"})
	if got := o.lastHeader().Get("If-None-Match"); got != "" {
		t.Fatalf("validators of another layout were sent: If-None-Match %q", got)
	}
}

func TestUnchangedOriginMakesOneRequestAndWritesNothing(t *testing.T) {
	for _, tc := range []struct {
		name          string
		etag, lastMod bool
		header        string // the validator sent back
	}{
		{"ETag", true, false, "If-None-Match"},
		{"LastModified", false, true, "If-Modified-Since"},
		// The body comes again; its digest says it is the same.
		{"NoValidators", false, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t, false)
			o.etag, o.lastMod = tc.etag, tc.lastMod
			o.set(tarOf(t, true, file("a", "1")))
			s := newFixture(t).source(t, o.url("/b.tgz"), fhttp.Options{})
			first := mustFetch(t, s, "")
			for i := 0; i < 3; i++ {
				reqs, sent := o.requests.Load(), o.bodyBytes.Load()
				r := mustFetch(t, s, first.rev)
				if r.rev != first.rev || !r.w.Empty() {
					t.Fatalf("poll %d: rev %q, empty %v; want %q and nothing written", i, r.rev, r.w.Empty(), first.rev)
				}
				if n := o.requests.Load() - reqs; n != 1 {
					t.Fatalf("poll %d made %d requests, want 1", i, n)
				}
				hdr := o.lastHeader()
				switch {
				case tc.header == "" && (hdr.Get("If-None-Match") != "" || hdr.Get("If-Modified-Since") != ""):
					t.Fatalf("conditional headers sent without validators: %v", hdr)
				case tc.header != "" && hdr.Get(tc.header) == "":
					t.Fatalf("poll %d sent no %s", i, tc.header)
				case tc.header != "" && o.bodyBytes.Load() != sent:
					t.Fatalf("poll %d transferred %d body bytes, want 0", i, o.bodyBytes.Load()-sent)
				}
			}
			// A change of the same size is seen on the next poll.
			o.set(tarOf(t, true, file("a", "2")))
			r := mustFetch(t, s, first.rev)
			if r.rev == first.rev {
				t.Fatal("change not detected")
			}
			sourcetest.AssertTree(t, r.w.Tree(), map[string]string{"a": "2"})
		})
	}
}

func TestNotModifiedToUnconditionalGetIsAnError(t *testing.T) {
	o := newOrigin(t, false)
	o.set([]byte("good\n"))
	// A front that answers 304 to every GET without a validator, as a
	// broken server or a cache in front of one may.
	front := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.Header.Get("If-None-Match") == "" && r.Header.Get("If-Modified-Since") == "" {
			w.Header().Set("ETag", `"cached"`)
			w.WriteHeader(nethttp.StatusNotModified)
			return
		}
		o.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	const want = "unexpected HTTP 304 Not Modified to an unconditional request"

	t.Run("FirstSync", func(t *testing.T) {
		r := fetchFrom(t, newFixture(t).source(t, front.URL+"/app.conf", fhttp.Options{}), "")
		assertError(t, r.err, want, false)
		if !r.w.Empty() {
			t.Fatal("written from a 304")
		}
	})
	t.Run("ValidatorsLost", func(t *testing.T) {
		// Published, then the saved validators are gone: the next GET is
		// unconditional and its 304 says nothing about the revision.
		f := newFixture(t)
		first := mustFetch(t, f.source(t, o.url("/app.conf"), fhttp.Options{}), "")
		if err := os.Remove(filepath.Join(f.stateDir, "http.json")); err != nil {
			t.Fatal(err)
		}
		r := fetchFrom(t, f.source(t, front.URL+"/app.conf", fhttp.Options{}), first.rev)
		assertError(t, r.err, want, false)
	})
}

func TestValidatorsOfAnUnpublishedRevisionAreNotSent(t *testing.T) {
	o := newOrigin(t, false)
	o.set([]byte("v1\n"))
	s := newFixture(t).source(t, o.url("/app.conf"), fhttp.Options{})
	// The fetch succeeds and saves validators, but its publish never
	// happens (the process dies, or Publish fails): the loop still holds
	// no revision.
	mustFetch(t, s, "")
	r := mustFetch(t, s, "")
	if o.lastHeader().Get("If-None-Match") != "" {
		t.Fatal("If-None-Match sent although the saved validators belong to an unpublished revision")
	}
	sourcetest.AssertTree(t, r.w.Tree(), map[string]string{"app.conf": "v1\n"})
}

func TestStatusErrorsSayWhatHappened(t *testing.T) {
	for _, tc := range []struct {
		code      int
		want      string
		permanent bool
	}{
		{404, "not found (HTTP 404", false},
		{401, "access refused (HTTP 401", true},
		{403, "access refused (HTTP 403", true},
		{500, "server error (HTTP 500", false},
		{503, "server error (HTTP 503", false},
	} {
		t.Run(strconv.Itoa(tc.code), func(t *testing.T) {
			o := newOrigin(t, false)
			o.set([]byte("good"))
			s := newFixture(t).source(t, o.url("/app.conf"), fhttp.Options{})
			first := mustFetch(t, s, "")
			o.setStatus(tc.code)
			r := fetchFrom(t, s, first.rev)
			assertError(t, r.err, "http get "+o.url("/app.conf")+": "+tc.want, tc.permanent)
		})
	}
}

func TestChecksum(t *testing.T) {
	body := []byte("payload\n")
	for _, tc := range []struct {
		name, query string
		ok          bool
	}{
		{"TypedSHA256", "checksum=sha256:" + sha256Hex(body), true},
		{"BareSHA256", "checksum=" + sha256Hex(body), true},
		{"MD5", fmt.Sprintf("checksum=md5:%x", md5.Sum(body)), true},
		{"SHA512", fmt.Sprintf("checksum=sha512:%x", sha512.Sum512(body)), true},
		{"SHA256Mismatch", "checksum=sha256:" + sha256Hex([]byte("other")), false},
		{"MD5Mismatch", fmt.Sprintf("checksum=md5:%x", md5.Sum([]byte("other"))), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t, false)
			o.set(body)
			r := fetchFrom(t, newFixture(t).source(t, o.url("/p.txt?"+tc.query), fhttp.Options{}), "")
			if tc.ok {
				if r.err != nil {
					t.Fatal(r.err)
				}
				sourcetest.AssertTree(t, r.w.Tree(), map[string]string{"p.txt": string(body)})
				return
			}
			assertError(t, r.err, "checksum mismatch: expected ", true)
			assertError(t, r.err, ", got ", true)
			if !r.w.Empty() {
				t.Fatal("a body failing its checksum was written")
			}
		})
	}
}

func TestChecksumFile(t *testing.T) {
	body := tarOf(t, true, file("a", "1"))
	md5Of := func(b []byte) string { return fmt.Sprintf("%x", md5.Sum(b)) }
	sums := map[string]string{
		"GNU":          sha256Hex([]byte("x")) + "  other.tgz\n" + sha256Hex(body) + "  bundle.tgz\n",
		"GNUBinary":    "# comment\n" + sha256Hex(body) + " *bundle.tgz\n",
		"BSD":          "SHA256 (other.tgz) = " + sha256Hex(nil) + "\nSHA256 (bundle.tgz) = " + sha256Hex(body) + "\n",
		"MD5":          md5Of(body) + "  ./bundle.tgz\n",
		"PreferExact":  sha256Hex([]byte("x")) + "  linux/bundle.tgz\n" + sha256Hex(body) + "  bundle.tgz\n",
		"Mismatch":     sha256Hex([]byte("x")) + "  bundle.tgz\n",
		"NotListed":    sha256Hex(body) + "  other.tgz\n",
		"MD5Mismatch":  md5Of([]byte("x")) + "  bundle.tgz\n",
		"SingleSumBSD": "MD5 (bundle.tgz) = " + md5Of(body) + "\n",
		"BareSum":      sha256Hex(body) + "\n",
	}
	wantErr := map[string]string{
		"Mismatch":    "checksum mismatch: expected sha256:",
		"NotListed":   `no checksum for "bundle.tgz"`,
		"MD5Mismatch": "checksum mismatch: expected md5:",
	}
	for name, content := range sums {
		t.Run(name, func(t *testing.T) {
			o := newOrigin(t, false)
			o.set(body)
			sumsOrigin := newOrigin(t, false)
			sumsOrigin.set([]byte(content))
			s := newFixture(t).source(t, o.url("/rel/bundle.tgz?checksum=file:"+sumsOrigin.url("/SHA256SUMS")), fhttp.Options{})
			r := fetchFrom(t, s, "")
			if want, bad := wantErr[name]; bad {
				assertError(t, r.err, want, true)
				if !r.w.Empty() {
					t.Fatal("written despite the checksum failure")
				}
				return
			}
			if r.err != nil {
				t.Fatal(r.err)
			}
			sourcetest.AssertTree(t, r.w.Tree(), map[string]string{"a": "1"})
			// Unchanged: the 304 needs no checksum file.
			before := sumsOrigin.requests.Load()
			mustFetch(t, s, r.rev)
			if sumsOrigin.requests.Load() != before {
				t.Fatal("checksum file fetched for a 304")
			}
		})
	}
}

func TestNewRefusesBadConfiguration(t *testing.T) {
	dir := t.TempDir()
	token := writeFile(t, dir, "token", "t0k\n")
	badHeaders := writeFile(t, dir, "h1", "X-Ok: 1\nnot a header line\n")
	reserved := writeFile(t, dir, "h2", "Range: bytes=0-1\n")
	authHeader := writeFile(t, dir, "h3", "Authorization: Basic eA==\n")
	notPEM := writeFile(t, dir, "ca", "not a certificate")
	empty := writeFile(t, dir, "empty", "\n")
	spaced := writeFile(t, dir, "spaced", "t0k t0k\n")
	for _, tc := range []struct {
		name, url string
		o         fhttp.Options
		want      string
		fields    string // the Options fields the error names, for cmd to render
	}{
		{"PasswordInURL", "https://u:pw@h/a.yaml", fhttp.Options{}, "credentials in the URL", "Username,PasswordFile,BearerTokenFile"},
		{"UnknownArchive", "https://h/a.bin?archive=rar", fhttp.Options{}, `archive="rar"`, ""},
		{"SubdirOfSingleFile", "https://h/a.yaml//x", fhttp.Options{}, "published as a single file", ""},
		{"NoFileName", "https://h/", fhttp.Options{}, "names no file", ""},
		{"NoFileNameDir", "https://h/conf/", fhttp.Options{}, "names no file", ""},
		{"BadChecksumHex", "https://h/a?checksum=sha256:zz", fhttp.Options{}, "checksum=sha256:zz", ""},
		{"BadChecksumType", "https://h/a?checksum=crc32:00", fhttp.Options{}, "checksum=crc32:00", ""},
		{"EmptyChecksum", "https://h/a?checksum=", fhttp.Options{}, "checksum= is empty", ""},
		{"RelativeChecksumFile", "https://h/a?checksum=file:SUMS", fhttp.Options{}, "checksum=file:SUMS", ""},
		{"UserWithoutPassword", "https://h/a", fhttp.Options{Username: "u"}, "go together", "Username,PasswordFile"},
		{"TokenAndBasic", "https://h/a", fhttp.Options{BearerTokenFile: token, Username: "u", PasswordFile: token}, "not both", "BearerTokenFile,Username,PasswordFile"},
		{"ColonInUser", "https://h/a", fhttp.Options{Username: "u:x", PasswordFile: token}, "must not contain ':'", "Username"},
		{"MissingTokenFile", "https://h/a", fhttp.Options{BearerTokenFile: filepath.Join(dir, "nope")}, "BearerTokenFile: open " + dir, "BearerTokenFile"},
		{"EmptyTokenFile", "https://h/a", fhttp.Options{BearerTokenFile: empty}, "BearerTokenFile: " + empty + " is empty", "BearerTokenFile"},
		{"TokenWithSpace", "https://h/a", fhttp.Options{BearerTokenFile: spaced}, "not allowed in a header", "BearerTokenFile"},
		{"MissingPasswordFile", "https://h/a", fhttp.Options{Username: "u", PasswordFile: filepath.Join(dir, "nope")}, "PasswordFile: open " + dir, "PasswordFile"},
		{"BadHeaderLine", "https://h/a", fhttp.Options{HeaderFile: badHeaders}, "line 2: want `Name: value`", "HeaderFile"},
		{"ReservedHeader", "https://h/a", fhttp.Options{HeaderFile: reserved}, "Range is set by ferry", "HeaderFile"},
		{"AuthorizationTwice", "https://h/a", fhttp.Options{HeaderFile: authHeader, BearerTokenFile: token}, "sets Authorization", "HeaderFile"},
		{"MissingCAFile", "https://h/a", fhttp.Options{CAFile: filepath.Join(dir, "nope")}, "CAFile: open " + dir, "CAFile"},
		{"CAFileWithoutCertificates", "https://h/a", fhttp.Options{CAFile: notPEM}, "holds no PEM certificate", "CAFile"},
		{"NegativeLimit", "https://h/a", fhttp.Options{MaxBodyBytes: -1}, "must not be negative", "MaxBodyBytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := fetch.Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			_, err = fhttp.New(u, tc.o, fetch.Env{StateDir: t.TempDir()})
			assertError(t, err, tc.want, false)
			if strings.Contains(err.Error(), "t0k") || strings.Contains(err.Error(), "eA==") || strings.Contains(err.Error(), ":pw@") {
				t.Fatalf("error shows a secret: %v", err)
			}
			got := ""
			var fe *report.FieldError
			if errors.As(err, &fe) {
				got = strings.Join(fe.Fields(), ",")
			}
			if got != tc.fields {
				t.Fatalf("err = %v names fields %q, want %q", err, got, tc.fields)
			}
			// The cases on a plain URL are problems of the options alone.
			if verr := tc.o.Validate(); (verr != nil) != (tc.url == "https://h/a") {
				t.Fatalf("Validate() = %v", verr)
			}
		})
	}
}

func TestNewReportsEveryProblemAtOnce(t *testing.T) {
	raw, _ := url.Parse("ftp://h/a?archive=rar")
	_, err := fhttp.New(&fetch.URL{Kind: "http", URL: raw}, fhttp.Options{Username: "u", MaxBodyBytes: -5}, fetch.Env{})
	if err == nil || strings.Count(err.Error(), "\n") != 4 {
		t.Fatalf("err = %v, want five problems, one a line", err)
	}
	for _, want := range []string{"http:// or https://", "archive=", "go together", "negative", "state directory"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, missing %q", err, want)
		}
	}
}

func TestLeftoverSpoolsAreRemoved(t *testing.T) {
	o := newOrigin(t, false)
	o.set([]byte("x"))
	f := newFixture(t)
	s := f.source(t, o.url("/x"), fhttp.Options{})
	if err := os.MkdirAll(f.stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	stale := writeFile(t, f.stateDir, kit.TempPrefix+"body-123", "half a body")
	mustFetch(t, s, "")
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale spool still there: %v", err)
	}
	assertStateDirClean(t, f.stateDir)
}
