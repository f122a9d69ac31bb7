package promkit_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrysync/ferry/internal/promkit"
)

func TestRegisteringTwiceSharesTheSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	newCounter := func() *prometheus.CounterVec {
		c, err := promkit.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, []string{"l"}))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := newCounter(), newCounter()
	a.WithLabelValues("v").Inc()
	b.WithLabelValues("v").Inc()
	if got := testutil.ToFloat64(a.WithLabelValues("v")); got != 2 {
		t.Fatalf("shared series = %v, want 2", got)
	}
	if _, err := promkit.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "x_total", Help: "other"})); err == nil {
		t.Fatal("a clashing collector was accepted")
	}
	if c, err := promkit.Register[prometheus.Counter](nil, prometheus.NewCounter(prometheus.CounterOpts{Name: "y", Help: "y"})); err != nil || c == nil {
		t.Fatal("nil registerer")
	}
}
