package s3_test

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/fetchtest"
	s3src "github.com/ferrysync/ferry/fetch/s3"
	"github.com/ferrysync/ferry/internal/sourcetest"
	"github.com/ferrysync/ferry/sync"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	code := m.Run()
	stopVersitygw()
	os.Exit(code)
}

// newSource builds a source for rawURL, given env, with key files holding
// the test keys; mod adjusts the options.
func newSource(t testing.TB, rawURL string, env fetch.Env, mod func(*s3src.Options)) *s3src.Source {
	t.Helper()
	a, s := keyFiles(t, testAccess, testSecret)
	o := s3src.Options{AccessKeyFile: a, SecretKeyFile: s}
	if mod != nil {
		mod(&o)
	}
	src, err := s3src.New(parse(t, "s3::"+rawURL), o, env)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func parse(t testing.TB, raw string) *fetch.URL {
	t.Helper()
	u, err := fetch.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// fetchNew fetches src once, with nothing published, into an in-memory
// Writer bounded by l.
func fetchNew(t testing.TB, src fetch.Source, l fetch.Limits) (string, *fetchtest.Writer, error) {
	t.Helper()
	w := fetchtest.NewWriter(l)
	rev, err := src.Fetch(t.Context(), "", w)
	return rev, w, err
}

// newStore opens the publish engine on a fresh root, for the tests that
// sync more than once (sourcetest.Sync, as source "c") or look at the
// volume.
func newStore(t testing.TB, l fetch.Limits) *sync.Store {
	t.Helper()
	store, err := sync.OpenStore(t.TempDir(), l)
	if err != nil {
		t.Fatal(err)
	}
	return store
}

func assertPublished(t testing.TB, store *sync.Store, want map[string]string) {
	t.Helper()
	sourcetest.AssertTree(t, sourcetest.ReadTree(t, store.LinkPath("c")), want)
}

func assertCounts(t testing.TB, got map[string]int, want map[string]int) {
	t.Helper()
	for k := range got {
		if _, ok := want[k]; !ok && got[k] != 0 {
			t.Errorf("unexpected %s requests: %d (all: %v)", k, got[k], got)
		}
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s requests = %d, want %d (all: %v)", k, got[k], n, got)
		}
	}
}

// origin is a prefix on a real server, for the shared source contract.
type origin struct {
	srv    *server
	bucket string
}

const originPrefix = "conf/"

func (o *origin) Source(t *testing.T, stateDir string) fetch.Source {
	return newSource(t, o.srv.url(o.bucket, originPrefix), fetch.Env{StateDir: stateDir}, nil)
}

func (o *origin) Set(t *testing.T, files map[string]string) {
	t.Helper()
	for _, k := range o.srv.keys(t, o.bucket, "") {
		o.srv.del(t, o.bucket, k)
	}
	for k, v := range files {
		o.srv.put(t, o.bucket, originPrefix+k, v)
	}
}

// Break stops the endpoint the source talks to: connections are refused.
func (o *origin) Break(t *testing.T) { o.srv.front.Close() }

// escapeOrigin can also store a key that climbs out of the prefix.
type escapeOrigin struct{ origin }

func (o *escapeOrigin) SetEscape(t *testing.T) string {
	o.Set(t, map[string]string{"app.yaml": "x"})
	o.srv.put(t, o.bucket, originPrefix+"../evil", "x")
	return `key "conf/../evil"`
}

func TestContract(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		o := origin{srv: s, bucket: s.newBucket(t, false)}
		if s.name == "gofakes3" {
			// versitygw stores keys as file paths ("conf/../evil" becomes
			// "evil"): only gofakes3 can hold a hostile key.
			sourcetest.Run(t, &escapeOrigin{o})
			return
		}
		sourcetest.Run(t, &o)
	})
}

