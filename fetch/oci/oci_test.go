package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Masterminds/semver/v3"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/fetchtest"
	"github.com/ferrysync/ferry/internal/sourcetest"
)

// origin is the contract's origin: one tag of the in-process registry.
type origin struct {
	r *testRegistry
}

func (o *origin) Source(t *testing.T, stateDir string) fetch.Source {
	return source(t, "oci::http://"+o.r.host+"/team/conf:stable", Options{}, stateDir)
}

func (o *origin) Set(t *testing.T, files map[string]string) {
	o.r.broken.Store(false)
	o.r.pushFiles(t, "team/conf:stable", files)
}

func (o *origin) Break(t *testing.T) { o.r.broken.Store(true) }

func (o *origin) SetEscape(t *testing.T) string {
	o.r.pushFiles(t, "team/conf:stable", map[string]string{"app.yaml": "x\n", "passwd": "-> /etc/passwd"})
	return "passwd"
}

func TestContract(t *testing.T) {
	sourcetest.Run(t, &origin{r: newRegistry(t, "", "")})
}

// TestIdlePollIsOneHead: an unchanged tag costs one HEAD of the manifest
// and publishes nothing; the revision is the manifest digest.
func TestIdlePollIsOneHead(t *testing.T) {
	r := newRegistry(t, "", "")
	d := r.pushFiles(t, "conf:v1", map[string]string{"a.yaml": "a: 1\n"})
	f := newFixture(t, "oci::http://"+r.host+"/conf:v1", Options{})
	res := f.sync(t)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if !strings.HasPrefix(res.Rev, d.Hex+"-") {
		t.Fatalf("revision %q does not start with the manifest digest %s", res.Rev, d.Hex)
	}
	if got, want := f.src.OriginRevision(), "v1@"+d.String(); got != want {
		t.Fatalf("origin revision %q, want %q", got, want)
	}
	r.calls()
	for range 3 {
		if res := f.sync(t); res.Err != nil || res.Rev != res.Prev {
			t.Fatalf("idle poll: %+v", res)
		}
	}
	if calls := r.calls(); len(calls) != 3 || calls[0] != "HEAD /v2/conf/manifests/v1" {
		t.Fatalf("3 idle polls made %d requests: %v, want one HEAD each", len(calls), calls)
	}
}

// TestManifestChangesUnderTheSameTag: a tag pushed again is a new revision.
func TestManifestChangesUnderTheSameTag(t *testing.T) {
	r := newRegistry(t, "", "")
	r.pushFiles(t, "conf:latest", map[string]string{"a.yaml": "1\n"})
	f := newFixture(t, "oci::http://"+r.host+"/conf", Options{})
	first := f.sync(t)
	d2 := r.pushFiles(t, "conf:latest", map[string]string{"a.yaml": "2\n"})
	second := f.sync(t)
	if first.Err != nil || second.Err != nil || second.Rev == first.Rev {
		t.Fatalf("first %+v, second %+v", first, second)
	}
	sourcetest.AssertTree(t, f.tree(t), map[string]string{"a.yaml": "2\n"})
	if got := f.src.OriginRevision(); got != "latest@"+d2.String() {
		t.Fatalf("origin revision %q", got)
	}
}

// TestHeadWithoutDigestPollsWithGet: a registry that answers HEAD without
// a digest is polled with one GET.
func TestHeadWithoutDigestPollsWithGet(t *testing.T) {
	r := newRegistry(t, "", "")
	r.noDigest.Store(true)
	r.pushFiles(t, "conf:v1", map[string]string{"a.yaml": "1\n"})
	f := newFixture(t, "oci::http://"+r.host+"/conf:v1", Options{})
	if res := f.sync(t); res.Err != nil {
		t.Fatal(res.Err)
	}
	r.calls()
	if res := f.sync(t); res.Err != nil || res.Rev != res.Prev {
		t.Fatalf("idle poll: %+v", res)
	}
	if calls := r.calls(); len(calls) != 1 || calls[0] != "GET /v2/conf/manifests/v1" {
		t.Fatalf("idle poll made %v, want one GET", calls)
	}
}

// TestDigestPinnedIsNeverPolledAgain: a digest names its content for good.
func TestDigestPinnedIsNeverPolledAgain(t *testing.T) {
	r := newRegistry(t, "", "")
	d := r.pushFiles(t, "conf:v1", map[string]string{"a.yaml": "1\n"})
	f := newFixture(t, "oci::http://"+r.host+"/conf@"+d.String(), Options{})
	if res := f.sync(t); res.Err != nil {
		t.Fatal(res.Err)
	}
	sourcetest.AssertTree(t, f.tree(t), map[string]string{"a.yaml": "1\n"})
	r.calls()
	r.broken.Store(true)
	if res := f.sync(t); res.Err != nil || res.Rev != res.Prev {
		t.Fatalf("poll of a pinned digest: %+v", res)
	}
	if calls := r.calls(); len(calls) != 0 {
		t.Fatalf("a pinned digest was polled: %v", calls)
	}
	if got := f.src.OriginRevision(); got != d.String() {
		t.Fatalf("origin revision %q, want %q", got, d)
	}
}

