package sync

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/testkit"
)

// TestGenerationLinkIsWrittenByOnceAndMendedByTheNextRound: once exits
// with the generation in place; a generation link removed is written again
// by the next round, and one that points elsewhere is replaced.
func TestGenerationLinkIsWrittenByOnceAndMendedByTheNextRound(t *testing.T) {
	origins := threeOrigins(1)
	store, s := onceWithGenerationLink(t, origins)
	link := store.LinkPath("all")
	if got := readThrough(t, link); got != "1 1 1" {
		t.Fatalf("after once: %s", got)
	}
	if ok, why := s.Ready(); !ok {
		t.Fatalf("not ready after once: %s", why)
	}

	h := startSyncer(t, Config{Store: store, Sources: sourcesOf(origins), Period: time.Hour, GenerationLink: "all"})
	os.Remove(link)
	h.syncer.Trigger("")
	testkit.Eventually(t, 10*time.Second, "the link written again", func() bool { return readThrough(t, link) == "1 1 1" })
	os.Remove(link)
	os.Symlink(".ferry/a/r1", link) // not a generation
	h.syncer.Trigger("")
	testkit.Eventually(t, 10*time.Second, "the link replaced", func() bool { return readThrough(t, link) == "1 1 1" })
}

// TestGCKeepsWhatTheGenerationShows: with keep 1, a revision the
// generation link still shows is not removed before the generation that
// replaces it is written, and goes with the next GC after that.
func TestGCKeepsWhatTheGenerationShows(t *testing.T) {
	s := newStore(t, fetch.Limits{})
	if err := s.SetGenerationLink("all"); err != nil {
		t.Fatal(err)
	}
	publishFiles(t, s, "a", "r1", map[string]string{"n": "1"})
	if err := s.PublishGeneration(Generation{"a": "r1"}); err != nil {
		t.Fatal(err)
	}
	publishFiles(t, s, "a", "r2", map[string]string{"n": "2"})
	if err := s.GC("a", 1); err != nil {
		t.Fatal(err)
	}
	if !s.treeThere("a", "r1") {
		t.Fatal("GC removed r1, which the generation link shows")
	}
	if err := s.PublishGeneration(Generation{"a": "r2"}); err != nil {
		t.Fatal(err)
	}
	publishFiles(t, s, "a", "r3", map[string]string{"n": "3"})
	if err := s.PublishGeneration(Generation{"a": "r3"}); err != nil {
		t.Fatal(err)
	}
	if err := s.GC("a", 1); err != nil {
		t.Fatal(err)
	}
	if s.treeThere("a", "r1") || s.treeThere("a", "r2") {
		t.Fatal("GC kept revisions no generation shows")
	}
	// The generation of r1 went once r1 did; only the current one is left
	// after the next generation's GC.
	if err := s.PublishGeneration(Generation{"a": "r3"}); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(s.Root(), ".ferry/.generations"))
	if len(entries) != 1 {
		t.Fatalf("generations left: %v", entries)
	}
}

// TestNewRefusesWhatAGenerationLinkCannotShow: a source with the link's
// name, or published in exchange mode, is refused at start.
func TestNewRefusesWhatAGenerationLinkCannotShow(t *testing.T) {
	for _, tc := range []struct {
		src  Source
		want string
	}{
		{Source{Name: "all", Backend: &origin{}}, "the name is the generation link's"},
		{Source{Name: ".generations", Backend: &origin{}}, "invalid source name"},
		{Source{Name: "x", Backend: &origin{}, PublishMode: PublishExchange}, "publish mode exchange"},
	} {
		_, err := New(Config{Store: newStore(t, fetch.Limits{}), Sources: []Source{tc.src}, GenerationLink: "all"})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("source %+v: error %v, want %q", tc.src, err, tc.want)
		}
	}
}

