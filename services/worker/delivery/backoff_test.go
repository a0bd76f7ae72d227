package delivery

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	base, max := time.Second, 10*time.Second
	tests := []struct {
		attempt int
		rnd     float64
		want    time.Duration
	}{
		{1, 1, time.Second},
		{1, 0, 500 * time.Millisecond},
		{2, 1, 2 * time.Second},
		{3, 1, 4 * time.Second},
		{4, 1, 8 * time.Second},
		{5, 1, 10 * time.Second},
		{50, 1, 10 * time.Second},
		{50, 0, 5 * time.Second},
		{0, 1, time.Second},
	}
	for _, tt := range tests {
		got := backoff(tt.attempt, base, max, func() float64 { return tt.rnd })
		if got != tt.want {
			t.Errorf("backoff(%d, rnd=%v) = %v, want %v", tt.attempt, tt.rnd, got, tt.want)
		}
	}
}
