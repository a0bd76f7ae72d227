// Package chart draws the console's time-series charts as SVG on the server:
// no JavaScript, no library in the page, nothing fetched. A chart is a line
// chart or a stacked bar chart over time buckets, with named series (sent,
// delivered, bounced, complained, failed have their own colours), optional
// horizontal threshold lines (bounce and complaint rates against the
// reputation thresholds), a y axis with nice ticks and a time axis whose
// labels fit the bucket size.
//
// Every chart is accessible: role="img" with a <title> and a <desc> (written
// from the data when the caller gives none), series told apart by dash
// pattern and legend as well as by colour, colours of at least 3:1 contrast
// on white (WCAG 1.4.11), and a data table (WriteTable) to go with it. The SVG
// has a viewBox and no fixed size, so it scales to the width of its container
// (phone included). Scaled down to a phone's width its 12-unit text gets
// small; the page's stylesheet can enlarge it (a CSS rule beats the SVG's
// presentation attributes, and needs no inline style that a strict
// Content-Security-Policy would refuse):
//
//	@media (max-width: 600px) { svg.chart text { font-size: 18px } }
//
// The margins leave room for that.
//
// The output is deterministic (coordinates rounded to 0.1), so tests compare
// it with golden files.
package chart

import (
	"errors"
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Kind is how the series are drawn.
type Kind int

const (
	// Line draws one line per series.
	Line Kind = iota
	// StackedBar draws one bar per bucket, the series stacked in order.
	StackedBar
)

// Series is one named row of values, one per bucket. Values below zero are
// drawn as zero.
type Series struct {
	Name   string
	Values []float64
	// Color overrides the palette (a CSS colour).
	Color string
}

// Threshold is a horizontal line at Value, labelled.
type Threshold struct {
	Label string
	Value float64
	// Color overrides the default (dark red).
	Color string
}

// Chart is one chart. Times are the buckets' starts, in order; every series
// has len(Times) values.
type Chart struct {
	// ID prefixes the element ids (title, desc): unique within a page.
	ID    string
	Title string
	// Desc describes the chart for screen readers; empty: written from the
	// data (kind, series, period, totals).
	Desc       string
	Kind       Kind
	Times      []time.Time
	Series     []Series
	Thresholds []Threshold
	// YLabel names the y axis ("messages", "rate").
	YLabel string
	// Format writes a y value (ticks, table, desc); default Count.
	Format func(float64) string
	// Location of the time labels (default UTC).
	Location *time.Location
	// Width and Height of the viewBox (default 640 x 280).
	Width, Height int
}

// Count formats a count: 950, 1.2k, 3.4M (and small values to four
// significant digits).
func Count(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e6:
		return trimZero(strconv.FormatFloat(v/1e6, 'f', 1, 64)) + "M"
	case a >= 1e3:
		return trimZero(strconv.FormatFloat(v/1e3, 'f', 1, 64)) + "k"
	default:
		// Four significant digits: 950, 12.5, 0.005.
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
}

// Percent formats a fraction as a percentage: 0.025 is "2.5%".
func Percent(v float64) string {
	return strconv.FormatFloat(v*100, 'g', 3, 64) + "%"
}

func trimZero(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" {
		return "0"
	}
	return s
}

// Seconds formats a duration in seconds (latency percentiles): 850ms,
// 1.5s, 2.5m, 1.2h.
func Seconds(v float64) string {
	a := math.Abs(v)
	switch {
	case v == 0:
		return "0"
	case a < 1:
		return strconv.FormatFloat(v*1000, 'g', 3, 64) + "ms"
	case a < 120:
		return strconv.FormatFloat(v, 'g', 3, 64) + "s"
	case a < 7200:
		return strconv.FormatFloat(v/60, 'g', 3, 64) + "m"
	default:
		return strconv.FormatFloat(v/3600, 'g', 3, 64) + "h"
	}
}

// Palette holds the colours of the delivery outcomes; other series take
// Fallback in turn. Each has at least 4.5:1 contrast on white.
var Palette = map[string]string{
	"sent":       "#1f5fbf",
	"delivered":  "#1a7f37",
	"bounced":    "#9a6700",
	"complained": "#7b3fc4",
	"failed":     "#c4211f",
}

// Fallback colours, in order, for series not in Palette.
var Fallback = []string{"#0b5394", "#5c5c00", "#a3006b", "#00616b", "#5a4636", "#474747"}

// ThresholdColor is a threshold line's default colour.
const ThresholdColor = "#b00020"

// dashes tell the lines apart without colour.
var dashes = []string{"", "6 3", "2 3", "8 3 2 3", "1 2"}

const (
	textColor = "#1f2328"
	gridColor = "#d0d7de"
	axisColor = "#57606a"
	charW     = 6.6 // estimated width of a character at font-size 12
)

// ErrShape is returned when a series' length differs from Times'.
var ErrShape = errors.New("chart: every series needs one value per time bucket")

func (c Chart) check() error {
	for _, s := range c.Series {
		if len(s.Values) != len(c.Times) {
			return fmt.Errorf("%w: %q has %d values for %d buckets", ErrShape, s.Name, len(s.Values), len(c.Times))
		}
		for _, v := range s.Values {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("chart: series %q has a value that is not a number", s.Name)
			}
		}
	}
	for i := 1; i < len(c.Times); i++ {
		if !c.Times[i].After(c.Times[i-1]) {
			return errors.New("chart: times must increase")
		}
	}
	return nil
}

func (c Chart) format(v float64) string {
	if c.Format != nil {
		return c.Format(v)
	}
	return Count(v)
}