// nestedTree is n objects in nested directories under conf/.
func nestedTree(n int) map[string]string {
	files := map[string]string{}
	for i := range n {
		var name string
		switch i % 3 {
		case 0:
			name = fmt.Sprintf("top%04d.yaml", i)
		case 1:
			name = fmt.Sprintf("d%02d/f%04d.yaml", i%7, i)
		default:
			name = fmt.Sprintf("d%02d/deep/er/f%04d.json", i%5, i)
		}
		files[name] = fmt.Sprintf("n: %d\n", i)
	}
	return files
}

func putTree(t testing.TB, s *server, bucket, prefix string, files map[string]string) {
	t.Helper()
	raw := make(map[string][]byte, len(files))
	for k, v := range files {
		raw[prefix+k] = []byte(v)
	}
	s.putMany(t, bucket, raw)
}

func TestPrefixOverThousandKeysIsPaginatedAndAnIdlePollListsOnly(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		bucket := s.newBucket(t, false)
		files := nestedTree(1234)
		putTree(t, s, bucket, "conf/", files)
		s.put(t, bucket, "other/outside.yaml", "not in the prefix")
		s.put(t, bucket, "conf/d00/", "") // a directory marker
		store := newStore(t, fetch.Limits{})
		src := newSource(t, s.url(bucket, "conf/"), fetch.Env{}, nil)
		s.counts.take()
		rev := sourcetest.MustSync(t, store, "c", src).Rev
		assertPublished(t, store, files)
		assertCounts(t, s.counts.take(), map[string]int{"LIST": 2, "GET": 1234})

		// An idle poll: one List page per 1,000 keys, no GET, no byte.
		if r := sourcetest.MustSync(t, store, "c", src); r.Rev != rev || r.Stats.BytesWritten != 0 {
			t.Fatalf("idle poll: revision %s -> %s, %d bytes written", rev, r.Rev, r.Stats.BytesWritten)
		}
		assertCounts(t, s.counts.take(), map[string]int{"LIST": 2})
	})
}

func TestOnlyChangedObjectsAreDownloaded(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		bucket := s.newBucket(t, false)
		files := nestedTree(30)
		putTree(t, s, bucket, "conf/", files)
		src := newSource(t, s.url(bucket, "conf/"), fetch.Env{}, nil)
		rev1, w1, err := fetchNew(t, src, fetch.Limits{})
		if err != nil {
			t.Fatal(err)
		}

		files["d01/f0001.yaml"] = "changed: true\n"
		files["new.yaml"] = "new\n"
		delete(files, "d00/f0007.yaml")
		s.put(t, bucket, "conf/d01/f0001.yaml", files["d01/f0001.yaml"])
		s.put(t, bucket, "conf/new.yaml", files["new.yaml"])
		s.del(t, bucket, "conf/d00/f0007.yaml")
		s.counts.take()
		w2 := fetchtest.NewWriter(fetch.Limits{}).Reuse(w1)
		rev2, err := src.Fetch(t.Context(), rev1, w2)
		if err != nil || rev2 == rev1 {
			t.Fatalf("revision %s -> %s, %v", rev1, rev2, err)
		}
		assertCounts(t, s.counts.take(), map[string]int{"LIST": 1, "GET": 2})
		if n := w2.Opened(); n != 2 {
			t.Fatalf("%d objects read, want only the two changed", n)
		}
		sourcetest.AssertTree(t, w2.Tree(), files)
	})
}

// TestChangingThePrefixRepublishesTheSameObjects: the published names are
// the keys minus the prefix (a //subdir is part of it), so the same keys
// listed under another prefix are another tree. The revision digests the
// layout as well as the (key, ETag, size) listing, as the HTTP and OCI
// sources do (TestChangingLayoutRepublishesTheSameBody): when the URL is
// edited (after a restart, the published revision is prev), the new tree
// is published rather than the old one kept as "unchanged".
func TestChangingThePrefixRepublishesTheSameObjects(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		bucket := s.newBucket(t, false)
		s.put(t, bucket, "conf/sub/app.yaml", "v: 1\n")
		store := newStore(t, fetch.Limits{})
		prev := ""
		for _, step := range []struct{ key, name string }{
			{"", "conf/sub/app.yaml"}, // the bucket's root
			{"conf/", "sub/app.yaml"},
			{"conf//sub", "app.yaml"},
		} {
			src := newSource(t, s.url(bucket, step.key), fetch.Env{}, nil)
			r := sourcetest.MustSync(t, store, "c", src)
			if r.Rev == prev {
				t.Errorf("%q: revision unchanged (%s) although the URL now publishes another tree", step.key, r.Rev)
			}
			assertPublished(t, store, map[string]string{step.name: "v: 1\n"})
			prev = r.Rev
		}
	})
}

