package s3_test

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/fetch"
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

// newSource builds a source for rawURL with key files holding the test
// keys; mod adjusts the options.
func newSource(t testing.TB, rawURL, stateDir string, mod func(*s3src.Options)) *s3src.Source {
	t.Helper()
	return newSourceEnv(t, rawURL, fetch.Env{StateDir: stateDir}, mod)
}

// newSourceEnv is newSource with the whole environment the daemon gives.
func newSourceEnv(t testing.TB, rawURL string, env fetch.Env, mod func(*s3src.Options)) *s3src.Source {
	t.Helper()
	a, s := keyFiles(t, testAccess, testSecret)
	o := s3src.Options{AccessKeyFile: a, SecretKeyFile: s}
	if mod != nil {
		mod(&o)
	}
	u, err := fetch.Parse("s3::" + rawURL)
	if err != nil {
		t.Fatal(err)
	}
	src, err := s3src.New(u, o, env)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// harness syncs one source into a real store, as the daemon does.
type harness struct {
	store *sync.Store
	root  string
	src   fetch.Source
}

func newHarness(t testing.TB, src fetch.Source, limits fetch.Limits) *harness {
	t.Helper()
	root := t.TempDir()
	store, err := sync.OpenStore(root, limits)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{store: store, root: root, src: src}
}

// sync fetches once and publishes a new revision; it returns the revision
// now published and what the stage saw.
func (h *harness) sync(t testing.TB) (string, sync.Stats, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	prev, err := h.store.Current("c")
	if err != nil {
		t.Fatal(err)
	}
	st := h.store.Begin("c", prev)
	defer st.Discard()
	rev, err := h.src.Fetch(ctx, prev, st)
	if err != nil {
		return prev, st.Stats(), err
	}
	if rev == prev {
		if st.Dir() != "" {
			t.Fatal("source wrote to staging although nothing changed")
		}
		return rev, st.Stats(), nil
	}
	if err := st.Publish(rev); err != nil {
		t.Fatalf("publish: %v", err)
	}
	return rev, st.Stats(), nil
}

func (h *harness) mustSync(t testing.TB) (string, sync.Stats) {
	t.Helper()
	rev, stats, err := h.sync(t)
	if err != nil {
		t.Fatal(err)
	}
	return rev, stats
}

// tree reads the published tree.
func (h *harness) tree(t testing.TB) map[string]string {
	t.Helper()
	return sourcetest.ReadTree(t, h.store.LinkPath("c"))
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
	return newSource(t, o.srv.url(o.bucket, originPrefix), stateDir, nil)
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
			// versitygw stores keys as file paths and normalises them
			// ("conf/../evil" becomes "evil"): only gofakes3 can hold a
			// hostile key.
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

func TestPrefixOverThousandKeysIsPaginatedAndComplete(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		bucket := s.newBucket(t, false)
		files := nestedTree(1234)
		putTree(t, s, bucket, "conf/", files)
		s.put(t, bucket, "other/outside.yaml", "not in the prefix")
		s.put(t, bucket, "conf/d00/", "") // a directory marker
		h := newHarness(t, newSource(t, s.url(bucket, "conf/"), "", nil), fetch.Limits{})
		s.counts.take()
		h.mustSync(t)
		sourcetest.AssertTree(t, h.tree(t), files)
		assertCounts(t, s.counts.take(), map[string]int{"LIST": 2, "GET": 1234})

		// An idle poll: one List page per 1,000 keys, no GET.
		h.mustSync(t)
		assertCounts(t, s.counts.take(), map[string]int{"LIST": 2})
	})
}

func TestUnchangedPrefixCostsOneListAndNoGet(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		bucket := s.newBucket(t, false)
		putTree(t, s, bucket, "conf/", nestedTree(20))
		h := newHarness(t, newSource(t, s.url(bucket, "conf/"), "", nil), fetch.Limits{})
		rev1, _ := h.mustSync(t)
		s.counts.take()
		rev2, stats := h.mustSync(t)
		if rev2 != rev1 {
			t.Fatalf("revision changed without a change: %s -> %s", rev1, rev2)
		}
		if stats.BytesWritten != 0 {
			t.Fatalf("%d bytes written", stats.BytesWritten)
		}
		assertCounts(t, s.counts.take(), map[string]int{"LIST": 1})
	})
}

