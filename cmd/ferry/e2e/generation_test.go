package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testkit"
)

// notifications is an app's reload endpoint that keeps each body whole.
type notifications struct {
	mu     gosync.Mutex
	bodies []notification
	srv    *httptest.Server
}

// notification is a notify body: every change under "changes", and for a
// single change its fields at the top level too.
type notification struct {
	Source   string `json:"source"`
	Revision string `json:"revision"`
	Changes  []struct {
		Source, Revision, Path string
	} `json:"changes"`
}

func newNotifications(t *testing.T) *notifications {
	n := &notifications{}
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body notification
		if err := json.Unmarshal(b, &body); err != nil {
			t.Errorf("notify body %q: %v", b, err)
		}
		n.mu.Lock()
		n.bodies = append(n.bodies, body)
		n.mu.Unlock()
	}))
	t.Cleanup(n.srv.Close)
	return n
}

func (n *notifications) got() []notification {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.bodies)
}

// TestSourcesChangedTogetherAreOneNotificationAndOneGeneration: a git
// repository, an S3 prefix and a tarball over HTTP change together, 50
// times: the app is told once each time, of all three, and a reader that
// resolves the generation link once per read never sees two sources at
// different revisions, over more than 10,000 reads.
func TestSourcesChangedTogetherAreOneNotificationAndOneGeneration(t *testing.T) {
	t.Parallel()
	origins := map[string]origin{"git": newGitOrigin(t), "s3": newS3Origin(t), "tar": newTarOrigin(t)}
	names := []string{"git", "s3", "tar"}
	app := newNotifications(t)
	args := []string{"--period", "1h", "--generation-link", "all", "--keep", "2", "--notify-url", app.srv.URL}
	for _, name := range names {
		origins[name].set(t, 0, nil)
		args = append(args, origins[name].source(name)...)
	}
	root := t.TempDir()
	p := startFerry(t, procOptions{root: root, args: args})
	link := filepath.Join(root, "all")
	testkit.Eventually(t, 30*time.Second, "the first generation", func() bool { return readAll(root, link, names) == "0 0 0" })

	var reads, mixes atomic.Int64
	var firstMix atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			got := readAll(root, link, names)
			if f := strings.Fields(got); len(f) != 3 || f[0] != f[1] || f[1] != f[2] {
				mixes.Add(1)
				firstMix.CompareAndSwap(nil, got)
			}
			reads.Add(1)
		}
	}()
	const rounds = 50
	for n := 1; n <= rounds; n++ {
		for _, name := range names {
			origins[name].set(t, n, nil)
		}
		if code := httpPost("http://" + p.addr + "/sync"); code != http.StatusAccepted {
			t.Fatalf("POST /sync: %d", code)
		}
		testkit.Eventually(t, 30*time.Second, fmt.Sprintf("round %d told", n), func() bool { return len(app.got()) >= n })
		for at := reads.Load(); reads.Load() < at+250; {
			time.Sleep(time.Millisecond)
		}
	}
	close(stop)
	<-done
	if m := mixes.Load(); m != 0 {
		t.Fatalf("%d of %d reads saw a mix of revisions, the first: %v", m, reads.Load(), firstMix.Load())
	}
	if reads.Load() < 10_000 {
		t.Fatalf("only %d reads", reads.Load())
	}
	time.Sleep(200 * time.Millisecond) // a late, split notification would show now
	bodies := app.got()
	if len(bodies) != rounds {
		t.Fatalf("%d notifications for %d rounds: %+v", len(bodies), rounds, bodies)
	}
	for i, b := range bodies {
		var told []string
		for _, c := range b.Changes {
			told = append(told, c.Source)
		}
		if b.Source != "" || !slices.Equal(told, names) {
			t.Fatalf("notification %d: %+v, want the three sources under changes alone", i, b)
		}
	}
	t.Logf("%d reads over %d rounds, no mix; publishes of a round spread over %v at most", reads.Load(), rounds, spread(p, len(names)))
}

