package http_test

import (
	"archive/tar"
	"context"
	"errors"
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
	"github.com/ferrysync/ferry/internal/sourcetest"
)

// contractOrigin serves a tar.gz of the files over TLS, trusted through a
// CA file, as the shared contract needs.
type contractOrigin struct{ o *origin }

func (c *contractOrigin) Source(t *testing.T, stateDir string) fetch.Source {
	u, err := fetch.Parse(c.o.url("/bundle.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := fhttp.New(u, fhttp.Options{CAFile: c.o.caFile(t)}, fetch.Env{StateDir: stateDir})
	if err != nil {
		t.Fatal(err)
	}
	return s
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
	h := newHarness(t, fetch.Limits{})
	r := h.mustSync(t, h.source(t, o.url("/conf/app.yaml"), fhttp.Options{}))
	sourcetest.AssertTree(t, h.tree(t), map[string]string{"app.yaml": "port: 8080\n"})
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
				es := entries()[1:]
				o.set(zipOf(t, es...))
			}
			h := newHarness(t, fetch.Limits{})
			h.mustSync(t, h.source(t, o.url(tc.path), fhttp.Options{}))
			sourcetest.AssertTree(t, h.tree(t), files)
			fi, err := os.Stat(filepath.Join(h.store.LinkPath("c"), "bin/run.sh"))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != 0o555 {
				t.Fatalf("bin/run.sh mode %v, want 0555 without setuid", fi.Mode())
			}
		})
	}
}

func TestOwnQueryOptionsAreNotSentToTheServer(t *testing.T) {
	o := newOrigin(t, false)
	body := []byte("x")
	o.set(body)
	h := newHarness(t, fetch.Limits{})
	h.mustSync(t, h.source(t, o.url("/f.txt?X-Sig=a%2Fb&archive=false&checksum=sha256:"+sha256Hex(body)), fhttp.Options{}))
	if got := o.lastQuery(); got != "X-Sig=a%2Fb" {
		t.Fatalf("server saw query %q, want the signed part unchanged and nothing else", got)
	}
}

func TestArchiveFalsePublishesArchiveAsFile(t *testing.T) {
	o := newOrigin(t, false)
	body := tarOf(t, true, file("a", "1"))
	o.set(body)
	h := newHarness(t, fetch.Limits{})
	h.mustSync(t, h.source(t, o.url("/b.tar.gz?archive=false"), fhttp.Options{}))
	sourcetest.AssertTree(t, h.tree(t), map[string]string{"b.tar.gz": string(body)})
}

func TestSubdirPublishesOnlyThatSubtree(t *testing.T) {
	files := map[string]string{
		"conf/prod/app.yaml": "prod\n", "conf/prod/d/x": "x\n",
		"conf/dev/app.yaml": "dev\n", "README": "r\n", "conf/production": "p\n",
	}
	want := map[string]string{"app.yaml": "prod\n", "d/x": "x\n"}
	for _, tc := range []struct {
		name, path string
		body       func(t *testing.T) []byte
	}{
		{"TarGz", "/b.tar.gz//conf/prod", func(t *testing.T) []byte { return tarOf(t, true, filesOf(files)...) }},
		{"Zip", "/b.zip//conf/prod/", func(t *testing.T) []byte { return zipOf(t, filesOf(files)...) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t, false)
			o.set(tc.body(t))
			h := newHarness(t, fetch.Limits{})
			h.mustSync(t, h.source(t, o.url(tc.path), fhttp.Options{}))
			sourcetest.AssertTree(t, h.tree(t), want)
		})
	}
	t.Run("MissingSubdirIsPermanent", func(t *testing.T) {
		o := newOrigin(t, false)
		o.set(tarOf(t, true, filesOf(files)...))
		h := newHarness(t, fetch.Limits{})
		r := h.sync(t, h.source(t, o.url("/b.tar.gz//conf/staging"), fhttp.Options{}))
		if r.err == nil || !strings.Contains(r.err.Error(), `"conf/staging" is not in the archive`) || !fetch.IsPermanent(r.err) {
			t.Fatalf("err = %v, want a permanent error naming the sub-directory", r.err)
		}
	})
}