func (c Chart) loc() *time.Location {
	if c.Location != nil {
		return c.Location
	}
	return time.UTC
}

func (c Chart) id(part string) string {
	id := c.ID
	if id == "" {
		id = "chart"
	}
	return id + "-" + part
}

func (c Chart) color(i int) string {
	s := c.Series[i]
	if s.Color != "" {
		return s.Color
	}
	if col, ok := Palette[strings.ToLower(s.Name)]; ok {
		return col
	}
	n := 0
	for j := 0; j < i; j++ {
		if _, ok := Palette[strings.ToLower(c.Series[j].Name)]; !ok && c.Series[j].Color == "" {
			n++
		}
	}
	return Fallback[n%len(Fallback)]
}

// step is the bucket size (the smallest gap; one hour for a single bucket).
func (c Chart) step() time.Duration {
	if len(c.Times) < 2 {
		return time.Hour
	}
	step := c.Times[1].Sub(c.Times[0])
	for i := 2; i < len(c.Times); i++ {
		if d := c.Times[i].Sub(c.Times[i-1]); d < step {
			step = d
		}
	}
	return step
}

// yMax is the top of the data: the largest value (or stack) and threshold.
func (c Chart) yMax() float64 {
	m := 0.0
	for i := range c.Times {
		stack := 0.0
		for _, s := range c.Series {
			v := s.Values[i]
			if c.Kind == StackedBar {
				if v > 0 {
					stack += v
				}
			} else {
				m = math.Max(m, v)
			}
		}
		m = math.Max(m, stack)
	}
	for _, t := range c.Thresholds {
		m = math.Max(m, t.Value)
	}
	return m
}

// Description is the text of <desc>: Desc, or one written from the data.
func (c Chart) Description() string {
	if c.Desc != "" {
		return c.Desc
	}
	var b strings.Builder
	kind := "Line chart"
	if c.Kind == StackedBar {
		kind = "Stacked bar chart"
	}
	names := make([]string, len(c.Series))
	for i, s := range c.Series {
		names[i] = s.Name
	}
	b.WriteString(kind)
	if len(names) > 0 {
		b.WriteString(" of " + strings.Join(names, ", "))
	}
	if len(c.Times) == 0 {
		b.WriteString(". No data.")
		return b.String()
	}
	fmt.Fprintf(&b, " per %s, %s to %s.", durationWord(c.step()),
		c.Times[0].In(c.loc()).Format("2006-01-02 15:04 MST"),
		c.Times[len(c.Times)-1].Add(c.step()).In(c.loc()).Format("2006-01-02 15:04 MST"))
	for _, s := range c.Series {
		total, peak := 0.0, 0.0
		for _, v := range s.Values {
			total += v
			peak = math.Max(peak, v)
		}
		if c.Kind == StackedBar {
			fmt.Fprintf(&b, " %s: total %s, peak %s.", s.Name, c.format(total), c.format(peak))
		} else {
			fmt.Fprintf(&b, " %s: peak %s, last %s.", s.Name, c.format(peak), c.format(s.Values[len(s.Values)-1]))
		}
	}
	for _, t := range c.Thresholds {
		fmt.Fprintf(&b, " %s at %s.", t.Label, c.format(t.Value))
	}
	return b.String()
}

func durationWord(d time.Duration) string {
	switch {
	case d == time.Minute:
		return "minute"
	case d == time.Hour:
		return "hour"
	case d == 24*time.Hour:
		return "day"
	case d == 7*24*time.Hour:
		return "week"
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%d hours", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%d minutes", d/time.Minute)
	default:
		return d.String()
	}
}

// WriteTable writes the data as an HTML table (the chart's text
// alternative): one row per bucket, one column per series.
func (c Chart) WriteTable(w io.Writer) error {
	if err := c.check(); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString(`<table class="chart-data">`)
	fmt.Fprintf(&b, `<caption>%s</caption>`, esc(c.Title))
	b.WriteString(`<thead><tr><th scope="col">Time</th>`)
	for _, s := range c.Series {
		fmt.Fprintf(&b, `<th scope="col">%s</th>`, esc(s.Name))
	}
	b.WriteString(`</tr></thead><tbody>`)
	layout := "2006-01-02 15:04"
	if c.step()%(24*time.Hour) == 0 {
		layout = "2006-01-02"
	}
	for i, t := range c.Times {
		fmt.Fprintf(&b, `<tr><th scope="row"><time datetime="%s">%s</time></th>`,
			t.UTC().Format(time.RFC3339), t.In(c.loc()).Format(layout))
		for _, s := range c.Series {
			fmt.Fprintf(&b, `<td>%s</td>`, esc(c.format(s.Values[i])))
		}
		b.WriteString(`</tr>`)
	}
	b.WriteString(`</tbody></table>`)
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteHTML writes a <figure> with the SVG, a caption and the data table in
// a <details> element.
func (c Chart) WriteHTML(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, `<figure class="chart" id="%s">`, esc(c.id("figure")))
	if err := c.WriteSVG(&b); err != nil {
		return err
	}
	fmt.Fprintf(&b, `<figcaption>%s</figcaption><details><summary>Data table</summary>`, esc(c.Title))
	if err := c.WriteTable(&b); err != nil {
		return err
	}
	b.WriteString(`</details></figure>`)
	_, err := io.WriteString(w, b.String())
	return err
}

func esc(s string) string { return html.EscapeString(s) }

// num writes a coordinate rounded to 0.1.
func num(v float64) string {
	return trimZero(strconv.FormatFloat(math.Round(v*10)/10, 'f', 1, 64))
}