func TestSingleObjectIsPublishedUnderItsBaseNameAndPolledWithConditionalGet(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		bucket := s.newBucket(t, false)
		s.put(t, bucket, "env/prod/app.yaml", "v: 1\n")
		s.put(t, bucket, "env/prod/app.yaml.bak", "not this one\n")
		url, env := s.url(bucket, "env/prod/app.yaml"), fetch.Env{StateDir: t.TempDir()}
		store := newStore(t, fetch.Limits{})
		src := newSource(t, url, env, nil)
		s.counts.take()
		rev1 := sourcetest.MustSync(t, store, "c", src).Rev
		assertPublished(t, store, map[string]string{"app.yaml": "v: 1\n"})
		assertCounts(t, s.counts.take(), map[string]int{"GET": 1})

		// Unchanged: one GET answered 304, nothing written.
		if r := sourcetest.MustSync(t, store, "c", src); r.Rev != rev1 || r.Stats.BytesWritten != 0 {
			t.Fatalf("unchanged object: rev %s (want %s), %d bytes written", r.Rev, rev1, r.Stats.BytesWritten)
		}
		assertCounts(t, s.counts.take(), map[string]int{"GET-304": 1})

		// A new process (same state directory) still polls conditionally.
		src = newSource(t, url, env, nil)
		if r := sourcetest.MustSync(t, store, "c", src); r.Rev != rev1 {
			t.Fatalf("revision after restart %s, want %s", r.Rev, rev1)
		}
		assertCounts(t, s.counts.take(), map[string]int{"GET-304": 1})

		s.put(t, bucket, "env/prod/app.yaml", "v: 2\n")
		if r := sourcetest.MustSync(t, store, "c", src); r.Rev == rev1 {
			t.Fatal("revision did not change with the object")
		}
		assertPublished(t, store, map[string]string{"app.yaml": "v: 2\n"})
		assertCounts(t, s.counts.take(), map[string]int{"GET": 1})
	})
}