func TestChangingLayoutRepublishesTheSameBody(t *testing.T) {
	o := newOrigin(t, false)
	o.set(tarOf(t, true, file("prod/a", "p"), file("dev/a", "d")))
	h := newHarness(t, fetch.Limits{})
	r1 := h.mustSync(t, h.source(t, o.url("/b.tar.gz//prod"), fhttp.Options{}))
	sourcetest.AssertTree(t, h.tree(t), map[string]string{"a": "p"})
	// Same state directory, same body, another sub-directory: the saved
	// validators must not answer for it, and the tree must change.
	r2 := h.mustSync(t, h.source(t, o.url("/b.tar.gz//dev"), fhttp.Options{}))
	if r2.rev == r1.rev {
		t.Fatal("revision did not change with the sub-directory")
	}
	sourcetest.AssertTree(t, h.tree(t), map[string]string{"a": "d"})
	if got := o.lastHeader().Get("If-None-Match"); got != "" {
		t.Fatalf("validators of another layout were sent: If-None-Match %q", got)
	}
}

func TestNotModifiedMakesOneRequestAndWritesNothing(t *testing.T) {
	for _, tc := range []struct {
		name          string
		etag, lastMod bool
		header        string
	}{
		{"ETag", true, false, "If-None-Match"},
		{"LastModified", false, true, "If-Modified-Since"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t, false)
			o.etag, o.lastMod = tc.etag, tc.lastMod
			o.set(tarOf(t, true, file("a", "1")))
			h := newHarness(t, fetch.Limits{})
			s := h.source(t, o.url("/b.tgz"), fhttp.Options{})
			first := h.mustSync(t, s)
			for i := 0; i < 3; i++ {
				reqs, sent := o.requests.Load(), o.bodyBytes.Load()
				r := h.mustSync(t, s)
				if r.rev != first.rev || r.wrote || r.stats.BytesWritten != 0 {
					t.Fatalf("poll %d: rev %q wrote=%v bytes=%d, want %q and nothing written", i, r.rev, r.wrote, r.stats.BytesWritten, first.rev)
				}
				if n := o.requests.Load() - reqs; n != 1 {
					t.Fatalf("poll %d made %d requests, want 1", i, n)
				}
				if n := o.bodyBytes.Load() - sent; n != 0 {
					t.Fatalf("poll %d transferred %d body bytes, want 0", i, n)
				}
				if o.lastHeader().Get(tc.header) == "" {
					t.Fatalf("poll %d sent no %s", i, tc.header)
				}
			}
			// A change is seen on the next poll.
			o.set(tarOf(t, true, file("a", "2")))
			if r := h.mustSync(t, s); r.rev == first.rev {
				t.Fatal("change not detected")
			}
			sourcetest.AssertTree(t, h.tree(t), map[string]string{"a": "2"})
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
		h := newHarness(t, fetch.Limits{})
		r := h.sync(t, h.source(t, front.URL+"/app.conf", fhttp.Options{}))
		assertOneLine(t, r.err)
		if !strings.Contains(r.err.Error(), want) || r.wrote {
			t.Fatalf("err = %v, wrote = %v: want %q and nothing written", r.err, r.wrote, want)
		}
		if cur, _ := h.store.Current("c"); cur != "" {
			t.Fatalf("revision %q published from a 304", cur)
		}
	})
	t.Run("ValidatorsLost", func(t *testing.T) {
		// Published, then the saved validators are gone: the next GET is
		// unconditional and its 304 says nothing about the revision.
		h := newHarness(t, fetch.Limits{})
		first := h.mustSync(t, h.source(t, o.url("/app.conf"), fhttp.Options{}))
		if err := os.Remove(filepath.Join(h.stateDir, "http.json")); err != nil {
			t.Fatal(err)
		}
		r := h.sync(t, h.source(t, front.URL+"/app.conf", fhttp.Options{}))
		assertOneLine(t, r.err)
		if !strings.Contains(r.err.Error(), want) {
			t.Fatalf("err = %v, want %q", r.err, want)
		}
		if cur, _ := h.store.Current("c"); cur != first.rev {
			t.Fatalf("current revision %q, want the last good %q", cur, first.rev)
		}
	})
}

