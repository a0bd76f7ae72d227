package chart_test

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/namirasoft/email-sender/services/report/chart"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var t0 = time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)

func hours(n int) []time.Time {
	out := make([]time.Time, n)
	for i := range out {
		out[i] = t0.Add(time.Duration(i) * time.Hour)
	}
	return out
}

func days(n int) []time.Time {
	out := make([]time.Time, n)
	for i := range out {
		out[i] = t0.AddDate(0, 0, i)
	}
	return out
}

// outcomes is a day of hourly delivery outcomes, deterministic.
func outcomes() chart.Chart {
	n := 24
	names := []string{"delivered", "bounced", "complained", "failed"}
	series := make([]chart.Series, len(names))
	for i := range series {
		series[i].Name = names[i]
		series[i].Values = make([]float64, n)
	}
	for h := range n {
		load := 400 + 300*math.Sin(float64(h-6)/24*2*math.Pi)
		series[0].Values[h] = math.Round(load * 0.95)
		series[1].Values[h] = math.Round(load * 0.03)
		series[2].Values[h] = float64(h % 3)
		series[3].Values[h] = math.Round(load * 0.01)
	}
	return chart.Chart{
		ID: "outcomes", Title: "Delivery outcomes, last 24 hours", Kind: chart.StackedBar,
		Times: hours(n), Series: series, YLabel: "messages",
	}
}

func rates() chart.Chart {
	n := 14
	bounce := make([]float64, n)
	complaint := make([]float64, n)
	for d := range n {
		bounce[d] = 0.01 + 0.003*float64(d%5)
		complaint[d] = 0.0004 * float64(d%4)
	}
	return chart.Chart{
		ID: "rates", Title: "Bounce and complaint rates, last 14 days", Kind: chart.Line,
		Times: days(n), YLabel: "rate", Format: chart.Percent,
		Series:     []chart.Series{{Name: "bounce rate", Values: bounce, Color: chart.Palette["bounced"]}, {Name: "complaint rate", Values: complaint, Color: chart.Palette["complained"]}},
		Thresholds: []chart.Threshold{{Label: "Bounce review threshold", Value: 0.05}, {Label: "Complaint review threshold", Value: 0.001, Color: chart.Palette["complained"]}},
	}
}

func sent() chart.Chart {
	times := make([]time.Time, 60)
	v := make([]float64, 60)
	for i := range times {
		times[i] = t0.Add(time.Duration(i) * 5 * time.Minute)
		v[i] = float64(1000 + (i*137)%500)
	}
	return chart.Chart{ID: "sent", Title: "Sent per 5 minutes", Times: times, Series: []chart.Series{{Name: "sent", Values: v}}}
}

func empty() chart.Chart {
	return chart.Chart{ID: "empty", Title: "Nothing yet", Kind: chart.StackedBar, Series: []chart.Series{{Name: "sent"}}}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -run %s -update to accept):\n%s", path, t.Name(), firstDiff(string(want), string(got)))
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return "line " + strconv.Itoa(i+1) + ":\n  want " + x + "\n  got  " + y
		}
	}
	return ""
}

func TestGolden(t *testing.T) {
	for name, c := range map[string]chart.Chart{"outcomes": outcomes(), "rates": rates(), "sent": sent(), "empty": empty()} {
		t.Run(name, func(t *testing.T) {
			var svg, table bytes.Buffer
			if err := c.WriteSVG(&svg); err != nil {
				t.Fatal(err)
			}
			golden(t, name+".svg", svg.Bytes())
			if err := c.WriteTable(&table); err != nil {
				t.Fatal(err)
			}
			golden(t, name+".table.html", table.Bytes())
		})
	}
}

// node is a generic XML element tree.
type node struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Nodes   []node     `xml:",any"`
	Text    string     `xml:",chardata"`
}