// notModifiedFront stands before s and answers 304 Not Modified to every
// object GET that carries no If-None-Match, as a broken server or a cache
// in front of one may; everything else goes through. It returns the
// front's endpoint.
func notModifiedFront(t testing.TB, s *server) string {
	t.Helper()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && !r.URL.Query().Has("list-type") && r.Header.Get("If-None-Match") == "" {
			w.Header().Set("ETag", `"0cc175b9c0f1b6a831c399e269772661"`)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		s.counts.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	return front.URL
}

func TestNotModifiedToUnconditionalGetIsAnError(t *testing.T) {
	const want = "unexpected HTTP 304 Not Modified to an unconditional request"
	forEachServer(t, func(t *testing.T, s *server) {
		bucket := s.newBucket(t, false)
		s.put(t, bucket, "conf/app.yaml", "v: 1\n")
		front := notModifiedFront(t, s) + "/" + bucket
		t.Run("FirstSyncOfObject", func(t *testing.T) {
			_, _, err := fetchNew(t, newSource(t, front+"/conf/app.yaml", fetch.Env{StateDir: t.TempDir()}, nil), fetch.Limits{})
			assertErr(t, err, false, want, "s3://"+bucket+"/conf/app.yaml")
		})
		t.Run("ObjectWithoutSavedETag", func(t *testing.T) {
			// Published, then a new process without the saved ETag: its
			// GET is unconditional again.
			rev, _, err := fetchNew(t, newSource(t, s.url(bucket, "conf/app.yaml"), fetch.Env{StateDir: t.TempDir()}, nil), fetch.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			src := newSource(t, front+"/conf/app.yaml", fetch.Env{StateDir: t.TempDir()}, nil)
			_, err = src.Fetch(t.Context(), rev, fetchtest.NewWriter(fetch.Limits{}))
			assertErr(t, err, false, want)
		})
		t.Run("ObjectOfPrefix", func(t *testing.T) {
			_, _, err := fetchNew(t, newSource(t, front+"/conf/", fetch.Env{}, nil), fetch.Limits{})
			assertErr(t, err, false, want, "s3://"+bucket+"/conf/app.yaml")
		})
	})
}

func TestStateDirectoryIsPrivateAndNeverNarrowsTheTree(t *testing.T) {
	s := newGofakes3(t)
	bucket := s.newBucket(t, false)
	s.put(t, bucket, "conf/app.yaml", "v: 1\n")
	store := newStore(t, fetch.Limits{}) // a fresh root: ROOT/.ferry/c does not exist
	state := sync.StateDir(store.Root(), "c")
	src := newSource(t, s.url(bucket, "conf/app.yaml"), fetch.Env{StateDir: state}, nil)
	old := syscall.Umask(0o077) // the strictest a sidecar may run with
	defer syscall.Umask(old)
	sourcetest.MustSync(t, store, "c", src)
	for dir, want := range map[string]fs.FileMode{filepath.Dir(state): 0o755, state: 0o700} {
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, %v; want %v", dir, fi.Mode(), err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(state, "s3-object.json")); err != nil {
		t.Errorf("state not saved: %v", err)
	}
}

func TestMissingSingleObjectIsPermanentAndSuggestsPrefix(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		bucket := s.newBucket(t, false)
		s.put(t, bucket, "conf/a.yaml", "a")
		_, _, err := fetchNew(t, newSource(t, s.url(bucket, "conf"), fetch.Env{}, nil), fetch.Limits{})
		assertErr(t, err, true, "does not exist", `ending in "/" names a prefix`)
	})
}

func TestVersionPinServesThatVersion(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		bucket := s.newBucket(t, true)
		v1 := s.put(t, bucket, "app.yaml", "version: 1\n")
		v2 := s.put(t, bucket, "app.yaml", "version: 2\n")
		if v1 == "" || v1 == v2 {
			t.Fatalf("server gave version IDs %q and %q", v1, v2)
		}
		store := newStore(t, fetch.Limits{})
		src := newSource(t, s.url(bucket, "app.yaml?version="+v1), fetch.Env{}, nil)
		rev1 := sourcetest.MustSync(t, store, "c", src).Rev
		assertPublished(t, store, map[string]string{"app.yaml": "version: 1\n"})

		s.put(t, bucket, "app.yaml", "version: 3\n")
		s.counts.take()
		if r := sourcetest.MustSync(t, store, "c", src); r.Rev != rev1 {
			t.Fatalf("pinned version changed revision: %s -> %s", rev1, r.Rev)
		}
		assertPublished(t, store, map[string]string{"app.yaml": "version: 1\n"})
		assertCounts(t, s.counts.take(), map[string]int{"GET-304": 1})
	})
}

func TestMissingBucketIsPermanent(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		_, _, err := fetchNew(t, newSource(t, s.url("no-such-bucket-here", "conf/"), fetch.Env{}, nil), fetch.Limits{})
		assertErr(t, err, true, "NoSuchBucket", "s3://no-such-bucket-here/conf/")
	})
}

func TestEmptyPrefixIsAnErrorUnlessAllowed(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		bucket := s.newBucket(t, false)
		s.put(t, bucket, "other/a.yaml", "a")
		s.put(t, bucket, "conf/", "") // only a directory marker
		_, _, err := fetchNew(t, newSource(t, s.url(bucket, "conf/"), fetch.Env{}, nil), fetch.Limits{})
		assertErr(t, err, true, "no objects under the prefix", "allow an empty prefix")

		store := newStore(t, fetch.Limits{})
		src := newSource(t, s.url(bucket, "conf/"), fetch.Env{}, func(o *s3src.Options) { o.AllowEmpty = true })
		if r := sourcetest.MustSync(t, store, "c", src); r.Rev == "" {
			t.Fatal("no revision")
		}
		assertPublished(t, store, map[string]string{})
	})
}

