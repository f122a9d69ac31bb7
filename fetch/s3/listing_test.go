package s3_test

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferrysync/ferry/fetch"
)

// listingFront is a minimal S3 endpoint that speaks ListObjectsV2 XML, for
// listings no real server produces: pages that never end, one page far
// past max-keys, a truncated page without a token. Each page is streamed,
// so the front itself stays small whatever it sends. Object GETs are
// answered 404: the listing is what is under test.
type listingFront struct {
	srv *httptest.Server

	pageKeys int  // keys a page
	pages    int  // pages before the listing ends; 0: never
	markers  bool // every key is a directory marker ("conf/pN/kN/")
	noToken  bool // truncated pages carry no NextContinuationToken
	// failWith, when set, answers every listing with this status and a
	// body that never ends.
	failWith int

	lists atomic.Int64
	gets  atomic.Int64
}

func newListingFront(t testing.TB, f *listingFront) *listingFront {
	t.Helper()
	f.srv = httptest.NewServer(f)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *listingFront) url() string { return f.srv.URL + "/bucket/conf/" }

func (f *listingFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !q.Has("list-type") {
		f.gets.Add(1)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>no</Message></Error>`)
		return
	}
	f.lists.Add(1)
	if f.failWith != 0 {
		w.WriteHeader(f.failWith)
		junk := []byte(strings.Repeat("<Error>", 1<<10))
		for r.Context().Err() == nil {
			if _, err := w.Write(junk); err != nil {
				return
			}
		}
		return
	}
	page, _ := strconv.Atoi(q.Get("continuation-token")) // "" is page 0
	truncated := f.pages == 0 || page+1 < f.pages
	w.Header().Set("Content-Type", "application/xml")
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	fmt.Fprintf(bw, `<?xml version="1.0" encoding="UTF-8"?>`+
		`<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">`+
		`<Name>bucket</Name><Prefix>conf/</Prefix><KeyCount>%d</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>%t</IsTruncated>`,
		f.pageKeys, truncated)
	if truncated && !f.noToken {
		fmt.Fprintf(bw, `<NextContinuationToken>%d</NextContinuationToken>`, page+1)
	}
	for i := range f.pageKeys {
		key, size := fmt.Sprintf("conf/p%06d/k%06d.yaml", page, i), 1
		if f.markers {
			key, size = fmt.Sprintf("conf/p%06d/k%06d/", page, i), 0
		}
		fmt.Fprintf(bw, `<Contents><Key>%s</Key><LastModified>2026-11-25T00:00:00.000Z</LastModified>`+
			`<ETag>&quot;0cc175b9c0f1b6a831c399e269772661&quot;</ETag><Size>%d</Size><StorageClass>STANDARD</StorageClass></Contents>`, key, size)
	}
	fmt.Fprint(bw, `</ListBucketResult>`)
}

func TestEndlessListingStopsAtMaxFiles(t *testing.T) {
	for _, tc := range []struct {
		name    string
		markers bool
		want    string
	}{
		{"Objects", false, "more than 2500 objects under the prefix (max-files)"},
		{"DirectoryMarkers", true, "more than 2500 directory markers under the prefix (max-files)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// pages bounds what today's code would list before it stops on
			// its own: the test fails, rather than hangs, without the fix.
			f := newListingFront(t, &listingFront{pageKeys: 1000, pages: 200, markers: tc.markers})
			limits := fetch.Limits{MaxFiles: 2500}
			_, _, err := fetchNew(t, newSource(t, f.url(), fetch.Env{Limits: limits}, nil), limits)
			assertErr(t, err, true, tc.want, "s3://bucket/conf/")
			if n := f.lists.Load(); n != 3 {
				t.Fatalf("%d pages listed, want 3: listing must stop on the page that passes MaxFiles", n)
			}
			if n := f.gets.Load(); n != 0 {
				t.Fatalf("%d objects fetched before the listing was refused", n)
			}
		})
	}
}

func TestEmptyPagesWithoutEndAreRefused(t *testing.T) {
	f := newListingFront(t, &listingFront{pageKeys: 0, pages: 5000})
	limits := fetch.Limits{MaxFiles: 2500}
	_, _, err := fetchNew(t, newSource(t, f.url(), fetch.Env{Limits: limits}, nil), limits)
	assertErr(t, err, true, "did not end after 1000 pages", "the bound for 2500 files (max-files)")
	if n := f.lists.Load(); n != 1000 {
		t.Fatalf("%d pages listed, want 1000", n)
	}
}

func TestListingPagePastMaxKeysIsRefused(t *testing.T) {
	// 100,000 keys in one page, about 16 MB of XML: a server ignoring
	// max-keys. Without a cap the SDK decodes all of it into memory.
	f := newListingFront(t, &listingFront{pageKeys: 100_000, pages: 1})
	_, _, err := fetchNew(t, newSource(t, f.url(), fetch.Env{}, nil), fetch.Limits{})
	assertErr(t, err, true, "a page of the listing is larger than 8388608 bytes", "the server ignores max-keys")
	if n := f.lists.Load(); n != 1 {
		t.Fatalf("%d list requests, want 1 (no retry)", n)
	}
	if n := f.gets.Load(); n != 0 {
		t.Fatalf("%d objects fetched", n)
	}
}

func TestTruncatedPageWithoutTokenIsNotAPartialTree(t *testing.T) {
	f := newListingFront(t, &listingFront{pageKeys: 10, pages: 2, noToken: true})
	_, _, err := fetchNew(t, newSource(t, f.url(), fetch.Env{}, nil), fetch.Limits{})
	assertErr(t, err, true, "page 1 of the listing is truncated but has no continuation token")
	if n := f.gets.Load(); n != 0 {
		t.Fatalf("%d objects of a partial listing fetched", n)
	}
}

func TestEndlessErrorBodyIsCutAndStatusReported(t *testing.T) {
	// The SDK reads an error body whole to find the S3 error code.
	f := newListingFront(t, &listingFront{failWith: http.StatusInternalServerError})
	_, _, err := fetchNew(t, newSource(t, f.url(), fetch.Env{}, nil), fetch.Limits{})
	// The error names the custom endpoint that answered.
	assertErr(t, err, false, "s3 list s3://bucket/conf/ at "+f.srv.URL+": server error (HTTP 500")
}