func TestOnlyChangedObjectsAreDownloaded(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		bucket := s.newBucket(t, false)
		files := nestedTree(30)
		putTree(t, s, bucket, "conf/", files)
		h := newHarness(t, newSource(t, s.url(bucket, "conf/"), "", nil), fetch.Limits{})
		rev1, _ := h.mustSync(t)

		files["d01/f0001.yaml"] = "changed: true\n"
		files["new.yaml"] = "new\n"
		s.put(t, bucket, "conf/d01/f0001.yaml", files["d01/f0001.yaml"])
		s.put(t, bucket, "conf/new.yaml", files["new.yaml"])
		s.counts.take()
		rev2, stats := h.mustSync(t)
		if rev2 == rev1 {
			t.Fatal("revision did not change")
		}
		assertCounts(t, s.counts.take(), map[string]int{"LIST": 1, "GET": 2})
		if stats.Reused != 29 || stats.BytesWritten != int64(len("changed: true\n")+len("new\n")) {
			t.Fatalf("stats %+v: want 29 reused and only the two changed objects written", stats)
		}
		sourcetest.AssertTree(t, h.tree(t), files)
	})
}

func TestDeletedObjectIsRemovedFromNextRevision(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		bucket := s.newBucket(t, false)
		files := nestedTree(6)
		putTree(t, s, bucket, "conf/", files)
		h := newHarness(t, newSource(t, s.url(bucket, "conf/"), "", nil), fetch.Limits{})
		h.mustSync(t)
		s.del(t, bucket, "conf/d01/f0001.yaml")
		delete(files, "d01/f0001.yaml")
		s.counts.take()
		h.mustSync(t)
		sourcetest.AssertTree(t, h.tree(t), files)
		assertCounts(t, s.counts.take(), map[string]int{"LIST": 1})
	})
}

func TestSingleObjectIsPublishedUnderItsBaseNameAndPolledWithConditionalGet(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		bucket := s.newBucket(t, false)
		s.put(t, bucket, "env/prod/app.yaml", "v: 1\n")
		s.put(t, bucket, "env/prod/app.yaml.bak", "not this one\n")
		state := t.TempDir()
		h := newHarness(t, newSource(t, s.url(bucket, "env/prod/app.yaml"), state, nil), fetch.Limits{})
		s.counts.take()
		rev1, _ := h.mustSync(t)
		sourcetest.AssertTree(t, h.tree(t), map[string]string{"app.yaml": "v: 1\n"})
		assertCounts(t, s.counts.take(), map[string]int{"GET": 1})

		// Unchanged: one GET answered 304, nothing written.
		rev, stats := h.mustSync(t)
		if rev != rev1 || stats.BytesWritten != 0 {
			t.Fatalf("unchanged object: rev %s (want %s), %d bytes written", rev, rev1, stats.BytesWritten)
		}
		assertCounts(t, s.counts.take(), map[string]int{"GET-304": 1})

		// A new process (same state directory) still polls conditionally.
		h.src = newSource(t, s.url(bucket, "env/prod/app.yaml"), state, nil)
		if rev, _ := h.mustSync(t); rev != rev1 {
			t.Fatalf("revision after restart %s, want %s", rev, rev1)
		}
		assertCounts(t, s.counts.take(), map[string]int{"GET-304": 1})

		s.put(t, bucket, "env/prod/app.yaml", "v: 2\n")
		if rev, _ := h.mustSync(t); rev == rev1 {
			t.Fatal("revision did not change with the object")
		}
		sourcetest.AssertTree(t, h.tree(t), map[string]string{"app.yaml": "v: 2\n"})
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
		front := notModifiedFront(t, s)
		t.Run("FirstSyncOfObject", func(t *testing.T) {
			h := newHarness(t, newSource(t, front+"/"+bucket+"/conf/app.yaml", t.TempDir(), nil), fetch.Limits{})
			_, _, err := h.sync(t)
			assertErr(t, err, false, want, "s3://"+bucket+"/conf/app.yaml")
			if cur, _ := h.store.Current("c"); cur != "" {
				t.Fatalf("revision %q published from a 304", cur)
			}
		})
		t.Run("ObjectWithoutSavedETag", func(t *testing.T) {
			// Published, then a new process without the saved ETag: its
			// GET is unconditional again.
			h := newHarness(t, newSource(t, s.url(bucket, "conf/app.yaml"), t.TempDir(), nil), fetch.Limits{})
			rev, _ := h.mustSync(t)
			h.src = newSource(t, front+"/"+bucket+"/conf/app.yaml", t.TempDir(), nil)
			_, _, err := h.sync(t)
			assertErr(t, err, false, want)
			if cur, _ := h.store.Current("c"); cur != rev {
				t.Fatalf("current revision %q, want the last good %q", cur, rev)
			}
		})
		t.Run("ObjectOfPrefix", func(t *testing.T) {
			h := newHarness(t, newSource(t, front+"/"+bucket+"/conf/", "", nil), fetch.Limits{})
			_, _, err := h.sync(t)
			assertErr(t, err, false, want, "s3://"+bucket+"/conf/app.yaml")
			if cur, _ := h.store.Current("c"); cur != "" {
				t.Fatalf("revision %q published from a 304", cur)
			}
		})
	})
}