func TestBadCredentialsArePermanentAndSecretsNeverShown(t *testing.T) {
	s := newVersitygw(t) // gofakes3 does not check signatures
	bucket := s.newBucket(t, false)
	s.put(t, bucket, "conf/a.yaml", "a")
	for _, tc := range []struct{ name, access, secret, want string }{
		{"WrongSecret", testAccess, "not-the-secret-XYZ", "SignatureDoesNotMatch"},
		{"UnknownKey", "unknownkeyid", "not-the-secret-XYZ", "does not know the access key ID"},
		{"Anonymous", "", "not-the-secret-XYZ", "access denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newSource(t, s.url(bucket, "conf/"), fetch.Env{}, func(o *s3src.Options) {
				if tc.access == "" {
					*o = s3src.Options{Anonymous: true}
					return
				}
				o.AccessKeyFile, o.SecretKeyFile = keyFiles(t, tc.access, tc.secret)
			})
			_, _, err := fetchNew(t, src, fetch.Limits{})
			assertErr(t, err, true, tc.want)
			if strings.Contains(err.Error(), tc.secret) {
				t.Fatalf("error shows the secret: %v", err)
			}
		})
	}
}

func TestKeyFilesAreReadAgainOnEverySync(t *testing.T) {
	t.Run("versitygw", func(t *testing.T) {
		s := newVersitygw(t)
		bucket := s.newBucket(t, false)
		s.put(t, bucket, "conf/a.yaml", "a")
		a, sec := keyFiles(t, testAccess, "wrong-secret")
		src := newSource(t, s.url(bucket, "conf/"), fetch.Env{}, func(o *s3src.Options) { o.AccessKeyFile, o.SecretKeyFile = a, sec })
		_, _, err := fetchNew(t, src, fetch.Limits{})
		assertErr(t, err, true, "SignatureDoesNotMatch")

		// The Secret is fixed under the same access key ID: this is what
		// the SDK's signing-key cache got wrong (aws/aws-sdk-go-v2#3350).
		writeFile(t, sec, testSecret+"\n")
		_, w, err := fetchNew(t, src, fetch.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		sourcetest.AssertTree(t, w.Tree(), map[string]string{"a.yaml": "a"})

		writeFile(t, sec, "rotated-away\n") // and broken again
		_, _, err = fetchNew(t, src, fetch.Limits{})
		assertErr(t, err, true, "SignatureDoesNotMatch")
	})
	t.Run("gofakes3", func(t *testing.T) {
		// gofakes3 accepts any key: what it receives shows the file was read.
		s := newGofakes3(t)
		bucket := s.newBucket(t, false)
		s.put(t, bucket, "conf/a.yaml", "a")
		a, sec := keyFiles(t, "firstkeyid", "secret1")
		src := newSource(t, s.url(bucket, "conf/"), fetch.Env{}, func(o *s3src.Options) { o.AccessKeyFile, o.SecretKeyFile = a, sec })
		for _, id := range []string{"firstkeyid", "secondkeyid"} {
			writeFile(t, a, id)
			if _, _, err := fetchNew(t, src, fetch.Limits{}); err != nil {
				t.Fatal(err)
			}
			if got := s.counts.keyID(); got != id {
				t.Fatalf("server saw key %q, want %q", got, id)
			}
		}
	})
}

func TestUnreachableEndpointIsTransientAndOneLine(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	_, _, err = fetchNew(t, newSource(t, "http://"+addr+"/bucket/conf/", fetch.Env{}, nil), fetch.Limits{})
	assertErr(t, err, false, "cannot reach the S3 endpoint http://"+addr, "connection refused")
}

func TestObjectReplacedDuringSyncFailsTransiently(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		bucket := s.newBucket(t, false)
		s.put(t, bucket, "conf/a.yaml", "old")
		src := newSource(t, s.url(bucket, "conf/"), fetch.Env{}, nil)
		// Replace the object after the listing, before its GET.
		_, err := src.Fetch(t.Context(), "", &hookWriter{Writer: fetchtest.NewWriter(fetch.Limits{}), before: func() {
			s.put(t, bucket, "conf/a.yaml", "new!")
		}})
		assertErr(t, err, false, "changed during the sync")
		// The next sync lists again and gets the new content.
		_, w, err := fetchNew(t, src, fetch.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		sourcetest.AssertTree(t, w.Tree(), map[string]string{"a.yaml": "new!"})
	})
}

