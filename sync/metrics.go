package sync

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrysync/ferry/internal/promkit"
)

// metrics are the loop's Prometheus series. With a nil Registerer they are
// still updated but exported nowhere.
type metrics struct {
	syncs       *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	lastSuccess *prometheus.GaugeVec
	revisions   *prometheus.GaugeVec
	fetched     *prometheus.CounterVec
	failures    *prometheus.GaugeVec
	repairs     *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	untrusted   *prometheus.CounterVec // trust.go
	distrusted  *prometheus.GaugeVec   // trust.go
	rollbacks   *prometheus.CounterVec
	pending     *prometheus.GaugeVec
}

// newMetrics registers the series on reg (nil: nowhere) by promkit's
// convention: a second Syncer on the same registry shares them.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	var errs []error
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c, err := promkit.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels))
		errs = append(errs, err)
		return c
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		g, err := promkit.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels))
		errs = append(errs, err)
		return g
	}
	duration, err := promkit.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "ferry_sync_duration_seconds",
		Help: "Time taken by one sync attempt, fetch and publish.",
		// From a poll that finds nothing new to a first sync of a large
		// tree; bounds a person can read in le="..." (exponential ones
		// print as 3.6450000000000005).
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
	}, []string{"source"}))
	m := &metrics{
		syncs:       counter("ferry_syncs_total", "Sync attempts by source and result (published, repaired, unchanged, rejected, error).", "source", "result"),
		duration:    duration,
		lastSuccess: gauge("ferry_last_success_timestamp_seconds", "Unix time of the last sync that succeeded (published or unchanged).", "source"),
		revisions:   gauge("ferry_revision_info", "The published revision of each source, as a label; the value is 1.", "source", "revision"),
		fetched:     counter("ferry_fetched_bytes_total", "Bytes taken from origins and written to revisions (reused files not counted).", "source"),
		failures:    gauge("ferry_consecutive_failures", "Sync attempts that failed in a row, per source.", "source"),
		repairs:     counter("ferry_repairs_total", "Published revisions found damaged on disk (link or tree deleted or replaced, a file changed) and published again.", "source"),
		rejected:    counter("ferry_rejected_total", "Revisions refused, by source and reason: not published (syntax, schema, command), or rolled back (app).", "source", "reason"),
		pending:     gauge("ferry_pending_adoption_timestamp_seconds", "Unix time at which this instance adopts the new revision it holds back under the rollout window; 0 when none waits.", "source"),
		rollbacks:   counter("ferry_rollbacks_total", "Revisions the app refused and ferry swapped back to the one before.", "source"),
		untrusted:   counter("ferry_signature_failures_total", "Sync attempts that refused a revision because it is not signed by a key of the keys file.", "source"),
		distrusted:  gauge("ferry_published_untrusted", "1 while the published revision no longer verifies against the keys file (it stays published until a signed one replaces it), else 0.", "source"),
	}
	return m, errors.Join(append(errs, err)...)
}

func (m *metrics) sync(source, result string, d time.Duration) {
	m.syncs.WithLabelValues(source, result).Inc()
	m.duration.WithLabelValues(source).Observe(d.Seconds())
	if result == "error" || result == "rejected" {
		m.failures.WithLabelValues(source).Inc()
		return
	}
	m.failures.WithLabelValues(source).Set(0)
	m.lastSuccess.WithLabelValues(source).SetToCurrentTime()
}

func (m *metrics) revision(source, old, rev string) {
	if old != "" {
		m.revisions.DeleteLabelValues(source, old)
	}
	m.revisions.WithLabelValues(source, rev).Set(1)
}

func (m *metrics) repair(source string) {
	m.repairs.WithLabelValues(source).Inc()
}

func (m *metrics) bytes(source string, n int64) {
	m.fetched.WithLabelValues(source).Add(float64(n))
}
