package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// series is the measurements of one quantity, one a run.
type series []float64

func (s series) median() float64 {
	if len(s) == 0 {
		return 0
	}
	t := slices.Sorted(slices.Values(s))
	n := len(t)
	if n%2 == 1 {
		return t[n/2]
	}
	return (t[n/2-1] + t[n/2]) / 2
}

// of is one quantity of every sample.
func of[T any](samples []T, f func(T) float64) series {
	s := make(series, len(samples))
	for i, x := range samples {
		s[i] = f(x)
	}
	return s
}

// unit formats a quantity: the value is divided by scale and printed
// with the given number of decimals, then the name.
type unit struct {
	scale    float64
	decimals int
	name     string
}

var (
	ms     = unit{float64(time.Millisecond), 0, "ms"}
	msFine = unit{float64(time.Millisecond), 2, "ms"}
	mib    = unit{1 << 20, 1, "MiB"}
	pct    = unit{0.01, 2, "%"}
	num    = unit{1, 0, ""}
	byt    = unit{1, 0, "B"}
	mb     = unit{1e6, 2, "MB"}
)

func (u unit) format(v float64) string {
	return strings.TrimSpace(fmt.Sprintf("%.*f %s", u.decimals, v/u.scale, u.name))
}

// cell is "median [min-max] unit", or the one value when all are equal.
func (u unit) cell(s series) string {
	if len(s) == 0 {
		return "-"
	}
	lo, hi := slices.Min(s), slices.Max(s)
	med := fmt.Sprintf("%.*f", u.decimals, s.median()/u.scale)
	if lo == hi {
		return u.format(lo)
	}
	return strings.TrimSpace(fmt.Sprintf("%s [%.*f-%.*f] %s", med, u.decimals, lo/u.scale, u.decimals, hi/u.scale, u.name))
}

// ratio is median a / median b, or "-" when b is zero.
func ratio(a, b series) string {
	if b.median() == 0 {
		return "-"
	}
	return times(a.median() / b.median())
}

func times(r float64) string {
	if r >= 100 {
		return fmt.Sprintf("%.0fx", r)
	}
	return fmt.Sprintf("%.2fx", r)
}

// pairedRatio is the median [min-max] of a[i]/b[i]: the ratio of runs
// made back to back, which a load that comes and goes affects less than
// the ratio of medians. It is "-" when some b[i] is zero.
func pairedRatio(a, b series) string {
	if len(a) != len(b) || len(a) == 0 {
		return "-"
	}
	r := make(series, len(a))
	for i := range a {
		if b[i] == 0 {
			return "-"
		}
		r[i] = a[i] / b[i]
	}
	lo, hi := slices.Min(r), slices.Max(r)
	if hi-lo < 0.005 {
		return times(r.median())
	}
	return fmt.Sprintf("%s [%.2f-%.2f]", times(r.median()), lo, hi)
}

// table is an aligned text table: a header row, then rows.
type table struct{ rows [][]string }

func newTable(head ...string) *table { return &table{rows: [][]string{head}} }

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for _, r := range t.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

// compare adds the rows of a ferry-vs-git comparison, run by run: wall and
// CPU time, peak RSS, what the origin spent and sent, and their ratios.
func (t *table) compare(ferry, git []sample) { t.compareRows(ferry, git, true) }

// compareRows is compare, without the origin's rows when the origin is
// not this program's git server.
func (t *table) compareRows(ferry, git []sample, origin bool) {
	rows := []struct {
		name string
		u    unit
		f    func(sample) float64
	}{
		{"wall", ms, func(s sample) float64 { return float64(s.Wall) }},
		{"CPU user", ms, func(s sample) float64 { return float64(s.User) }},
		{"CPU system", ms, func(s sample) float64 { return float64(s.Sys) }},
		{"peak RSS", mib, func(s sample) float64 { return float64(s.MaxRSS) }},
		{"origin CPU", ms, func(s sample) float64 { return float64(s.Origin) }},
		{"origin requests", num, func(s sample) float64 { return float64(s.Served.requests) }},
		{"origin bytes sent", mb, func(s sample) float64 { return float64(s.Served.bytes) }},
	}
	if !origin {
		rows = rows[:4]
	}
	for _, r := range rows {
		f, g := of(ferry, r.f), of(git, r.f)
		t.add(r.name, r.u.cell(f), r.u.cell(g), pairedRatio(f, g))
	}
}