func TestDownloadsRunInParallelUpToConcurrency(t *testing.T) {
	s := newGofakes3(t)
	s.counts.getDelay = 50 * time.Millisecond // long enough for GETs to overlap
	bucket := s.newBucket(t, false)
	putTree(t, s, bucket, "conf/", nestedTree(24))
	src := newSource(t, s.url(bucket, "conf/"), fetch.Env{}, func(o *s3src.Options) { o.Concurrency = 3 })
	if _, _, err := fetchNew(t, src, fetch.Limits{}); err != nil {
		t.Fatal(err)
	}
	if p := s.counts.peakGets(); p != 3 {
		t.Fatalf("peak concurrent GETs = %d, want 3", p)
	}
}

func TestFirstFailureStartsNoOtherDownload(t *testing.T) {
	s := newGofakes3(t)
	bucket := s.newBucket(t, false)
	putTree(t, s, bucket, "conf/", nestedTree(10))
	src := newSource(t, s.url(bucket, "conf/"), fetch.Env{}, func(o *s3src.Options) { o.Concurrency = 1 })
	var writes atomic.Int64
	w := &failingWriter{Writer: fetchtest.NewWriter(fetch.Limits{}), writes: &writes}
	_, err := src.Fetch(t.Context(), "", w)
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Fetch = %v, want the Writer's error", err)
	}
	if n := writes.Load(); n != 1 {
		t.Fatalf("%d files written, want 1: the first failure must stop the rest", n)
	}
}

// failingWriter fails every WriteFile, counting them.
type failingWriter struct {
	fetch.Writer
	writes *atomic.Int64
}

func (w *failingWriter) WriteFile(string, fs.FileMode, string, fetch.Opener) error {
	w.writes.Add(1)
	return errors.New("disk on fire")
}

func TestTreeLimitsFailTheSync(t *testing.T) {
	s := newGofakes3(t)
	bucket := s.newBucket(t, false)
	s.put(t, bucket, "conf/small.yaml", "x")
	s.put(t, bucket, "conf/big.yaml", strings.Repeat("x", 4096))
	src := newSource(t, s.url(bucket, "conf/"), fetch.Env{}, nil)
	_, _, err := fetchNew(t, src, fetch.Limits{MaxFileSize: 1024})
	assertErr(t, err, true, "big.yaml", "(max-file-size)")
	_, _, err = fetchNew(t, src, fetch.Limits{MaxFiles: 1})
	assertErr(t, err, true, "(max-files)")
}

// assertErr checks err is one line, has the wanted permanence and holds
// every part.
func assertErr(t testing.TB, err error, permanent bool, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("sync succeeded, want an error")
	}
	t.Logf("error: %v", err)
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	if fetch.IsPermanent(err) != permanent {
		t.Errorf("IsPermanent = %v, want %v: %v", !permanent, permanent, err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

// hookWriter runs before ahead of every Opener.
type hookWriter struct {
	fetch.Writer
	before func()
}

func (w *hookWriter) WriteFile(name string, mode fs.FileMode, key string, open fetch.Opener) error {
	return w.Writer.WriteFile(name, mode, key, func() (io.ReadCloser, error) {
		w.before()
		return open()
	})
}
