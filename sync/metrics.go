package sync

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_syncs_total",
			Help: "Sync attempts by source and result (published, repaired, unchanged, error).",
		}, []string{"source", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ferry_sync_duration_seconds",
			Help:    "Time taken by one sync attempt, fetch and publish.",
			Buckets: prometheus.ExponentialBuckets(0.005, 3, 10),
		}, []string{"source"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_last_success_timestamp_seconds",
			Help: "Unix time of the last sync that succeeded (published or unchanged).",
		}, []string{"source"}),
		revisions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_revision_info",
			Help: "The published revision of each source, as a label; the value is 1.",
		}, []string{"source", "revision"}),
		fetched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_fetched_bytes_total",
			Help: "Bytes taken from origins and written to revisions (reused files not counted).",
		}, []string{"source"}),
		failures: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_consecutive_failures",
			Help: "Sync attempts that failed in a row, per source.",
		}, []string{"source"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_repairs_total",
			Help: "Published revisions found damaged on disk (link or tree deleted or replaced, a file changed) and published again.",
		}, []string{"source"}),
	}
	if reg != nil {
		reg.MustRegister(m.syncs, m.duration, m.lastSuccess, m.revisions, m.fetched, m.failures, m.repairs)
	}
	return m
}

func (m *metrics) sync(source, result string, d time.Duration) {
	m.syncs.WithLabelValues(source, result).Inc()
	m.duration.WithLabelValues(source).Observe(d.Seconds())
	if result == "error" {
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
