package latency

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBucketAndUpper(t *testing.T) {
	for _, s := range []float64{0, 0.001, 0.25, 1, 2.5, 60, 3600} {
		b := Bucket(s)
		require.GreaterOrEqual(t, Upper(b), s, "%v in bucket %d", s, b)
		if b > 0 {
			require.Less(t, Upper(b-1), s+1e-9, "%v above bucket %d", s, b-1)
		}
		require.LessOrEqual(t, Upper(b), s*1.19+0.002, "resolution at %v", s)
	}
}

func TestPercentiles(t *testing.T) {
	_, ok := Percentiles(nil, 0.5)
	require.False(t, ok)
	// 90 at 1 s, 9 at 10 s, 1 at 100 s.
	hist := map[int]int64{Bucket(1): 90, Bucket(10): 9, Bucket(100): 1}
	got, ok := Percentiles(hist, 0.5, 0.95, 0.99, 1)
	require.True(t, ok)
	require.Equal(t, []float64{Upper(Bucket(1)), Upper(Bucket(10)), Upper(Bucket(10)), Upper(Bucket(100))}, got)
}
