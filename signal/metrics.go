package signal

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Values of the result label of ferry_notify_total.
const (
	resultOK      = "ok"
	resultRetry   = "retry"
	resultFailed  = "failed"
	resultDropped = "dropped"
)

// metrics is shared by HTTP and Process; a nil *metrics records nothing, so
// callers need not check whether a Registerer was given.
type metrics struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newMetrics registers the notify metrics with reg, or returns nil when reg
// is nil. Registering twice on one registry (an HTTP and a Process notifier
// side by side) reuses the collectors already there instead of panicking.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	total := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_notify_total",
		Help: "Notifications of the application by target and result (ok, retry, failed, dropped: superseded by a newer change).",
	}, []string{"target", "result"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ferry_notify_duration_seconds",
		Help:    "Duration of the request that delivered a notification, by target.",
		Buckets: prometheus.DefBuckets,
	}, []string{"target"})
	var err error
	if total, err = register(reg, total); err != nil {
		return nil, err
	}
	if duration, err = register(reg, duration); err != nil {
		return nil, err
	}
	return &metrics{total: total, duration: duration}, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// initTarget makes every result of target visible as 0 before the first
// notification, so that rate() and alerts see the series from the start.
func (m *metrics) initTarget(target string, results ...string) {
	if m == nil {
		return
	}
	for _, r := range results {
		m.total.WithLabelValues(target, r)
	}
}

func (m *metrics) inc(target, result string) {
	if m == nil {
		return
	}
	m.total.WithLabelValues(target, result).Inc()
}

func (m *metrics) observe(target string, seconds float64) {
	if m == nil {
		return
	}
	m.duration.WithLabelValues(target).Observe(seconds)
}