func TestStateDirectoryIsPrivateAndNeverNarrowsTheTree(t *testing.T) {
	s := newGofakes3(t)
	bucket := s.newBucket(t, false)
	s.put(t, bucket, "conf/app.yaml", "v: 1\n")
	h := newHarness(t, nil, fetch.Limits{}) // a fresh root: ROOT/.ferry/c does not exist
	state := sync.StateDir(h.root, "c")
	h.src = newSource(t, s.url(bucket, "conf/app.yaml"), state, nil)
	old := syscall.Umask(0o077) // the strictest a sidecar may run with
	defer syscall.Umask(old)
	h.mustSync(t)
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
		h := newHarness(t, newSource(t, s.url(bucket, "conf"), "", nil), fetch.Limits{})
		_, _, err := h.sync(t)
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
		h := newHarness(t, newSource(t, s.url(bucket, "app.yaml?version="+v1), "", nil), fetch.Limits{})
		rev1, _ := h.mustSync(t)
		sourcetest.AssertTree(t, h.tree(t), map[string]string{"app.yaml": "version: 1\n"})

		s.put(t, bucket, "app.yaml", "version: 3\n")
		s.counts.take()
		if rev, _ := h.mustSync(t); rev != rev1 {
			t.Fatalf("pinned version changed revision: %s -> %s", rev1, rev)
		}
		sourcetest.AssertTree(t, h.tree(t), map[string]string{"app.yaml": "version: 1\n"})
		assertCounts(t, s.counts.take(), map[string]int{"GET-304": 1})
	})
}

func TestKeysThatWouldEscapeAreRefusedByName(t *testing.T) {
	// versitygw normalises keys as file paths ("conf/../evil" is stored as
	// "evil", "conf//x" as "conf/x"): only gofakes3 keeps them verbatim.
	s := newGofakes3(t)
	for _, key := range []string{"conf/../evil", "conf/a/../../evil", "conf//etc/passwd", "conf/./a"} {
		t.Run(key, func(t *testing.T) {
			bucket := s.newBucket(t, false)
			s.put(t, bucket, "conf/ok.yaml", "ok")
			s.put(t, bucket, key, "evil")
			if got := s.keys(t, bucket, "conf/"); len(got) != 2 {
				t.Fatalf("server holds %v, want the hostile key stored verbatim", got)
			}
			h := newHarness(t, newSource(t, s.url(bucket, "conf/"), "", nil), fetch.Limits{})
			_, _, err := h.sync(t)
			assertErr(t, err, true, fmt.Sprintf("key %q", key))
			if _, err := os.Lstat(filepath.Join(h.root, "evil")); err == nil {
				t.Fatal("a file landed outside the revision")
			}
		})
	}
}

func TestKeyEndingInSlashWithContentIsRefused(t *testing.T) {
	s := newGofakes3(t) // versitygw refuses such a PUT (DirectoryObjectContainsData)
	bucket := s.newBucket(t, false)
	s.put(t, bucket, "conf/a.yaml", "a")
	s.put(t, bucket, "conf/dir/", "not a marker")
	h := newHarness(t, newSource(t, s.url(bucket, "conf/"), "", nil), fetch.Limits{})
	_, _, err := h.sync(t)
	assertErr(t, err, true, `key "conf/dir/"`)
}

func TestMissingBucketIsPermanent(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		h := newHarness(t, newSource(t, s.url("no-such-bucket-here", "conf/"), "", nil), fetch.Limits{})
		_, _, err := h.sync(t)
		assertErr(t, err, true, "NoSuchBucket", "s3://no-such-bucket-here/conf/")
	})
}