func (n node) attr(name string) string {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func (n node) walk(f func(node)) {
	f(n)
	for _, c := range n.Nodes {
		c.walk(f)
	}
}

func parse(t *testing.T, c chart.Chart) node {
	t.Helper()
	var buf bytes.Buffer
	if err := c.WriteSVG(&buf); err != nil {
		t.Fatal(err)
	}
	var root node
	dec := xml.NewDecoder(&buf)
	dec.Strict = true
	if err := dec.Decode(&root); err != nil {
		t.Fatalf("not well-formed XML: %v", err)
	}
	return root
}

func TestSVGParses(t *testing.T) {
	for _, c := range []chart.Chart{outcomes(), rates(), sent(), empty()} {
		t.Run(c.ID, func(t *testing.T) {
			root := parse(t, c)
			if root.XMLName.Space != "http://www.w3.org/2000/svg" || root.XMLName.Local != "svg" {
				t.Fatalf("root %v", root.XMLName)
			}
			if root.attr("role") != "img" || root.attr("viewBox") != "0 0 640 280" || root.attr("width") != "100%" || root.attr("height") != "" {
				t.Fatalf("root attributes %v", root.Attrs)
			}
			// aria-labelledby names the <title> and the <desc>.
			ids := map[string]string{}
			root.walk(func(n node) {
				if id := n.attr("id"); id != "" {
					ids[id] = n.XMLName.Local
				}
			})
			for _, id := range strings.Fields(root.attr("aria-labelledby")) {
				if ids[id] != "title" && ids[id] != "desc" {
					t.Fatalf("aria-labelledby %q names %q", id, ids[id])
				}
			}
			if root.Nodes[0].XMLName.Local != "title" || strings.TrimSpace(root.Nodes[0].Text) != c.Title {
				t.Fatalf("first child %v %q", root.Nodes[0].XMLName, root.Nodes[0].Text)
			}
			if root.Nodes[1].XMLName.Local != "desc" || root.Nodes[1].Text == "" {
				t.Fatalf("no desc")
			}
			// Everything drawn lies inside the viewBox.
			root.walk(func(n node) {
				for _, a := range []string{"x", "y", "x1", "x2", "y1", "y2", "cx", "cy"} {
					if v := n.attr(a); v != "" {
						f, err := strconv.ParseFloat(v, 64)
						if err != nil || f < 0 || f > 640 || (strings.HasPrefix(a, "y") || a == "cy") && f > 280 {
							t.Errorf("<%s %s=%q> outside the viewBox", n.XMLName.Local, a, v)
						}
					}
				}
			})
		})
	}
}

func TestStackedBarsAddUp(t *testing.T) {
	c := outcomes()
	root := parse(t, c)
	rects := map[string]int{}
	height := map[string]float64{}
	root.walk(func(n node) {
		if n.XMLName.Local == "g" && n.attr("class") == "series" {
			for _, r := range n.Nodes {
				if r.XMLName.Local == "rect" {
					rects[n.attr("data-series")]++
					h, _ := strconv.ParseFloat(r.attr("height"), 64)
					height[n.attr("data-series")] += h
				}
			}
		}
	})
	if rects["delivered"] != 24 || rects["failed"] != 24 {
		t.Fatalf("bars %v", rects)
	}
	// complained is 0 every third hour: no empty bars drawn.
	if rects["complained"] != 16 {
		t.Fatalf("complained bars %d", rects["complained"])
	}
	// Heights are proportional to totals.
	total := func(name string) float64 {
		for _, s := range c.Series {
			if s.Name == name {
				sum := 0.0
				for _, v := range s.Values {
					sum += v
				}
				return sum
			}
		}
		return 0
	}
	r1 := height["delivered"] / total("delivered")
	r2 := height["failed"] / total("failed")
	if math.Abs(r1-r2)/r1 > 0.02 {
		t.Fatalf("scale differs: %v vs %v", r1, r2)
	}
}

func TestThresholdAboveData(t *testing.T) {
	root := parse(t, rates())
	var labels []string
	root.walk(func(n node) {
		if n.XMLName.Local == "g" && n.attr("class") == "threshold" {
			for _, c := range n.Nodes {
				if c.XMLName.Local == "text" {
					labels = append(labels, c.Text)
				}
			}
		}
	})
	if len(labels) != 2 || labels[0] != "Bounce review threshold 5%" || labels[1] != "Complaint review threshold 0.1%" {
		t.Fatalf("threshold labels %q", labels)
	}
	// The y axis reaches the 5% threshold though the data stay under 2.3%.
	var ticks []string
	root.walk(func(n node) {
		if n.XMLName.Local == "g" && n.attr("class") == "y-axis" {
			for _, c := range n.Nodes {
				if c.XMLName.Local == "text" {
					ticks = append(ticks, c.Text)
				}
			}
		}
	})
	if strings.Join(ticks, " ") != "0% 1% 2% 3% 4% 5% rate" {
		t.Fatalf("y ticks %q", ticks)
	}
}

func TestTimeTicks(t *testing.T) {
	labels := func(c chart.Chart) string {
		var out []string
		parse(t, c).walk(func(n node) {
			if n.XMLName.Local == "g" && n.attr("class") == "x-axis" {
				for _, c := range n.Nodes {
					if c.XMLName.Local == "text" {
						out = append(out, c.Text)
					}
				}
			}
		})
		return strings.Join(out, " ")
	}
	if got := labels(outcomes()); got != "Nov 29 03:00 06:00 09:00 12:00 15:00 18:00 21:00" {
		t.Errorf("hourly: %s", got)
	}
	if got := labels(rates()); got != "Nov 29 Dec 1 Dec 3 Dec 5 Dec 7 Dec 9 Dec 11" {
		t.Errorf("daily: %s", got)
	}
	if got := labels(sent()); got != "Nov 29 01:00 02:00 03:00 04:00" {
		t.Errorf("5 minutes: %s", got)
	}
}

func TestNiceTicks(t *testing.T) {
	for _, tc := range []struct {
		max  float64
		want string
	}{
		{0, "0 0.2 0.4 0.6 0.8 1"},
		{7, "0 2 4 6 8"},
		{0.023, "0 0.005 0.01 0.015 0.02 0.025"},
		{10, "0 2 4 6 8 10"},
		{93, "0 20 40 60 80 100"},
		{1234, "0 500 1k 1.5k"},
		{48000, "0 10k 20k 30k 40k 50k"},
		{3.1e6, "0 1M 2M 3M 4M"},
	} {
		c := chart.Chart{ID: "n", Title: "t", Times: hours(1), Series: []chart.Series{{Name: "x", Values: []float64{tc.max}}}}
		var ticks []string
		parse(t, c).walk(func(n node) {
			if n.XMLName.Local == "g" && n.attr("class") == "y-axis" {
				for _, c := range n.Nodes {
					if c.XMLName.Local == "text" {
						ticks = append(ticks, c.Text)
					}
				}
			}
		})
		if got := strings.Join(ticks, " "); got != tc.want {
			t.Errorf("max %v: ticks %q, want %q", tc.max, got, tc.want)
		}
	}
}

func TestEscaping(t *testing.T) {
	c := chart.Chart{ID: "x", Title: `<script>alert("t")</script>`, Times: hours(2),
		Series: []chart.Series{{Name: `a&b <c> "d"`, Values: []float64{1, 2}}}}
	var buf bytes.Buffer
	if err := c.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "<script") || strings.Contains(buf.String(), "<c>") {
		t.Fatalf("not escaped:\n%s", buf.String())
	}
	root := parse(t, c)
	if root.Nodes[0].Text != c.Title {
		t.Fatalf("title %q", root.Nodes[0].Text)
	}
}

