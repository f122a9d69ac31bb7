package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	gosync "sync"
	"time"

	"github.com/ferrysync/ferry/signal"

	"github.com/ferrysync/ferry/sync"
)

// PagePath is the status page: what GET /status says, for people.
const PagePath = "/"

// pageEvents is how many of the newest events the page lists.
const pageEvents = 50

//go:embed page.html
var pageFS embed.FS

// pageTemplate is parsed when the page is first asked for: most
// processes never serve it, and parsing it at start cost 70 KB of
// allocation and 50 KB of heap for good (GODEBUG=inittrace=1).
var pageTemplate = gosync.OnceValue(func() *template.Template {
	return template.Must(template.New("page.html").Funcs(template.FuncMap{
		"when":  func(now, t time.Time) whenView { return whenView{T: t, Ago: ago(now, t)} },
		"short": short,
	}).ParseFS(pageFS, "page.html"))
})

// whenView is a time as the page shows it: how long ago, and the time
// itself in a title and a datetime attribute.
type whenView struct {
	T   time.Time
	Ago string
}

// The states a source is shown in, at a glance.
const (
	stateGreen    = "green"    // published, and the last sync succeeded
	stateWaiting  = "waiting"  // nothing published yet
	stateFailing  = "failing"  // the last attempts failed; the last good revision stays
	stateRejected = "rejected" // the origin holds a revision a check refused
	stateStale    = "stale"    // no success for the staleness budget
)

// pageView is what the template renders.
type pageView struct {
	Nonce     string
	Now       time.Time
	Sources   []sourceCard
	Counts    []stateCount // the states present, in order of concern
	Events    []sync.Event // newest first
	LastEvent uint64       // the newest event's ID: the script skips those up to it
}

type stateCount struct {
	State string
	N     int
}

// sourceCard is one source on the page.
type sourceCard struct {
	sync.SourceStatus
	State  string
	Notify []signal.Result // how telling the app went, per target
}

// stateOf sums up a source. The order says which state wins: a source
// with nothing published is waiting whatever else holds, one that has
// not synced for too long is stale even while it keeps failing, and a
// rejection stays the story until a later attempt fails for another
// reason.
func stateOf(st sync.SourceStatus) string {
	rejectedLast := st.RejectedRevision != "" &&
		(st.ConsecutiveFailures == 0 || st.Rejected != nil && st.LastAttempt != nil && !st.Rejected.Before(*st.LastAttempt))
	switch {
	case st.Revision == "":
		return stateWaiting
	case st.Stale:
		return stateStale
	case rejectedLast:
		return stateRejected
	case st.ConsecutiveFailures > 0 || st.PublishedUntrusted:
		return stateFailing
	}
	return stateGreen
}

// stateOrder ranks states by how much they need a reader's attention.
var stateOrder = []string{stateStale, stateFailing, stateRejected, stateWaiting, stateGreen}

// page renders the status page: the sources, their notifications and the
// newest events, complete without JavaScript; a few lines of script keep
// it current from GET /v1/events.
func page(s Syncer, notify func(source string) []signal.Result) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		nonce, err := newNonce()
		if err != nil {
			http.Error(w, "no randomness for the page's nonce", http.StatusInternalServerError)
			return
		}
		v := pageView{Nonce: nonce, Now: time.Now()}
		counts := map[string]int{}
		for _, st := range s.Status() {
			c := sourceCard{SourceStatus: st, State: stateOf(st)}
			if notify != nil {
				c.Notify = notify(st.Name)
			}
			counts[c.State]++
			v.Sources = append(v.Sources, c)
		}
		for _, state := range stateOrder {
			if counts[state] > 0 {
				v.Counts = append(v.Counts, stateCount{state, counts[state]})
			}
		}
		ctx, cancel := context.WithCancel(r.Context())
		cancel() // what is kept now; no waiting
		evs := s.Events(ctx, 0)
		if len(evs) > 0 {
			v.LastEvent = evs[len(evs)-1].ID
		}
		evs = evs[max(0, len(evs)-pageEvents):]
		slices.Reverse(evs)
		v.Events = evs

		var buf bytes.Buffer
		if err := pageTemplate().Execute(&buf, v); err != nil {
			http.Error(w, "rendering the page failed", http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		// Nothing but the page's own script and style, talking to its
		// own origin: an error message from an origin, shown in full,
		// can never become markup that runs.
		h.Set("Content-Security-Policy", fmt.Sprintf("default-src 'none'; script-src 'nonce-%[1]s'; style-src 'nonce-%[1]s'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'", nonce))
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		w.Write(buf.Bytes())
	}
}

// newNonce returns a fresh CSP nonce: 128 random bits, in the URL-safe
// alphabet CSP allows, which html/template leaves as it is in an
// attribute ("+" would become "&#43;").
func newNonce() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// ago says how long before now t was, as a person would ("3m ago"); a
// time ahead of now is "in 3m". The page shows the time itself beside it.
func ago(now, t time.Time) string {
	d := now.Sub(t)
	ahead := d < 0
	if ahead {
		d = -d
	}
	var s string
	switch {
	case d < 5*time.Second:
		return "just now"
	case d < time.Minute:
		s = fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		s = fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%dh", int(d.Hours()))
	default:
		s = fmt.Sprintf("%dd", int(d.Hours()/24))
	}
	if ahead {
		return "in " + s
	}
	return s + " ago"
}

// shortRevision is how much of a revision names it in a list; the whole
// is in a title, and on the source's card.
const shortRevision = 12

// short cuts a revision for a list, as git shows a commit.
func short(rev string) string {
	if len(rev) <= shortRevision {
		return rev
	}
	return rev[:shortRevision]
}

// plural is "1 source" or "2 sources".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// title sums the page up for a browser tab: the states that need
// attention first.
func (v pageView) Title() string {
	if len(v.Counts) == 0 {
		return "ferry: no sources"
	}
	var parts []string
	for _, c := range v.Counts {
		parts = append(parts, fmt.Sprintf("%d %s", c.N, c.State))
	}
	return "ferry: " + strings.Join(parts, ", ")
}

// Summary is the headline: how many sources.
func (v pageView) Summary() string { return plural(len(v.Sources), "source") }