func TestServerWithoutValidatorsFallsBackToDigest(t *testing.T) {
	o := newOrigin(t, false)
	o.etag, o.lastMod = false, false
	o.set([]byte("v1\n"))
	h := newHarness(t, fetch.Limits{})
	s := h.source(t, o.url("/app.conf"), fhttp.Options{})
	first := h.mustSync(t, s)
	reqs := o.requests.Load()
	r := h.mustSync(t, s)
	if r.rev != first.rev || r.wrote {
		t.Fatalf("unchanged body: rev %q wrote=%v, want %q and nothing written", r.rev, r.wrote, first.rev)
	}
	if n := o.requests.Load() - reqs; n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
	hdr := o.lastHeader()
	if hdr.Get("If-None-Match") != "" || hdr.Get("If-Modified-Since") != "" {
		t.Fatalf("conditional headers sent without validators: %v", hdr)
	}
	// Same size, other bytes: still a change.
	o.set([]byte("v2\n"))
	if r := h.mustSync(t, s); r.rev == first.rev {
		t.Fatal("same-size change not detected")
	}
	sourcetest.AssertTree(t, h.tree(t), map[string]string{"app.conf": "v2\n"})
}

func TestValidatorsOfAnUnpublishedRevisionAreNotSent(t *testing.T) {
	o := newOrigin(t, false)
	o.set([]byte("v1\n"))
	h := newHarness(t, fetch.Limits{})
	s := h.source(t, o.url("/app.conf"), fhttp.Options{})
	// The fetch succeeds and saves validators, but its publish never
	// happens (the process dies, or Publish fails).
	st := h.store.Begin("c", "")
	if _, err := s.Fetch(context.Background(), "", st); err != nil {
		t.Fatal(err)
	}
	st.Discard()
	r := h.mustSync(t, s)
	if o.lastHeader().Get("If-None-Match") != "" {
		t.Fatal("If-None-Match sent although the saved validators belong to an unpublished revision")
	}
	if !r.wrote {
		t.Fatal("nothing written: the revision would never be published")
	}
	sourcetest.AssertTree(t, h.tree(t), map[string]string{"app.conf": "v1\n"})
}

func TestStatusErrorsKeepTheLastGoodRevision(t *testing.T) {
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
			h := newHarness(t, fetch.Limits{})
			s := h.source(t, o.url("/app.conf"), fhttp.Options{})
			h.mustSync(t, s)
			o.setStatus(tc.code)
			r := h.sync(t, s)
			assertOneLine(t, r.err)
			if !strings.Contains(r.err.Error(), tc.want) || !strings.Contains(r.err.Error(), o.url("/app.conf")) {
				t.Fatalf("err = %v, want %q and the URL", r.err, tc.want)
			}
			if fetch.IsPermanent(r.err) != tc.permanent {
				t.Fatalf("permanent = %v, want %v", fetch.IsPermanent(r.err), tc.permanent)
			}
			sourcetest.AssertTree(t, h.tree(t), map[string]string{"app.conf": "good"})
		})
	}
}

func TestChecksum(t *testing.T) {
	body := []byte("payload\n")
	sum := sha256Hex(body)
	md5sum := "1b5d0fd3a5d8a1b0a6e7d2a7e9b2d4b8" // not the md5 of body
	for _, tc := range []struct {
		name, query string
		ok          bool
	}{
		{"TypedSHA256", "checksum=sha256:" + sum, true},
		{"BareSHA256", "checksum=" + sum, true},
		{"MD5", "checksum=md5:" + md5Hex(body), true},
		{"SHA512", "checksum=sha512:" + sha512Hex(body), true},
		{"SHA256Mismatch", "checksum=sha256:" + sha256Hex([]byte("other")), false},
		{"MD5Mismatch", "checksum=md5:" + md5sum, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t, false)
			o.set([]byte("old"))
			h := newHarness(t, fetch.Limits{})
			h.mustSync(t, h.source(t, o.url("/p.txt"), fhttp.Options{}))
			o.set(body)
			r := h.sync(t, h.source(t, o.url("/p.txt?"+tc.query), fhttp.Options{}))
			if tc.ok {
				if r.err != nil {
					t.Fatal(r.err)
				}
				sourcetest.AssertTree(t, h.tree(t), map[string]string{"p.txt": string(body)})
				return
			}
			assertOneLine(t, r.err)
			if !fetch.IsPermanent(r.err) || !strings.Contains(r.err.Error(), "checksum mismatch: expected ") || !strings.Contains(r.err.Error(), ", got ") {
				t.Fatalf("err = %v, want a permanent mismatch naming expected and actual", r.err)
			}
			if r.wrote {
				t.Fatal("a body failing its checksum was written")
			}
			sourcetest.AssertTree(t, h.tree(t), map[string]string{"p.txt": "old"})
		})
	}
}

