package main

import (
	"strings"
	"testing"
	"time"
)

// A cell is "median [min-max] unit".
func TestCellIsMedianAndRange(t *testing.T) {
	type cell struct {
		s    series
		u    unit
		want string
	}
	for _, c := range []cell{
		{series{3e6, 1e6, 2e6}, ms, "2 [1-3] ms"},
		{series{4e6, 1e6, 2e6, 3e6}, ms, "2 [1-4] ms"}, // 2.5, rounded to even
		{series{5 << 20, 5 << 20}, mib, "5.0 MiB"},
		{series{1, 2, 9}, num, "2 [1-9]"},
		{nil, ms, "-"},
	} {
		if got := c.u.cell(c.s); got != c.want {
			t.Errorf("cell(%v) = %q, want %q", c.s, got, c.want)
		}
	}
	if got := ratio(series{float64(3 * time.Second)}, series{float64(time.Second)}); got != "3.00x" {
		t.Errorf("ratio = %q, want 3.00x", got)
	}
	// Runs 1 and 3 were slowed for both: their ratios hold.
	if got := pairedRatio(series{2, 20, 3}, series{1, 10, 1}); got != "2.00x [2.00-3.00]" {
		t.Errorf("pairedRatio = %q, want 2.00x [2.00-3.00]", got)
	}
}

func TestSumMetricAddsEverySeriesOfTheName(t *testing.T) {
	text := `# HELP ferry_syncs_total Sync attempts.
# TYPE ferry_syncs_total counter
ferry_syncs_total{result="published",source="current"} 1
ferry_syncs_total{result="unchanged",source="current"} 41
ferry_syncs_total_other 100
ferry_sync_duration_seconds_count 42
`
	got, err := sumMetric(strings.NewReader(text), "ferry_syncs_total")
	if err != nil || got != 42 {
		t.Errorf("sumMetric = %v, %v; want 42", got, err)
	}
}