// TestIndexPicksPlatform: ?platform= picks a manifest of an index; without
// it, the daemon's own platform.
func TestIndexPicksPlatform(t *testing.T) {
	r := newRegistry(t, "", "")
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64", "s390x"} {
		img := artifact(t, layerSpec{data: tgz(t, map[string]string{"arch": arch}), mt: types.OCILayer})
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	r.pushIndex(t, "multi:v1", idx)
	for query, want := range map[string]string{"?platform=linux/arm64": "arm64", "?platform=linux/s390x": "s390x", "": runtime.GOARCH} {
		t.Run(query, func(t *testing.T) {
			f := newFixture(t, "oci::http://"+r.host+"/multi:v1"+query, Options{})
			if res := f.sync(t); res.Err != nil {
				t.Fatal(res.Err)
			}
			sourcetest.AssertTree(t, f.tree(t), map[string]string{"arch": want})
		})
	}
	f := newFixture(t, "oci::http://"+r.host+"/multi:v1?platform=windows/amd64", Options{})
	if res := f.sync(t); res.Err == nil || !fetch.IsPermanent(res.Err) || !strings.Contains(res.Err.Error(), "linux/arm64") {
		t.Fatalf("a platform the index lacks: %v", res.Err)
	}
}

// TestLayerSelection: the default is the only layer or the first tar; a
// media type picks one; a plain file is published whole under its title.
func TestLayerSelection(t *testing.T) {
	r := newRegistry(t, "", "")
	r.push(t, "two:v1", artifact(t,
		layerSpec{data: []byte(`{"note":"metadata"}`), mt: "application/vnd.example.meta+json", title: "meta.json"},
		layerSpec{data: tgz(t, map[string]string{"app.yaml": "tar\n"}), mt: types.OCILayer},
	))
	// What `oras push r/one:v1 app.yaml` makes: a plain file, OCI tar type.
	r.push(t, "one:v1", artifact(t, layerSpec{data: []byte("plain: true\n"), mt: types.OCIUncompressedLayer, title: "app.yaml"}))
	for _, tc := range []struct {
		url  string
		want map[string]string
	}{
		{"/two:v1", map[string]string{"app.yaml": "tar\n"}},
		{"/two:v1?layer=application/vnd.example.meta+json", map[string]string{"meta.json": `{"note":"metadata"}`}},
		{"/two:v1//?layer=application/vnd.oci.image.layer.v1.tar%2Bgzip", map[string]string{"app.yaml": "tar\n"}},
		{"/one:v1", map[string]string{"app.yaml": "plain: true\n"}},
		{"/two:v1?extract=false", map[string]string{"two": string(tgz(t, map[string]string{"app.yaml": "tar\n"}))}},
	} {
		t.Run(tc.url, func(t *testing.T) {
			f := newFixture(t, "oci::http://"+r.host+tc.url, Options{})
			if res := f.sync(t); res.Err != nil {
				t.Fatal(res.Err)
			}
			sourcetest.AssertTree(t, f.tree(t), tc.want)
		})
	}
	f := newFixture(t, "oci::http://"+r.host+"/two:v1?layer=application/zip", Options{})
	if res := f.sync(t); res.Err == nil || !strings.Contains(res.Err.Error(), "application/vnd.example.meta+json") {
		t.Fatalf("a media type the manifest lacks: %v", res.Err)
	}
}

// TestHostileLayerRefused: a layer's entries meet the archive rules.
func TestHostileLayerRefused(t *testing.T) {
	r := newRegistry(t, "", "")
	for _, tc := range []struct {
		name string
		hdr  tar.Header
		want string
	}{
		{"dotdot", tar.Header{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644}, `"../evil"`},
		{"absolute", tar.Header{Name: "/etc/cron.d/x", Typeflag: tar.TypeReg, Mode: 0o644}, `"/etc/cron.d/x"`},
		{"device", tar.Header{Name: "null", Typeflag: tar.TypeChar, Mode: 0o644}, `"null": device`},
		{"hardlink", tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"}, `"h": hard link`},
		{"git", tar.Header{Name: ".git/config", Typeflag: tar.TypeReg, Mode: 0o644}, `.git`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			gz := gzip.NewWriter(&buf)
			tw := tar.NewWriter(gz)
			if err := tw.WriteHeader(&tc.hdr); err != nil {
				t.Fatal(err)
			}
			tw.Close()
			gz.Close()
			r.push(t, "bad:"+tc.name, artifact(t, layerSpec{data: buf.Bytes(), mt: types.OCILayer}))
			f := newFixture(t, "oci::http://"+r.host+"/bad:"+tc.name, Options{})
			res := f.sync(t)
			if res.Err == nil || !fetch.IsPermanent(res.Err) || !strings.Contains(res.Err.Error(), tc.want) {
				t.Fatalf("err = %v, want a permanent refusal naming %s", res.Err, tc.want)
			}
		})
	}
}