func TestChecksumFile(t *testing.T) {
	body := tarOf(t, true, file("a", "1"))
	sums := map[string]string{
		"GNU":          sha256Hex([]byte("x")) + "  other.tgz\n" + sha256Hex(body) + "  bundle.tgz\n",
		"GNUBinary":    "# comment\n" + sha256Hex(body) + " *bundle.tgz\n",
		"BSD":          "SHA256 (other.tgz) = " + sha256Hex(nil) + "\nSHA256 (bundle.tgz) = " + sha256Hex(body) + "\n",
		"MD5":          md5Hex(body) + "  ./bundle.tgz\n",
		"PreferExact":  sha256Hex([]byte("x")) + "  linux/bundle.tgz\n" + sha256Hex(body) + "  bundle.tgz\n",
		"Mismatch":     sha256Hex([]byte("x")) + "  bundle.tgz\n",
		"NotListed":    sha256Hex(body) + "  other.tgz\n",
		"MD5Mismatch":  md5Hex([]byte("x")) + "  bundle.tgz\n",
		"SingleSumBSD": "MD5 (bundle.tgz) = " + md5Hex(body) + "\n",
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
			h := newHarness(t, fetch.Limits{})
			s := h.source(t, o.url("/rel/bundle.tgz?checksum=file:"+sumsOrigin.url("/SHA256SUMS")), fhttp.Options{})
			r := h.sync(t, s)
			if want, bad := wantErr[name]; bad {
				assertOneLine(t, r.err)
				if !strings.Contains(r.err.Error(), want) || !fetch.IsPermanent(r.err) {
					t.Fatalf("err = %v, want a permanent %q", r.err, want)
				}
				if r.wrote {
					t.Fatal("written despite the checksum failure")
				}
				return
			}
			if r.err != nil {
				t.Fatal(r.err)
			}
			sourcetest.AssertTree(t, h.tree(t), map[string]string{"a": "1"})
			// Unchanged: the 304 needs no checksum file.
			before := sumsOrigin.requests.Load()
			h.mustSync(t, s)
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
			assertOneLine(t, err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "t0k") || strings.Contains(err.Error(), "eA==") || strings.Contains(err.Error(), ":pw@") {
				t.Fatalf("error shows a secret: %v", err)
			}
			got := ""
			var fe *kit.FieldError
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
	assertOneLine(t, err)
	for _, want := range []string{"http:// or https://", "archive=", "go together", "negative", "state directory"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, missing %q", err, want)
		}
	}
}

func TestLeftoverSpoolsAreRemoved(t *testing.T) {
	o := newOrigin(t, false)
	o.set([]byte("x"))
	h := newHarness(t, fetch.Limits{})
	s := h.source(t, o.url("/x"), fhttp.Options{})
	if err := os.MkdirAll(h.stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	stale := writeFile(t, h.stateDir, kit.TempPrefix+"body-123", "half a body")
	h.mustSync(t, s)
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale spool still there: %v", err)
	}
	assertStateDirClean(t, h)
}

// assertStateDirClean checks that only the state file is left behind.
func assertStateDirClean(t *testing.T, h *harness) {
	t.Helper()
	ents, err := os.ReadDir(h.stateDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "http.json" {
			t.Errorf("left in the state directory: %s", e.Name())
		}
	}
}