func TestEmptyPrefixIsAnErrorUnlessAllowed(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		bucket := s.newBucket(t, false)
		s.put(t, bucket, "other/a.yaml", "a")
		s.put(t, bucket, "conf/", "") // only a directory marker
		h := newHarness(t, newSource(t, s.url(bucket, "conf/"), "", nil), fetch.Limits{})
		_, _, err := h.sync(t)
		assertErr(t, err, true, "no objects under the prefix", "--allow-empty")

		h.src = newSource(t, s.url(bucket, "conf/"), "", func(o *s3src.Options) { o.AllowEmpty = true })
		rev, _ := h.mustSync(t)
		if rev == "" {
			t.Fatal("no revision")
		}
		sourcetest.AssertTree(t, h.tree(t), map[string]string{})
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
			src := newSource(t, s.url(bucket, "conf/"), "", func(o *s3src.Options) {
				if tc.access == "" {
					*o = s3src.Options{Anonymous: true}
					return
				}
				o.AccessKeyFile, o.SecretKeyFile = keyFiles(t, tc.access, tc.secret)
			})
			_, _, err := newHarness(t, src, fetch.Limits{}).sync(t)
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
		h := newHarness(t, newSource(t, s.url(bucket, "conf/"), "", func(o *s3src.Options) {
			o.AccessKeyFile, o.SecretKeyFile = a, sec
		}), fetch.Limits{})
		_, _, err := h.sync(t)
		assertErr(t, err, true, "SignatureDoesNotMatch")

		// The Secret is fixed under the same access key ID: this is what
		// the SDK's signing-key cache got wrong (aws/aws-sdk-go-v2#3350).
		writeFile(t, sec, testSecret+"\n")
		rev, _ := h.mustSync(t)
		sourcetest.AssertTree(t, h.tree(t), map[string]string{"a.yaml": "a"})

		writeFile(t, sec, "rotated-away\n") // and broken again
		_, _, err = h.sync(t)
		assertErr(t, err, true, "SignatureDoesNotMatch")
		if cur, _ := h.store.Current("c"); cur != rev {
			t.Fatalf("current revision %s after a failed sync, want the last good %s", cur, rev)
		}
	})
	t.Run("gofakes3", func(t *testing.T) {
		// gofakes3 accepts any key: what it receives shows the file was read.
		s := newGofakes3(t)
		bucket := s.newBucket(t, false)
		s.put(t, bucket, "conf/a.yaml", "a")
		a, sec := keyFiles(t, "firstkeyid", "secret1")
		h := newHarness(t, newSource(t, s.url(bucket, "conf/"), "", func(o *s3src.Options) {
			o.AccessKeyFile, o.SecretKeyFile = a, sec
		}), fetch.Limits{})
		h.mustSync(t)
		if got := s.counts.keyID(); got != "firstkeyid" {
			t.Fatalf("server saw key %q, want firstkeyid", got)
		}
		writeFile(t, a, "secondkeyid")
		h.mustSync(t)
		if got := s.counts.keyID(); got != "secondkeyid" {
			t.Fatalf("server saw key %q after rotation, want secondkeyid", got)
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
	h := newHarness(t, newSource(t, "http://"+addr+"/bucket/conf/", "", nil), fetch.Limits{})
	_, _, err = h.sync(t)
	assertErr(t, err, false, "cannot reach the S3 endpoint http://"+addr, "connection refused")
}

func TestObjectReplacedDuringSyncFailsTransiently(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		bucket := s.newBucket(t, false)
		s.put(t, bucket, "conf/a.yaml", "old")
		h := newHarness(t, nil, fetch.Limits{})
		src := newSource(t, s.url(bucket, "conf/"), "", nil)
		// Replace the object after the listing, before its GET.
		h.src = fetchFunc(func(ctx context.Context, prev string, w fetch.Writer) (string, error) {
			return src.Fetch(ctx, prev, &hookWriter{Writer: w, before: func() {
				s.put(t, bucket, "conf/a.yaml", "new!")
			}})
		})
		_, _, err := h.sync(t)
		assertErr(t, err, false, "changed during the sync")
		// The next sync lists again and gets the new content.
		h.src = src
		h.mustSync(t)
		sourcetest.AssertTree(t, h.tree(t), map[string]string{"a.yaml": "new!"})
	})
}

func TestDownloadsRunInParallelUpToConcurrency(t *testing.T) {
	s := newGofakes3(t)
	s.counts.getDelay = 50 * time.Millisecond // long enough for GETs to overlap
	bucket := s.newBucket(t, false)
	putTree(t, s, bucket, "conf/", nestedTree(24))
	h := newHarness(t, newSource(t, s.url(bucket, "conf/"), "", func(o *s3src.Options) { o.Concurrency = 3 }), fetch.Limits{})
	h.mustSync(t)
	if p := s.counts.peakGets(); p != 3 {
		t.Fatalf("peak concurrent GETs = %d, want 3", p)
	}
}

func TestTreeLimitsFailTheSync(t *testing.T) {
	s := newGofakes3(t)
	bucket := s.newBucket(t, false)
	s.put(t, bucket, "conf/small.yaml", "x")
	s.put(t, bucket, "conf/big.yaml", strings.Repeat("x", 4096))
	h := newHarness(t, newSource(t, s.url(bucket, "conf/"), "", nil), fetch.Limits{MaxFileSize: 1024})
	_, _, err := h.sync(t)
	assertErr(t, err, true, "big.yaml", "(max-file-size)")
	h = newHarness(t, h.src, fetch.Limits{MaxFiles: 1})
	_, _, err = h.sync(t)
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

type fetchFunc func(ctx context.Context, prev string, w fetch.Writer) (string, error)

func (f fetchFunc) Fetch(ctx context.Context, prev string, w fetch.Writer) (string, error) {
	return f(ctx, prev, w)
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