// TestLayerDigestMismatchRefused: a blob whose content is not its digest
// is never expanded.
func TestLayerDigestMismatchRefused(t *testing.T) {
	r := newRegistry(t, "", "")
	r.pushFiles(t, "conf:v1", map[string]string{"a.yaml": "1\n"})
	r.flipBlob.Store(true)
	f := newFixture(t, "oci::http://"+r.host+"/conf:v1", Options{})
	res := f.sync(t)
	if res.Err == nil || !fetch.IsPermanent(res.Err) || !strings.Contains(res.Err.Error(), "does not match") {
		t.Fatalf("err = %v, want a permanent digest mismatch", res.Err)
	}
}

// TestSemverTag: ?tag=semver: follows the highest matching tag; a
// prerelease only when the range names one; "_" is build metadata.
func TestSemverTag(t *testing.T) {
	r := newRegistry(t, "", "")
	for _, tag := range []string{"1.2.0", "1.3.0", "v1.3.1_build.7", "1.4.0-rc.1", "2.0.0", "latest", "not-a-version"} {
		r.pushFiles(t, "conf:"+tag, map[string]string{"tag": tag})
	}
	for rng, want := range map[string]string{
		">=1.2.0 <2":     "v1.3.1_build.7",
		">=1.2.0-0 <2":   "1.4.0-rc.1",
		"~1.2":           "1.2.0",
		"1.3.0":          "1.3.0",
		"^2 || ~1.2":     "2.0.0",
		"1.3.1+build.7":  "v1.3.1_build.7",
		">1.3.1 <1.4.0":  "",
		"<1.0.0 || >=30": "",
	} {
		t.Run(rng, func(t *testing.T) {
			f := newFixture(t, "oci::http://"+r.host+"/conf?tag=semver:"+rng, Options{})
			res := f.sync(t)
			if want == "" {
				if res.Err == nil || !strings.Contains(res.Err.Error(), "no tag of 7 matches") {
					t.Fatalf("err = %v, want no match", res.Err)
				}
				return
			}
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			sourcetest.AssertTree(t, f.tree(t), map[string]string{"tag": want})
			if got := f.src.OriginRevision(); !strings.HasPrefix(got, want+"@sha256:") {
				t.Fatalf("origin revision %q, want %s@sha256:...", got, want)
			}
		})
	}
}

func TestHighestBreaksBuildTiesTheSameWay(t *testing.T) {
	c, err := semver.NewConstraint(">=1")
	if err != nil {
		t.Fatal(err)
	}
	for _, names := range [][]string{{"1.0.0+b", "1.0.0+a"}, {"1.0.0+a", "1.0.0+b"}} {
		if got, _ := fetch.HighestVersion(c, names, tagVersion); got != "1.0.0+b" {
			t.Fatalf("Highest(%v) = %q", names, got)
		}
	}
}

