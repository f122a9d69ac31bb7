package e2e

// The status page at GET /, in a real browser: Debian's headless Chromium,
// driven by chromedp, against a running ferry and real origins.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/ferrysync/ferry/internal/testkit"
)

// pageScreenshotEnv names a file that TestStatusPageInChromium writes its
// screenshot to as well, besides the one in its temporary directory: how
// the README's picture, docs/status-page.png, is made.
const pageScreenshotEnv = "FERRY_TEST_PAGE_SCREENSHOT"

// pageSecret starts every secret TestStatusPageInChromium puts into a URL.
const pageSecret = "FERRYPAGESECRET"

// browser starts headless Chromium (Debian's chromium; under make test a
// missing one fails the test) with a fresh profile and one tab, and
// returns what each step of the test runs in: the tab's context, bounded.
func browser(t *testing.T, width, height int) (step func() (context.Context, context.CancelFunc)) {
	t.Helper()
	bin := testkit.Tool(t, "chromium", "chromium")
	var out testkit.LogBuffer
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
		// As root, in a container, on a machine without a GPU or a network
		// beyond loopback: without these it would try Google's hosts.
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.CombinedOutput(&out),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		if t.Failed() {
			t.Logf("chromium's output:\n%s", tail(out.String(), 30))
		}
	})
	// The first call starts the browser, and must have no deadline of its
	// own: the browser would end with it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v\n%s", bin, err, tail(out.String(), 30))
	}
	return func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 20*time.Second) }
}

