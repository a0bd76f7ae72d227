// Package latency is the delivery latency histogram the report keeps in
// message_latency (migration 0018) and the console's dashboard reads: how
// long after acceptance each SENT and DELIVERED event happened, in buckets
// of a quarter of a doubling of milliseconds, so that percentiles of any
// number of messages come from a few dozen counts.
package latency

import (
	"math"
	"sort"
)

// Kinds (message_latency.kind).
const (
	Sent      = 1 // accepted → SENT
	Delivered = 2 // accepted → DELIVERED
)

// BucketsPerDoubling is the resolution: bucket b holds latencies of
// [2^(b/4) - 1, 2^((b+1)/4) - 1) milliseconds, so a percentile is known
// within 19%.
const BucketsPerDoubling = 4

// Upper is the upper bound of bucket b, in seconds.
func Upper(b int) float64 {
	return (math.Pow(2, float64(b+1)/BucketsPerDoubling) - 1) / 1000
}

// Bucket is the bucket of a latency in seconds (as the report's SQL computes it).
func Bucket(seconds float64) int {
	ms := math.Max(0, seconds*1000)
	return int(math.Floor(BucketsPerDoubling * math.Log2(1+ms)))
}

// Percentiles returns, for each q in qs (0 < q <= 1), the upper bound in
// seconds of the bucket that holds the q-th latency of hist (bucket →
// count); ok false when hist is empty.
func Percentiles(hist map[int]int64, qs ...float64) (out []float64, ok bool) {
	var total int64
	buckets := make([]int, 0, len(hist))
	for b, n := range hist {
		if n > 0 {
			total += n
			buckets = append(buckets, b)
		}
	}
	if total == 0 {
		return make([]float64, len(qs)), false
	}
	sort.Ints(buckets)
	out = make([]float64, len(qs))
	for i, q := range qs {
		rank := int64(math.Ceil(q * float64(total)))
		if rank < 1 {
			rank = 1
		}
		var seen int64
		for _, b := range buckets {
			seen += hist[b]
			if seen >= rank {
				out[i] = Upper(b)
				break
			}
		}
	}
	return out, true
}