// TestPrepareRemovesAGenerationLinkNoLongerConfigured: a restart without
// --generation-link removes the link and its generations, and nothing of
// the sources.
func TestPrepareRemovesAGenerationLinkNoLongerConfigured(t *testing.T) {
	origins := threeOrigins(1)
	store, _ := onceWithGenerationLink(t, origins)
	if _, err := New(Config{Store: store, Sources: sourcesOf(origins)}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(store.LinkPath("all")); !os.IsNotExist(err) {
		t.Errorf("generation link left: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(store.Root(), ".ferry/.generations")); !os.IsNotExist(err) {
		t.Errorf("generations left: %v", err)
	}
	for _, name := range []string{"a", "b", "c"} {
		if rev, _ := store.Current(name); rev != "r1" {
			t.Errorf("source %s at %q after the restart", name, rev)
		}
	}
}

// onceWithGenerationLink runs Once of sources a, b and c of origins on a
// new store, with the generation link "all".
func onceWithGenerationLink(t *testing.T, origins map[string]*origin) (*Store, *Syncer) {
	t.Helper()
	store := newStore(t, fetch.Limits{})
	s, err := New(Config{Store: store, Sources: sourcesOf(origins), GenerationLink: "all"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	return store, s
}

// readThrough resolves a generation link once and reads each source's
// file n through it.
func readThrough(t *testing.T, link string) string {
	t.Helper()
	target, err := os.Readlink(link)
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, src := range []string{"a", "b", "c"} {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(link), target, src, "n"))
		if err != nil {
			return err.Error()
		}
		out = append(out, string(b))
	}
	return strings.Join(out, " ")
}

func revisionOf(s *Syncer, name string) string {
	for _, st := range s.Status() {
		if st.Name == name {
			return st.Revision
		}
	}
	return ""
}

// TestRoundTellsEachSourceOnceOfItsNewest: a source that publishes twice
// while another source of its round is still syncing is named once, with
// its newest revision and what the app had before the round.
func TestRoundTellsEachSourceOnceOfItsNewest(t *testing.T) {
	origins := threeOrigins(1)
	rec := &recorder{}
	h := startSyncer(t, Config{Sources: sourcesOf(origins), Period: time.Hour, Settle: time.Hour, Notifiers: []Notifier{rec}})
	testkit.Eventually(t, 10*time.Second, "first publish", func() bool { ok, _ := h.syncer.Ready(); return ok })
	release := origins["c"].hold()
	setAll(origins, 2)
	h.syncer.Trigger("")
	testkit.Eventually(t, 10*time.Second, "a and b at r2", func() bool {
		return revisionOf(h.syncer, "a") == "r2" && revisionOf(h.syncer, "b") == "r2"
	})
	origins["a"].set("r3", map[string]string{"n": "3"})
	h.syncer.Trigger("a")
	testkit.Eventually(t, 10*time.Second, "a at r3", func() bool { return revisionOf(h.syncer, "a") == "r3" })
	release()
	testkit.Eventually(t, 10*time.Second, "the round told", func() bool { return len(rec.got()) >= 3 })
	time.Sleep(100 * time.Millisecond) // a second notification would show now
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.calls) != 1 || sourcesOfCall(rec.calls[0]) != "a@r3 b@r2 c@r2" {
		t.Fatalf("notifications: %v, want one of a@r3, b@r2 and c@r2", rec.calls)
	}
	for _, c := range rec.calls[0] {
		if c.Previous != "r1" {
			t.Fatalf("%s told as replacing %q, want r1, what the app had", c.Source, c.Previous)
		}
	}
}

// TestGenerationLinkNeverReplacesWhatFerryDidNotMake: a file of the
// user's at ROOT/LINK stays; ferry is not ready and says why.
func TestGenerationLinkNeverReplacesWhatFerryDidNotMake(t *testing.T) {
	store := newStore(t, fetch.Limits{})
	if err := os.WriteFile(store.LinkPath("all"), []byte("the user's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := &origin{}
	o.set("r1", map[string]string{"f": "1"})
	h := startSyncer(t, Config{Store: store, Sources: []Source{{Name: "a", Backend: o}}, Period: time.Hour, GenerationLink: "all"})
	testkit.Eventually(t, 10*time.Second, "a published", func() bool { return revisionOf(h.syncer, "a") == "r1" })
	time.Sleep(200 * time.Millisecond) // the round's end
	if b, err := os.ReadFile(store.LinkPath("all")); err != nil || string(b) != "the user's\n" {
		t.Fatalf("ROOT/all, the user's file, now %q (%v)", b, err)
	}
	if ok, why := h.syncer.Ready(); ok || !strings.Contains(why, "generation link") {
		t.Fatalf("Ready() = %v, %q; want not ready for the generation link", ok, why)
	}
}

// TestReadyOnlyWhenTheGenerationShowsEverySource: after a restart with a
// source added, a generation of the earlier sources on disk does not make
// ferry ready: the app would find ROOT/LINK/c missing.
func TestReadyOnlyWhenTheGenerationShowsEverySource(t *testing.T) {
	store := newStore(t, fetch.Limits{})
	oa, ob, oc := &origin{}, &origin{}, &origin{}
	oa.set("a1", map[string]string{"f": "a"})
	ob.set("b1", map[string]string{"f": "b"})
	oc.set("c1", map[string]string{"f": "c"})
	s1, err := New(Config{Store: store, Sources: []Source{{Name: "a", Backend: oa}, {Name: "b", Backend: ob}}, Period: time.Hour, GenerationLink: "all"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s1.Run(ctx) }()
	testkit.Eventually(t, 10*time.Second, "first generation", func() bool {
		ok, _ := s1.Ready()
		_, err := os.Stat(filepath.Join(store.LinkPath("all"), "b", "f"))
		return ok && err == nil
	})
	cancel()
	<-done

	// Restart with source c added; a is slow to answer its first poll.
	oa.mu.Lock()
	oa.delay = 2 * time.Second
	oa.mu.Unlock()
	s2, err := New(Config{Store: store, Sources: []Source{{Name: "a", Backend: oa}, {Name: "b", Backend: ob}, {Name: "c", Backend: oc}},
		Period: time.Hour, Settle: time.Hour, GenerationLink: "all"})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Background(t, s2.Run)
	testkit.Eventually(t, 10*time.Second, "ready", func() bool { ok, _ := s2.Ready(); return ok })
	if _, err := os.Stat(filepath.Join(store.LinkPath("all"), "c")); err != nil {
		t.Fatalf("ready, but the generation link does not show source c: %v", err)
	}
}

// TestGenerationIsReadableWhateverTheUmask: the tree is made 0755 whatever
// the umask (mkdir chmods), but the generation link's directories are
// made by a bare os.Mkdir (generation.go openGenerationsDir and
// writeGeneration): under umask 077, ROOT/.ferry/.generations and each
// generation are 0700, and an app running as another user cannot resolve
// ROOT/LINK at all.
func TestGenerationIsReadableWhateverTheUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	s := newStore(t, fetch.Limits{})
	if err := s.SetGenerationLink("all"); err != nil {
		t.Fatal(err)
	}
	publishFiles(t, s, "a", "r1", map[string]string{"n": "1"})
	g := Generation{"a": "r1"}
	if err := s.PublishGeneration(g); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{".ferry/.generations", ".ferry/.generations/" + g.name()} {
		fi, err := os.Stat(filepath.Join(s.Root(), p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o755 {
			t.Errorf("%s mode %v under umask 077: an app running as another user cannot resolve the generation link", p, fi.Mode().Perm())
		}
	}
}

// TestADamagedGenerationIsReplacedInOneStep: a generation that lost one
// of its links is written again under the same name, and a reader that
// keeps resolving the generation link meanwhile always finds it whole:
// the new one is exchanged with the damaged one, never put in after it
// is gone.
func TestADamagedGenerationIsReplacedInOneStep(t *testing.T) {
	store, _ := onceWithGenerationLink(t, threeOrigins(1))
	link := store.LinkPath("all")
	target, err := os.Readlink(link)
	if err != nil {
		t.Fatal(err)
	}
	gen := filepath.Join(store.Root(), target)
	g, err := store.readGeneration(filepath.Base(gen))
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	missing := make(chan string, 1)
	go func() {
		for {
			select {
			case <-stop:
				close(missing)
				return
			default:
			}
			if _, err := os.Stat(gen); err != nil {
				missing <- err.Error()
				close(missing)
				return
			}
		}
	}()
	for range 50 {
		os.Remove(filepath.Join(gen, "b"))
		if err := store.PublishGeneration(g); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	if why, ok := <-missing; ok {
		t.Errorf("the generation was missing while it was repaired: %s", why)
	}
	if got := readThrough(t, link); got != "1 1 1" {
		t.Errorf("after the repairs: %s", got)
	}
}
