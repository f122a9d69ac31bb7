package signal

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrysync/ferry/internal/promkit"
)

// Values of the result label of ferry_notify_total.
const (
	resultOK      = "ok"
	resultRetry   = "retry"
	resultFailed  = "failed"
	resultDropped = "dropped"
)

// metrics is shared by every way of telling.
type metrics struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// last is each target's last outcome per source, for the status
	// page: kept here, beside the counters every way already reports to.
	last *results
}

// newMetrics registers the notify metrics with reg by promkit's convention:
// with a nil reg they are kept but exported nowhere, and notifiers side by
// side on one registry count into the same series.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	total, err := promkit.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_notify_total",
		Help: "Notifications of the application by target and result (ok, retry, failed, dropped: superseded by a newer change).",
	}, []string{"target", "result"}))
	if err != nil {
		return nil, err
	}
	duration, err := promkit.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ferry_notify_duration_seconds",
		Help:    "Duration of the request or exec hook run that delivered a notification, by target.",
		Buckets: prometheus.DefBuckets,
	}, []string{"target"}))
	if err != nil {
		return nil, err
	}
	return &metrics{total: total, duration: duration, last: &results{}}, nil
}

// initTarget makes every result of target visible as 0 before the first
// notification, so that rate() and alerts see the series from the start,
// and the status page lists the target.
func (m *metrics) initTarget(target string, results ...string) {
	for _, r := range results {
		m.total.WithLabelValues(target, r)
	}
	m.last.add(target)
}

// outcome records how telling target of cs ended, for the status page
// (results) and then, last, in the counter: whoever sees the counter move
// can rely on the rest.
func (m *metrics) outcome(target string, cs Changes, result string, err error) {
	m.last.note(target, cs, result, err)
	m.inc(target, result)
}

func (m *metrics) inc(target, result string) {
	m.total.WithLabelValues(target, result).Inc()
}

func (m *metrics) observe(target string, seconds float64) {
	m.duration.WithLabelValues(target).Observe(seconds)
}