// spread returns the longest time between the first and the last publish
// of a round of n sources, from ferry's logs: what --settle must cover.
func spread(p *ferryProc, n int) time.Duration {
	var times []time.Time
	for _, r := range p.logs() {
		if r.str("msg") == "published" {
			at, _ := time.Parse(time.RFC3339Nano, r.str("time"))
			times = append(times, at)
		}
	}
	var most time.Duration
	for i := 0; i+n <= len(times); i += n {
		most = max(most, times[i+n-1].Sub(times[i]))
	}
	return most
}

// readAll resolves the generation link once and reads every source's
// app.yaml through it: "N N N", one revision number per source.
func readAll(root, link string, names []string) string {
	target, err := os.Readlink(link)
	if err != nil {
		return "no link: " + err.Error()
	}
	gen := filepath.Join(root, target)
	var out []string
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(gen, name, "app.yaml"))
		if err != nil {
			return err.Error()
		}
		var n int
		fmt.Sscanf(string(b), "greeting: revision %d", &n)
		out = append(out, fmt.Sprint(n))
	}
	return strings.Join(out, " ")
}

// TestSIGKILLAnywhereLeavesAWholeGeneration: two sources change every few
// milliseconds while ferry, with a generation link, is killed at random
// moments, in rounds, generations and swaps. After every kill ROOT/all
// resolves to a generation whose every source is a whole revision; the
// next start cleans what the kill left; once the origins settle, a restart
// shows both at their newest.
func TestSIGKILLAnywhereLeavesAWholeGeneration(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0x9e4))
	names := []string{"a", "b"}
	origins := []*fileOrigin{newFileOrigin(t), newFileOrigin(t)}
	root := t.TempDir()
	link := filepath.Join(root, "all")
	gen := 1
	args := []string{"--period", "20ms", "--keep", "2", "--generation-link", "all"}
	for i, o := range origins {
		o.set(t, gen, nil)
		args = append(args, o.source(names[i])...)
	}
	var left []string
	for i := range chaosKills {
		p := startFerry(t, procOptions{root: root, args: args})
		checkCleaned(t, i, left)
		if i == 0 {
			testkit.Eventually(t, 30*time.Second, "the first generation", func() bool {
				_, err := os.Readlink(link)
				return err == nil
			})
		}
		keepChanging(rng, time.Duration(rng.IntN(250))*time.Millisecond, func() {
			gen++
			for _, o := range origins {
				o.set(t, gen, nil)
			}
		})
		p.kill()
		left = leftovers(root)
		for _, name := range names {
			if _, err := checkGeneration(filepath.Join(link, name)); err != nil {
				t.Fatalf("kill %d: %s through the generation link: %v\nferry's last lines:\n%s", i, name, err, tail(p.stderr.String(), 10))
			}
		}
	}
	gen++
	for _, o := range origins {
		o.set(t, gen, nil)
	}
	p := startFerry(t, procOptions{root: root, args: args})
	checkCleaned(t, chaosKills, left)
	want := fmt.Sprintf("%d %d", gen, gen)
	testkit.Eventually(t, 30*time.Second, "both sources at gen "+fmt.Sprint(gen)+" through the link", func() bool {
		a, errA := checkGeneration(filepath.Join(link, "a"))
		b, errB := checkGeneration(filepath.Join(link, "b"))
		return errA == nil && errB == nil && fmt.Sprintf("%d %d", a, b) == want
	})
	if code, _ := p.term(); code != 0 {
		t.Fatalf("SIGTERM: exit %d\n%s", code, tail(p.stderr.String(), 20))
	}
	if l := leftovers(root); len(l) > 0 {
		t.Fatalf("after converging and a clean stop: leftovers %v", l)
	}
	if gens, _ := os.ReadDir(filepath.Join(root, ".ferry", ".generations")); len(gens) > 4 {
		t.Errorf("%d generations kept with --keep 2", len(gens))
	}
}
