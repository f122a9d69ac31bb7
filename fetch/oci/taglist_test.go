package oci

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/fetchtest"
)

// TestTagListingIsBoundedWhateverTheRegistrySends: with ?tag=semver:,
// every poll lists the repository's tags (go-containerregistry's
// Puller.List). That call has no bound of its own: it decodes each page
// with json.Decoder, which buffers the whole JSON value, and it follows the
// Link header to the next page for as long as the registry gives one,
// keeping every tag. A hostile or broken registry can therefore make ferry
// hold whatever it sends, until the sync's timeout (2 minutes by default):
// one endless page, or endless pages. The manifest, the error bodies and
// the token bodies are all capped by go-containerregistry (100 MiB, 64 KiB);
// the tag listing is not, and ferry adds no cap (nor a page bound derived
// from its limits, as the S3 listing does).
//
// The fake registry below stops after sendCap bytes so that the test ends;
// ferry should have given up long before, at a bound of its own.
func TestTagListingIsBoundedWhateverTheRegistrySends(t *testing.T) {
	const (
		sendCap  = 40 << 20 // what the registry sends at most, then it stops
		maxRead  = 16 << 20 // what ferry may be made to read (and hold) for one listing
		tagBytes = 1000
	)
	tag := strings.Repeat("9", tagBytes) // not a version: nothing ever matches

	for _, mode := range []string{"endless-page", "endless-pages"} {
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
				if mode == "endless-pages" {
					// A well-formed page of 100 tags, and always a next one.
					page := 0
					fmt.Sscan(r.URL.Query().Get("page"), &page)
					if sent.Load() < sendCap {
						w.Header().Set("Link", fmt.Sprintf(`</v2/conf/tags/list?page=%d>; rel="next"`, page+1))
					}
					var b strings.Builder
					b.WriteString(`{"name":"conf","tags":[`)
					for i := range 100 {
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
			if err == nil {
				t.Fatal("the listing was accepted")
			}
			if got := sent.Load(); got > maxRead {
				t.Fatalf("ferry read %d MiB of tag listing from the registry (it stopped only because the fake registry did, at %d MiB): "+
					"the listing must be bounded by ferry, not by what the registry sends", got>>20, sendCap>>20)
			}
		})
	}
}