// TestTagListingIsBoundedWhateverTheRegistrySends: with ?tag=semver:,
// every poll lists the repository's tags, and go-containerregistry alone
// would decode each page whole and follow the Link header for as long as
// the registry gives one. ferry bounds the listing itself (tags.go): one
// endless page, endless well-formed pages and endless empty pages are all
// refused, permanently and naming the bound, long before the fake registry
// stops at sendCap.
func TestTagListingIsBoundedWhateverTheRegistrySends(t *testing.T) {
	const (
		sendCap  = 40 << 20 // what the registry sends at most, then it stops
		maxRead  = 16 << 20 // what ferry may be made to read (and hold) for one listing
		tagBytes = 1000
	)
	tag := strings.Repeat("9", tagBytes) // not a version: nothing ever matches

	for mode, want := range map[string]string{
		"endless-page":        "larger than 8388608 bytes, the most ferry reads for one listing",
		"endless-pages":       "larger than 8388608 bytes, the most ferry reads for one listing",
		"endless-empty-pages": "did not end after 1000 pages, the most ferry follows",
	} {
		t.Run(mode, func(t *testing.T) {
			var sent atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch {
				case r.URL.Path == "/v2/" || r.URL.Path == "/v2":
					w.WriteHeader(http.StatusOK)
					return
				case r.URL.Path != "/v2/conf/tags/list":
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				write := func(s string) bool {
					if sent.Load() >= sendCap {
						return false
					}
					n, err := w.Write([]byte(s))
					sent.Add(int64(n))
					return err == nil
				}
				if mode != "endless-page" {
					// A well-formed page of 100 tags (or none), and always a next one.
					page := 0
					fmt.Sscan(r.URL.Query().Get("page"), &page)
					if sent.Load() < sendCap {
						w.Header().Set("Link", fmt.Sprintf(`</v2/conf/tags/list?page=%d>; rel="next"`, page+1))
					}
					n := 100
					if mode == "endless-empty-pages" {
						n = 0
					}
					var b strings.Builder
					b.WriteString(`{"name":"conf","tags":[`)
					for i := range n {
						if i > 0 {
							b.WriteByte(',')
						}
						fmt.Fprintf(&b, `"%s-%d-%d"`, tag, page, i)
					}
					b.WriteString("]}")
					write(b.String())
					return
				}
				// One page that never ends.
				if !write(`{"name":"conf","tags":["` + tag + `"`) {
					return
				}
				for write(`,"` + tag + `"`) {
				}
			}))
			defer srv.Close()
			host := strings.TrimPrefix(srv.URL, "http://")

			s := source(t, "oci::http://"+host+"/conf?tag=semver:>=1.0.0", Options{}, t.TempDir())
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			start := time.Now()
			_, err := s.Fetch(ctx, "", fetchtest.NewWriter(fetch.Limits{}))
			t.Logf("after %v and %d bytes sent: %v", time.Since(start).Round(time.Millisecond), sent.Load(), err)
			if err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %v, want a permanent refusal saying %q", err, want)
			}
			if got := sent.Load(); got > maxRead {
				t.Fatalf("ferry read %d MiB of tag listing from the registry (it stopped only because the fake registry did, at %d MiB): "+
					"the listing must be bounded by ferry, not by what the registry sends", got>>20, sendCap>>20)
			}
		})
	}
}

// TestAuth: a registry that wants basic auth refuses an anonymous pull for
// good, and takes a password file or a Docker config.
func TestAuth(t *testing.T) {
	r := newRegistry(t, "ci", "s3cret")
	r.pushFiles(t, "private/conf:v1", map[string]string{"a.yaml": "1\n"})
	raw := "oci::http://" + r.host + "/private/conf:v1"
	dockerConfig := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, r.host, base64.StdEncoding.EncodeToString([]byte("ci:s3cret")))
	for _, tc := range []struct {
		name string
		o    Options
		want string // "" for success
	}{
		{"anonymous", Options{}, "no credentials are configured"},
		{"wrong password", Options{Username: "ci", PasswordFile: secretFile(t, "nope\n")}, "credentials refused"},
		{"password file", Options{Username: "ci", PasswordFile: secretFile(t, "s3cret\n")}, ""},
		{"docker config", Options{DockerConfigFile: secretFile(t, dockerConfig)}, ""},
		{"docker config for another registry", Options{DockerConfigFile: secretFile(t, `{"auths":{"ghcr.io":{"auth":"eDp5"}}}`)}, "no credentials are configured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, raw, tc.o)
			res := f.sync(t)
			switch {
			case tc.want == "" && res.Err != nil:
				t.Fatal(res.Err)
			case tc.want != "" && (res.Err == nil || !fetch.IsPermanent(res.Err) || !strings.Contains(res.Err.Error(), tc.want)):
				t.Fatalf("err = %v, want a permanent %q", res.Err, tc.want)
			case res.Err != nil && strings.Contains(res.Err.Error(), "s3cret"):
				t.Fatalf("the error shows the secret: %v", res.Err)
			}
		})
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	for raw, want := range map[string]string{
		"oci://r.example/conf:v1@sha256:" + strings.Repeat("a", 64): "not both",
		"oci://r.example/conf@sha256:abc":                           "want sha256:HEX",
		"oci://r.example/conf:v1?tag=v2":                            "give one",
		"oci://r.example/conf?tag=semver:banana":                    "not a version range",
		"oci://r.example/conf?extract=maybe":                        "extract=",
		"oci://r.example/conf?platform=linux":                       "platform=",
		"oci://r.example/conf?ref=main":                             `unknown option "ref"`,
		"oci://u:pw@r.example/conf":                                 "credentials in the URL",
		"oci://r.example/Conf":                                      "repository",
		"oci://r.example/conf//sub?extract=false":                   "one file",
	} {
		u, err := fetch.Parse(raw)
		if err == nil {
			_, err = New(u, Options{}, fetch.Env{StateDir: t.TempDir()})
		}
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "pw@") {
			t.Errorf("New(%s) = %v, want an error containing %q", raw, err, want)
		}
	}
	u, _ := fetch.Parse("oci://r.example/conf")
	_, err := New(u, Options{DockerConfigFile: secretFile(t, "{}"), BearerTokenFile: secretFile(t, "t")}, fetch.Env{StateDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "give one of") {
		t.Errorf("two kinds of credentials: %v", err)
	}
}
