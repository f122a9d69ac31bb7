package s3_test

import (
	"testing"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/sourcetest"
)

// TestChangingThePrefixRepublishesTheSameObjects: a prefix's revision is
// a digest of the (key, ETag, size) listing only (list.go revision), while
// the published names are the keys minus the prefix. Two URLs that list
// the same keys under different prefixes (s3://b/conf/ and s3://b/conf//sub
// when conf/ holds only sub/; or s3://b/ and s3://b/conf/) give the same
// revision for different trees. After the user edits the URL (a restart,
// the published revision is prev), Fetch answers "unchanged" and the old
// layout stays published for good: the app keeps reading sub/app.yaml
// instead of app.yaml, or finds nothing where the new URL says it is.
// The HTTP and OCI sources put their layout (//subdir, ?archive=, ?layer=)
// into the revision for exactly this reason
// (TestChangingLayoutRepublishesTheSameBody).
func TestChangingThePrefixRepublishesTheSameObjects(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		bucket := s.newBucket(t, false)
		s.put(t, bucket, "conf/sub/app.yaml", "v: 1\n")
		store := newStore(t, fetch.Limits{})

		before := newSource(t, s.url(bucket, "conf/"), fetch.Env{}, nil)
		r1 := sourcetest.MustSync(t, store, "c", before)
		assertPublished(t, store, map[string]string{"sub/app.yaml": "v: 1\n"})

		// The same source, its URL narrowed to the sub-directory.
		after := newSource(t, s.url(bucket, "conf//sub"), fetch.Env{}, nil)
		r2 := sourcetest.MustSync(t, store, "c", after)
		if r2.Rev == r1.Rev {
			t.Errorf("revision unchanged (%s) although the URL now publishes another tree", r2.Rev)
		}
		assertPublished(t, store, map[string]string{"app.yaml": "v: 1\n"})
	})
}
