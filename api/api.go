// Package api serves ferry's HTTP endpoints: probes for the kubelet,
// Prometheus metrics, a JSON status and a status page for people, the pull
// API and a trigger for an early sync.
package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/ferrysync/ferry/signal"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferrysync/ferry/fetch/kit"
	"github.com/ferrysync/ferry/sync"
)

// Where the endpoints are served. Manifests and their tests read these.
const (
	DefaultAddr = ":8475"
	HealthPath  = "/healthz"
	ReadyPath   = "/readyz"
	MetricsPath = "/metrics"
	StatusPath  = "/status"
	SyncPath    = "/sync"
)

// Syncer is what the endpoints need of the sync loop.
type Syncer interface {
	Ready() (bool, string)
	Healthy() (bool, string)
	Status() []sync.SourceStatus
	Trigger(source string) error
	// Adopt is Trigger that publishes what it finds at once, whatever
	// the rollout window: POST /sync?adopt=now.
	Adopt(source string) error
	// WaitChange returns a source's status once its revision is not rev,
	// or as it is when ctx ends: the pull API's long poll.
	WaitChange(ctx context.Context, source, rev string) (sync.SourceStatus, bool, error)
	// OpenFile opens one file of a source's published revision, never
	// outside it, and names the revision.
	OpenFile(source, path string) (*os.File, string, error)
	// Events returns the events after ID after, waiting for one until ctx
	// ends: GET /v1/events.
	Events(ctx context.Context, after uint64) []sync.Event
}

// Options configure the endpoints, for Handler and Serve.
type Options struct {
	// Gatherer serves /metrics; nil serves an empty page.
	Gatherer prometheus.Gatherer
	// TokenFile holds the bearer token POST /sync needs from a non-loopback
	// address, or from a web page of another origin than the endpoint's.
	// It is read on every such request, so a rotated Secret takes effect
	// at once. Empty refuses every such trigger.
	TokenFile string
	// APITokenFile, when set, holds the bearer token GET /status and the
	// pull API need from a non-loopback address (a port exposed beyond
	// the pod); read on every such request. Unset, they are as open as
	// the probes.
	APITokenFile string
	// Logger receives refusals and server errors; nil discards them.
	Logger *slog.Logger
	// Notify, when set, says how telling the app of source's changes
	// went, per target, for the status page; nil shows no notify targets.
	// Results name no secret: targets and errors are shown as logs show
	// them.
	Notify func(source string) []signal.Result
}

// Handler returns the endpoints on a mux of their own: nothing else (no
// pprof, no default mux) is ever exposed.
//
// Refused requests are logged at most once every 10 seconds, each line
// with the count refused since the previous one.
func Handler(s Syncer, o Options) http.Handler {
	o = o.withDefaults()
	return handler(s, o, refusedSyncs(o.Logger))
}

func refusedSyncs(log *slog.Logger) *throttle {
	return newThrottle(log, slog.LevelWarn, "refused POST /sync", logEvery)
}

func handler(s Syncer, o Options, refused *throttle) http.Handler {
	if o.TokenFile != "" {
		// Read on every request, so a fix needs no restart; but say now
		// that remote triggers will be refused, not at the first one.
		if _, err := kit.ReadSecret(o.TokenFile); err != nil {
			o.Logger.Warn("sync token file unusable: POST /sync from other addresses is refused until it holds a token", "path", o.TokenFile, "error", err)
		}
	}
	cop := http.NewCrossOriginProtection()
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+HealthPath, probe(s.Healthy))
	mux.HandleFunc("GET "+ReadyPath, probe(s.Ready))
	mux.Handle("GET "+MetricsPath, promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET "+StatusPath, readers(o.APITokenFile, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(map[string]any{"sources": s.Status()})
	}))
	mux.HandleFunc("GET "+PagePath+"{$}", readers(o.APITokenFile, page(s, o.Notify)))
	p := &pull{s: s}
	mux.HandleFunc("GET "+SourcesPath, readers(o.APITokenFile, p.sources))
	mux.HandleFunc("GET "+SourcesPath+"/{name}", readers(o.APITokenFile, p.source))
	mux.HandleFunc("GET "+SourcesPath+"/{name}/files/{path...}", readers(o.APITokenFile, p.file))
	mux.HandleFunc("GET "+EventsPath, readers(o.APITokenFile, p.events))
	mux.HandleFunc("POST "+SyncPath, func(w http.ResponseWriter, r *http.Request) {
		if err := authorize(r, o.TokenFile, cop); err != nil {
			refused.event("remote", r.RemoteAddr, "reason", err.Error())
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		q := r.URL.Query()
		trigger, done := s.Trigger, "sync triggered"
		switch adopt := q.Get("adopt"); adopt {
		case "":
		case "now":
			trigger, done = s.Adopt, "sync triggered; what it finds is adopted at once"
		default:
			http.Error(w, fmt.Sprintf("adopt=%q: the only value is now", adopt), http.StatusBadRequest)
			return
		}
		if err := trigger(q.Get("source")); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintln(w, done)
	})
	return mux
}

func (o Options) withDefaults() Options {
	if o.Gatherer == nil {
		o.Gatherer = prometheus.NewRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

func probe(check func() (bool, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ok, reason := check()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, reason)
	}
}
