package chart

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// layout is the plot area inside the viewBox.
type layout struct {
	w, h                   float64
	left, right, top, base float64 // plot edges: x from left to right, y from top to base
}

func (l layout) plotW() float64 { return l.right - l.left }
func (l layout) plotH() float64 { return l.base - l.top }

// WriteSVG writes the chart as an <svg> element.
func (c Chart) WriteSVG(w io.Writer) error {
	if err := c.check(); err != nil {
		return err
	}
	width, height := float64(c.Width), float64(c.Height)
	if width <= 0 {
		width = 640
	}
	if height <= 0 {
		height = 280
	}
	step, top := niceScale(c.yMax(), 5)
	ticks := yTicks(step, top)
	labelW := 0.0
	for _, t := range ticks {
		// Room for text enlarged by the page's CSS at phone width (18 units).
		labelW = math.Max(labelW, float64(len(c.format(t)))*charW*1.5)
	}
	legend, legendH := c.legend(width - 16)
	l := layout{w: width, h: height, left: 10 + labelW + 8, right: width - 16, top: 12 + legendH + 14, base: height - 34}
	if c.YLabel != "" {
		l.left += 20
	}

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 %s %s" width="100%%" role="img" aria-labelledby="%s %s" font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif" font-size="12" fill="%s">`,
		num(width), num(height), c.id("title"), c.id("desc"), textColor)
	fmt.Fprintf(&b, "\n"+`<title id="%s">%s</title>`, c.id("title"), esc(c.Title))
	fmt.Fprintf(&b, "\n"+`<desc id="%s">%s</desc>`, c.id("desc"), esc(c.Description()))
	b.WriteString("\n" + legend)

	// The y grid and its labels.
	b.WriteString("\n" + `<g class="y-axis" aria-hidden="true">`)
	for _, t := range ticks {
		y := l.base - t/top*l.plotH()
		col := gridColor
		if t == 0 {
			col = axisColor
		}
		fmt.Fprintf(&b, "\n"+`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="1"/>`, num(l.left), num(y), num(l.right), num(y), col)
		fmt.Fprintf(&b, "\n"+`<text x="%s" y="%s" text-anchor="end" dominant-baseline="middle">%s</text>`, num(l.left-6), num(y), esc(c.format(t)))
	}
	if c.YLabel != "" {
		cy := (l.top + l.base) / 2
		fmt.Fprintf(&b, "\n"+`<text x="12" y="%s" text-anchor="middle" transform="rotate(-90 12 %s)">%s</text>`, num(cy), num(cy), esc(c.YLabel))
	}
	b.WriteString("\n</g>")

	// The time axis.
	n := len(c.Times)
	bw := 0.0
	if n > 0 {
		bw = l.plotW() / float64(n)
	}
	b.WriteString("\n" + `<g class="x-axis" aria-hidden="true">`)
	for _, i := range c.timeTicks(l.plotW()) {
		x := l.left + float64(i)*bw
		if c.Kind == Line {
			x += bw / 2
		}
		fmt.Fprintf(&b, "\n"+`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="1"/>`, num(x), num(l.base), num(x), num(l.base+5), axisColor)
		fmt.Fprintf(&b, "\n"+`<text x="%s" y="%s" text-anchor="middle">%s</text>`, num(x), num(l.base+20), esc(c.timeLabel(c.Times[i])))
	}
	b.WriteString("\n</g>")

	// The series.
	switch c.Kind {
	case StackedBar:
		c.bars(&b, l, top, bw)
	default:
		c.lines(&b, l, top, bw)
	}

	// Thresholds.
	if len(c.Thresholds) > 0 {
		b.WriteString("\n" + `<g class="thresholds">`)
		for _, t := range c.Thresholds {
			col := t.Color
			if col == "" {
				col = ThresholdColor
			}
			y := l.base - t.Value/top*l.plotH()
			label := t.Label + " " + c.format(t.Value)
			fmt.Fprintf(&b, "\n"+`<g class="threshold" data-value="%s"><line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="1.5" stroke-dasharray="4 4"/>`,
				esc(trimZero(fmt.Sprint(t.Value))), num(l.left), num(y), num(l.right), num(y), col)
			fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="end" fill="%s" stroke="#ffffff" stroke-width="3" paint-order="stroke">%s</text></g>`,
				num(l.right-4), num(y-5), col, esc(label))
		}
		b.WriteString("\n</g>")
	}
	if n == 0 {
		fmt.Fprintf(&b, "\n"+`<text x="%s" y="%s" text-anchor="middle">No data</text>`, num((l.left+l.right)/2), num((l.top+l.base)/2))
	}
	b.WriteString("\n</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// legend is the series' names with their swatches, in rows that fit width.
func (c Chart) legend(width float64) (string, float64) {
	if len(c.Series) == 0 {
		return `<g class="legend"></g>`, 0
	}
	var b strings.Builder
	b.WriteString(`<g class="legend">`)
	x, y, rowH := 14.0, 16.0, 22.0
	for i, s := range c.Series {
		// Room for text enlarged at phone width (see the package doc).
		itemW := 22 + float64(len(s.Name))*charW*1.5 + 12
		if x+itemW > width && x > 14 {
			x, y = 14, y+rowH
		}
		col := c.color(i)
		if c.Kind == StackedBar {
			fmt.Fprintf(&b, "\n"+`<rect x="%s" y="%s" width="14" height="10" fill="%s"/>`, num(x), num(y-9), col)
		} else {
			fmt.Fprintf(&b, "\n"+`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="2.5"%s/>`, num(x), num(y-4), num(x+16), num(y-4), col, dashAttr(i))
		}
		fmt.Fprintf(&b, "\n"+`<text x="%s" y="%s">%s</text>`, num(x+22), num(y), esc(s.Name))
		x += itemW
	}
	b.WriteString("\n</g>")
	return b.String(), y
}

func dashAttr(i int) string {
	if d := dashes[i%len(dashes)]; d != "" {
		return ` stroke-dasharray="` + d + `"`
	}
	return ""
}

func (c Chart) lines(b *strings.Builder, l layout, top, bw float64) {
	for i, s := range c.Series {
		col := c.color(i)
		fmt.Fprintf(b, "\n"+`<g class="series" data-series="%s">`, esc(s.Name))
		pts := make([]string, len(s.Values))
		for j, v := range s.Values {
			pts[j] = num(l.left+bw*(float64(j)+0.5)) + "," + num(l.base-math.Max(v, 0)/top*l.plotH())
		}
		if len(pts) > 1 {
			fmt.Fprintf(b, "\n"+`<polyline points="%s" fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round"%s/>`, strings.Join(pts, " "), col, dashAttr(i))
		}
		if len(pts) <= 60 {
			for j, v := range s.Values {
				xy := strings.Split(pts[j], ",")
				fmt.Fprintf(b, "\n"+`<circle cx="%s" cy="%s" r="2.5" fill="%s"><title>%s %s: %s</title></circle>`,
					xy[0], xy[1], col, esc(s.Name), esc(c.Times[j].In(c.loc()).Format("Jan 2 15:04")), esc(c.format(v)))
			}
		}
		b.WriteString("\n</g>")
	}
}

func (c Chart) bars(b *strings.Builder, l layout, top, bw float64) {
	gap := math.Min(bw*0.2, 6)
	stack := make([]float64, len(c.Times))
	for i, s := range c.Series {
		col := c.color(i)
		// A white edge parts the stacked segments without colour.
		fmt.Fprintf(b, "\n"+`<g class="series" data-series="%s" fill="%s" stroke="#ffffff" stroke-width="0.75">`, esc(s.Name), col)
		for j, v := range s.Values {
			if v <= 0 {
				continue
			}
			y0 := l.base - stack[j]/top*l.plotH()
			stack[j] += v
			y1 := l.base - stack[j]/top*l.plotH()
			fmt.Fprintf(b, "\n"+`<rect x="%s" y="%s" width="%s" height="%s"><title>%s %s: %s</title></rect>`,
				num(l.left+bw*float64(j)+gap/2), num(y1), num(bw-gap), num(y0-y1),
				esc(s.Name), esc(c.Times[j].In(c.loc()).Format("Jan 2 15:04")), esc(c.format(v)))
		}
		b.WriteString("\n</g>")
	}
}

// niceScale returns a step (1, 2 or 5 times a power of ten) and a top (a
// multiple of step at or above max) for about n intervals.
func niceScale(max float64, n int) (step, top float64) {
	if max <= 0 {
		max = 1
	}
	step = niceNum(max/float64(n), true)
	// At most n+1 intervals: else the next nice step up.
	for math.Ceil(max/step-1e-9) > float64(n+1) {
		step = niceNum(step*1.01, false)
	}
	top = math.Ceil(max/step-1e-9) * step
	return step, top
}

// niceNum is Heckbert's "nice number" (Graphics Gems, 1990): the 1, 2, 5 or
// 10 times a power of ten nearest x (round) or at or above x.
func niceNum(x float64, round bool) float64 {
	exp := math.Floor(math.Log10(x))
	f := x / math.Pow(10, exp)
	var nf float64
	switch {
	case round && f < 1.5, !round && f <= 1:
		nf = 1
	case round && f < 3, !round && f <= 2:
		nf = 2
	case round && f < 7, !round && f <= 5:
		nf = 5
	default:
		nf = 10
	}
	return nf * math.Pow(10, exp)
}

func yTicks(step, top float64) []float64 {
	var out []float64
	for i := 0; ; i++ {
		v := float64(i) * step
		if v > top+step/2 {
			break
		}
		// Clean 0.30000000000000004 into 0.3.
		out = append(out, math.Round(v/step)*step)
	}
	return out
}

var tickSteps = []time.Duration{
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
	24 * time.Hour, 2 * 24 * time.Hour, 7 * 24 * time.Hour, 14 * 24 * time.Hour, 28 * 24 * time.Hour,
}

// timeTicks returns the buckets that get a label: those aligned to the
// smallest round interval (a multiple of the bucket size) whose labels fit.
func (c Chart) timeTicks(plotW float64) []int {
	n := len(c.Times)
	if n == 0 {
		return nil
	}
	maxLabels := int(plotW / 64)
	if maxLabels < 2 {
		maxLabels = 2
	}
	step := c.step()
	span := c.Times[n-1].Sub(c.Times[0]) + step
	for _, cand := range tickSteps {
		if cand < step || cand%step != 0 || int(span/cand) > maxLabels {
			continue
		}
		var out []int
		for i, t := range c.Times {
			if aligned(t.In(c.loc()), cand) {
				out = append(out, i)
			}
		}
		if len(out) > 0 && len(out) <= maxLabels {
			return out
		}
	}
	// Irregular buckets: every k-th.
	k := (n + maxLabels - 1) / maxLabels
	var out []int
	for i := 0; i < n; i += k {
		out = append(out, i)
	}
	return out
}

func aligned(t time.Time, d time.Duration) bool {
	if t.Second() != 0 || t.Nanosecond() != 0 {
		return false
	}
	mins := t.Hour()*60 + t.Minute()
	if d < 24*time.Hour {
		return mins%int(d/time.Minute) == 0
	}
	if mins != 0 {
		return false
	}
	days := int(d / (24 * time.Hour))
	switch days {
	case 1:
		return true
	case 7, 14, 28:
		return t.Weekday() == time.Monday && (days == 7 || (t.YearDay()/7)%(days/7) == 0)
	default:
		return (t.YearDay()-1)%days == 0
	}
}

func (c Chart) timeLabel(t time.Time) string {
	t = t.In(c.loc())
	if c.step() >= 24*time.Hour || (t.Hour() == 0 && t.Minute() == 0) {
		return t.Format("Jan 2")
	}
	return t.Format("15:04")
}
