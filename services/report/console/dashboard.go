package console

import (
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/report/chart"
)

// dashboardStatuses are the outcomes the dashboard charts, in stacking order.
var dashboardStatuses = []string{"SENT", "DELIVERED", "BOUNCED", "COMPLAINED", "FAILED"}

type dashboardData struct {
	Charts     []template.HTML
	Totals     []total
	Reputation []*emailsenderv1.ProviderReputation
	Thresholds Thresholds
	// Latency: each kind's percentiles over the 24 hours (latency.go).
	Latency []latencySummary
}

type total struct {
	Name  string
	Count int64
}

// Thresholds are the reputation guard's rates (REPUTATION_*), drawn on the
// rate charts.
type Thresholds struct {
	WarnBounce, PauseBounce, WarnComplaint, PauseComplaint float64
}

// dashboard charts the last 24 hours by hour from GetStats: the outcomes, the
// messages per provider, the bounce and complaint rates of each hour's
// messages against the reputation thresholds, and each provider's standing.
func (c *Console) dashboard(w http.ResponseWriter, r *http.Request, sess *Session) {
	ctx, err := c.call(r.Context(), sess, emailsenderv1.ReportService_GetStats_FullMethodName)
	if err != nil {
		c.failCall(w, r, sess, "GetStats", err)
		return
	}
	end := c.now().UTC()
	start := end.Truncate(time.Hour).Add(time.Hour - 24*time.Hour)
	resp, err := c.deps.Report.GetStats(ctx, &emailsenderv1.GetStatsRequest{
		Start: timestamppb.New(start), End: timestamppb.New(end), Bucket: durationpb.New(time.Hour),
	})
	if err != nil {
		c.failCall(w, r, sess, "GetStats", err)
		return
	}
	times := make([]time.Time, 24)
	for i := range times {
		times[i] = start.Add(time.Duration(i) * time.Hour)
	}
	slot := func(t time.Time) int { return int(t.Sub(start) / time.Hour) }
	byStatus := map[string][]float64{}
	for _, s := range dashboardStatuses {
		byStatus[s] = make([]float64, 24)
	}
	all := make([]float64, 24)
	byProvider := map[string][]float64{}
	for _, b := range resp.GetBuckets() {
		i := slot(b.GetStart().AsTime())
		if i < 0 || i >= 24 {
			continue
		}
		if byProvider[b.GetProviderId()] == nil {
			byProvider[b.GetProviderId()] = make([]float64, 24)
		}
		for name, n := range b.GetCounts() {
			if v, ok := byStatus[name]; ok {
				v[i] += float64(n)
			}
			all[i] += float64(n)
			byProvider[b.GetProviderId()][i] += float64(n)
		}
	}
	th := c.deps.Thresholds
	outcomes := chart.Chart{ID: "outcomes", Title: "Messages by outcome, per hour (last 24 hours, UTC)", Kind: chart.StackedBar, Times: times, YLabel: "messages"}
	for _, s := range dashboardStatuses {
		outcomes.Series = append(outcomes.Series, chart.Series{Name: strings.ToLower(s), Values: byStatus[s]})
	}
	providers := chart.Chart{ID: "providers", Title: "Messages per provider configuration, per hour", Kind: chart.Line, Times: times, YLabel: "messages"}
	ids := make([]string, 0, len(byProvider))
	for id := range byProvider {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		providers.Series = append(providers.Series, chart.Series{Name: shortID(id), Values: byProvider[id]})
	}
	rate := func(status string) []float64 {
		out := make([]float64, 24)
		for i := range out {
			sent := byStatus["SENT"][i] + byStatus["DELIVERED"][i] + byStatus["BOUNCED"][i] + byStatus["COMPLAINED"][i]
			if sent > 0 {
				out[i] = byStatus[status][i] / sent
			}
		}
		return out
	}
	bounces := chart.Chart{ID: "bounce-rate", Title: "Bounce rate of each hour's messages, against the reputation thresholds", Kind: chart.Line, Times: times,
		YLabel: "rate", Format: chart.Percent, Series: []chart.Series{{Name: "bounced", Values: rate("BOUNCED")}}}
	complaints := chart.Chart{ID: "complaint-rate", Title: "Complaint rate of each hour's messages, against the reputation thresholds", Kind: chart.Line, Times: times,
		YLabel: "rate", Format: chart.Percent, Series: []chart.Series{{Name: "complained", Values: rate("COMPLAINED")}}}
	if th.WarnBounce > 0 {
		bounces.Thresholds = append(bounces.Thresholds, chart.Threshold{Label: "warning", Value: th.WarnBounce, Color: "#6b4e00"})
	}
	if th.PauseBounce > 0 {
		bounces.Thresholds = append(bounces.Thresholds, chart.Threshold{Label: "pause", Value: th.PauseBounce})
	}
	if th.WarnComplaint > 0 {
		complaints.Thresholds = append(complaints.Thresholds, chart.Threshold{Label: "warning", Value: th.WarnComplaint, Color: "#6b4e00"})
	}
	if th.PauseComplaint > 0 {
		complaints.Thresholds = append(complaints.Thresholds, chart.Threshold{Label: "pause", Value: th.PauseComplaint})
	}
	latencyCharts, latencySums, err := c.latencyCharts(r.Context(), sess.AccountID, times)
	if err != nil {
		c.failCall(w, r, sess, "latency", err)
		return
	}
	d := dashboardData{Reputation: resp.GetReputation(), Thresholds: th, Latency: latencySums}
	for _, ch := range append([]chart.Chart{outcomes, providers, bounces, complaints}, latencyCharts...) {
		if len(ch.Series) == 0 {
			continue
		}
		var b strings.Builder
		if err := ch.WriteHTML(&b); err != nil {
			c.failCall(w, r, sess, "chart", fmt.Errorf("chart %s: %w", ch.ID, err))
			return
		}
		d.Charts = append(d.Charts, template.HTML(b.String())) //nolint:gosec // package chart escapes every text it writes
	}
	for _, s := range dashboardStatuses {
		d.Totals = append(d.Totals, total{Name: strings.ToLower(s), Count: resp.GetTotals()[s]})
	}
	c.render(w, r, http.StatusOK, "dashboard", page{Title: "Dashboard", Session: sess, Data: d})
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
