package console

import (
	"context"
	"fmt"
	"time"

	"github.com/namirasoft/email-sender/services/report/chart"
	"github.com/namirasoft/email-sender/services/report/latency"
)

// latencySummary is one kind's percentiles over the whole range.
type latencySummary struct {
	Name          string
	Count         int64
	P50, P95, P99 string
}

// latencyKinds are the dashboard's latency charts, in order.
var latencyKinds = []struct {
	kind  int16
	id    string
	name  string
	title string
}{
	{latency.Sent, "latency-sent", "accepted → sent", "Time from acceptance to sent (the provider took it): p50, p95 and p99 of each hour's messages"},
	{latency.Delivered, "latency-delivered", "accepted → delivered", "Time from acceptance to delivered (the recipient's server confirmed): p50, p95 and p99 of each hour's messages"},
}

// latencyCharts reads the account's latency histograms of the hours from
// times[0] (message_latency: a few dozen rows an hour, whatever the number
// of messages) and charts each kind's p50, p95 and p99 per hour; kinds
// without any count are left out.
func (c *Console) latencyCharts(ctx context.Context, account string, times []time.Time) ([]chart.Chart, []latencySummary, error) {
	start := times[0]
	end := times[len(times)-1].Add(time.Hour)
	rows, err := c.deps.Pool.Query(ctx, `
		SELECT hour, kind, bucket, sum(count)::bigint FROM message_latency
		WHERE account_id = $1 AND hour >= $2 AND hour < $3 GROUP BY 1, 2, 3`, account, start, end)
	if err != nil {
		return nil, nil, fmt.Errorf("read latency: %w", err)
	}
	defer rows.Close()
	type key struct {
		slot int
		kind int16
	}
	hists := map[key]map[int]int64{}
	whole := map[int16]map[int]int64{}
	for rows.Next() {
		var (
			hour   time.Time
			kind   int16
			bucket int16
			n      int64
		)
		if err := rows.Scan(&hour, &kind, &bucket, &n); err != nil {
			return nil, nil, fmt.Errorf("read latency: %w", err)
		}
		k := key{int(hour.Sub(start) / time.Hour), kind}
		if k.slot < 0 || k.slot >= len(times) {
			continue
		}
		if hists[k] == nil {
			hists[k] = map[int]int64{}
		}
		hists[k][int(bucket)] += n
		if whole[kind] == nil {
			whole[kind] = map[int]int64{}
		}
		whole[kind][int(bucket)] += n
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read latency: %w", err)
	}
	var (
		charts []chart.Chart
		sums   []latencySummary
	)
	for _, lk := range latencyKinds {
		all, ok := latency.Percentiles(whole[lk.kind], 0.5, 0.95, 0.99)
		if !ok {
			continue
		}
		var count int64
		for _, n := range whole[lk.kind] {
			count += n
		}
		sums = append(sums, latencySummary{Name: lk.name, Count: count,
			P50: chart.Seconds(all[0]), P95: chart.Seconds(all[1]), P99: chart.Seconds(all[2])})
		p50, p95, p99 := make([]float64, len(times)), make([]float64, len(times)), make([]float64, len(times))
		for i := range times {
			if ps, ok := latency.Percentiles(hists[key{i, lk.kind}], 0.5, 0.95, 0.99); ok {
				p50[i], p95[i], p99[i] = ps[0], ps[1], ps[2]
			}
		}
		charts = append(charts, chart.Chart{ID: lk.id, Title: lk.title, Kind: chart.Line, Times: times, YLabel: "time",
			Format: chart.Seconds, Series: []chart.Series{{Name: "p50", Values: p50}, {Name: "p95", Values: p95}, {Name: "p99", Values: p99}}})
	}
	return charts, sums, nil
}