func TestShapeErrors(t *testing.T) {
	c := chart.Chart{Times: hours(3), Series: []chart.Series{{Name: "x", Values: []float64{1, 2}}}}
	if err := c.WriteSVG(&bytes.Buffer{}); !errors.Is(err, chart.ErrShape) {
		t.Fatalf("short series: %v", err)
	}
	c = chart.Chart{Times: hours(2), Series: []chart.Series{{Name: "x", Values: []float64{1, math.NaN()}}}}
	if err := c.WriteSVG(&bytes.Buffer{}); err == nil {
		t.Fatal("NaN accepted")
	}
	c = chart.Chart{Times: []time.Time{t0, t0}, Series: []chart.Series{{Name: "x", Values: []float64{1, 2}}}}
	if err := c.WriteSVG(&bytes.Buffer{}); err == nil {
		t.Fatal("repeated time accepted")
	}
}

func TestDescription(t *testing.T) {
	got := outcomes().Description()
	want := "Stacked bar chart of delivered, bounced, complained, failed per hour, 2026-11-29 00:00 UTC to 2026-11-30 00:00 UTC."
	if !strings.HasPrefix(got, want) || !strings.Contains(got, "delivered: total ") {
		t.Fatalf("desc %q", got)
	}
	if got := empty().Description(); got != "Stacked bar chart of sent. No data." {
		t.Fatalf("empty desc %q", got)
	}
}

// TestContrast checks every palette colour against white: at least 4.5:1,
// so the colours also pass for the text of the threshold labels (WCAG 1.4.3;
// graphics need 3:1, 1.4.11).
func TestContrast(t *testing.T) {
	colors := []string{chart.ThresholdColor}
	for _, c := range chart.Palette {
		colors = append(colors, c)
	}
	colors = append(colors, chart.Fallback...)
	for _, c := range colors {
		if r := contrast(t, c, "#ffffff"); r < 4.5 {
			t.Errorf("%s on white: %.2f:1", c, r)
		}
	}
}

func contrast(t *testing.T, a, b string) float64 {
	la, lb := luminance(t, a), luminance(t, b)
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05)
}

func luminance(t *testing.T, hex string) float64 {
	v, err := strconv.ParseUint(strings.TrimPrefix(hex, "#"), 16, 32)
	if err != nil || len(hex) != 7 {
		t.Fatalf("colour %q", hex)
	}
	ch := func(c uint64) float64 {
		s := float64(c) / 255
		if s <= 0.04045 {
			return s / 12.92
		}
		return math.Pow((s+0.055)/1.055, 2.4)
	}
	return 0.2126*ch(v>>16&0xff) + 0.7152*ch(v>>8&0xff) + 0.0722*ch(v&0xff)
}

func TestFormats(t *testing.T) {
	for _, tc := range []struct {
		f    func(float64) string
		v    float64
		want string
	}{
		{chart.Count, 0, "0"}, {chart.Count, 950, "950"}, {chart.Count, 1250, "1.2k"}, {chart.Count, 3.4e6, "3.4M"}, {chart.Count, 0.005, "0.005"},
		{chart.Percent, 0.05, "5%"}, {chart.Percent, 0.001, "0.1%"}, {chart.Percent, 0.0234, "2.34%"},
		{chart.Seconds, 0, "0"}, {chart.Seconds, 0.85, "850ms"}, {chart.Seconds, 1.5, "1.5s"}, {chart.Seconds, 150, "2.5m"}, {chart.Seconds, 4320, "72m"}, {chart.Seconds, 9000, "2.5h"},
	} {
		if got := tc.f(tc.v); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.v, got, tc.want)
		}
	}
}