// TestStatusPageInChromium opens GET / of a ferry syncing two sources, an
// HTTP tarball and a git repository, in headless Chromium: the page shows
// each source's revision; a new revision and then a failure of the HTTP
// origin appear on it without a reload (the page's script, fed by
// /v1/events); it follows the browser into dark mode; a screenshot is
// written. No secret of a source or notify URL shows on the page or in
// any /v1 response.
func TestStatusPageInChromium(t *testing.T) {
	t.Parallel()
	step := browser(t, 1000, 900)
	// The origins, each given a secret it receives.
	var broken atomic.Bool
	var sawQuery atomic.Bool
	web := newTarOrigin(t)
	web.set(t, 1, nil)
	web.setFront(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawQuery.Store(sawQuery.Load() || strings.Contains(r.URL.RawQuery, pageSecret))
		if broken.Load() {
			http.Error(w, "origin broken on purpose", http.StatusInternalServerError)
			return
		}
		web.serve(w, r)
	}))
	repo := newGitOrigin(t)
	repo.set(t, 1, nil)
	var notified atomic.Int64
	app := quietServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		notified.Add(1)
	}))
	t.Cleanup(app.Close)

	p := startFerry(t, procOptions{root: t.TempDir(), args: []string{
		// Syncs happen when the test asks (POST /sync), not by the clock.
		"--period", "1m",
		"--source", "web=" + web.url() + "?token=" + pageSecret + "-web",
		"--source", "repo=git::" + strings.Replace(repo.srv.URL, "http://", "http://"+pageSecret+"-git@", 1) + "/config.git?ref=main",
		"--notify-url", app.URL + "/-/reload?token=" + pageSecret + "-notify",
	}})
	testkit.Eventually(t, 30*time.Second, "both sources published", func() bool {
		st := p.status()
		return st["web"].Revision != "" && st["repo"].Revision != ""
	})
	st := p.status()

	sctx, cancel := step()
	defer cancel()
	page := "http://" + p.addr + "/"
	opened := time.Now()
	if err := chromedp.Do(sctx, chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS("#source-repo .revision"))); err != nil {
		t.Fatalf("open %s: %v", page, err)
	}
	for _, name := range []string{"web", "repo"} {
		got, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS("#source-"+name+" .revision")))
		if err != nil || got != st[name].Revision {
			t.Errorf("%s: the page shows revision %q (%v), want %q", name, got, err, st[name].Revision)
		}
	}
	// A mark only this load of the page carries: a reload would lose it.
	// The script has connected to /v1/events once it says live.
	if err := chromedp.Do(sctx,
		chromedp.Evaluate[chromedp.Void](`window.ferryTestMark = "this load"`),
		chromedp.Poll[chromedp.Void](`document.getElementById("live").textContent === "live"`, chromedp.WithPollingTimeout(10*time.Second)),
	); err != nil {
		t.Fatalf("the page's script did not go live: %v", err)
	}

	// A new revision, and the app told of it.
	web.set(t, 2, nil)
	httpPost("http://" + p.addr + "/sync?source=web")
	testkit.Eventually(t, 20*time.Second, "web's second revision published and notified", func() bool {
		return p.status()["web"].Revision != st["web"].Revision && notified.Load() > 0
	})
	rev2 := p.status()["web"].Revision
	waitOnPage(t, step, "web's new revision", fmt.Sprintf(`document.querySelector("#source-web .revision").textContent === %q`, rev2))

	// The origin fails: the page says so, with the error, unreloaded.
	broken.Store(true)
	httpPost("http://" + p.addr + "/sync?source=web")
	waitOnPage(t, step, "web failing, with its error", `document.querySelector("#source-web").classList.contains("s-failing") &&
		document.querySelector("#source-web .error").textContent.includes("500")`)
	if d := time.Since(opened); d >= 15*time.Second {
		t.Fatalf("the updates came %s after the page opened: the page's own 15 s refresh may have brought them, so this does not show that /v1/events did", d)
	}
	mark, err := chromedp.Run(sctx, chromedp.Evaluate[string](`window.ferryTestMark || "lost"`))
	if err != nil || mark != "this load" {
		t.Fatalf("the page was reloaded to show the update (mark %q, %v): it must update in place", mark, err)
	}
	// The app was told of the second revision before the failure, so the
	// refresh the failure caused shows it.
	waitOnPage(t, step, "the notify result", `document.querySelector("#source-web .r-ok") !== null`)

	shot, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "status-page.png")
	if err := os.WriteFile(file, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", file, len(shot))
	if dst := os.Getenv(pageScreenshotEnv); dst != "" {
		if err := os.WriteFile(dst, shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Dark mode follows the browser's preference.
	light, _ := chromedp.Run(sctx, chromedp.Evaluate[string](`getComputedStyle(document.body).backgroundColor`))
	if err := chromedp.Do(sctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}})
		return err
	})); err != nil {
		t.Fatal(err)
	}
	dark, _ := chromedp.Run(sctx, chromedp.Evaluate[string](`getComputedStyle(document.body).backgroundColor`))
	if light != "rgb(255, 255, 255)" || dark == light {
		t.Errorf("background %q in light mode and %q in dark mode", light, dark)
	}

	// No secret anywhere: the page as the browser holds it after its
	// updates, and every read endpoint.
	html, err := chromedp.Run(sctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{"the page in the browser": html}
	for _, path := range []string{"/", "/status", "/v1/sources", "/v1/sources/web", "/v1/sources/repo"} {
		seen[path] = p.get(path)
	}
	seen["/v1/events"] = eventsSoFar(t, "http://"+p.addr+"/v1/events")
	for what, body := range seen {
		if strings.Contains(body, pageSecret) {
			t.Errorf("a secret shows in %s:\n%s", what, around(body, pageSecret))
		}
	}
	if !strings.Contains(html, "token=REDACTED") || !strings.Contains(html, "REDACTED@") || !strings.Contains(seen["/v1/events"], "failing") {
		t.Errorf("the page shows no redacted URL, or /v1/events no failure: the search proves nothing\n%s", testkit.Clip(html, 3000))
	}
	if !sawQuery.Load() {
		t.Error("the origin never received the secret in its URL: the test proves nothing about it")
	}
}

// waitOnPage waits until the JavaScript predicate holds on the open page.
func waitOnPage(t *testing.T, step func() (context.Context, context.CancelFunc), what, predicate string) {
	t.Helper()
	ctx, cancel := step()
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatalf("waiting for %s on the page: %v", what, err)
	}
}

// eventsSoFar reads GET /v1/events for a moment: the kept history, which
// a new stream replays at once.
func eventsSoFar(t testing.TB, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body) // until the deadline cuts the stream
	return string(b)
}
