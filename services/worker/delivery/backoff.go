package delivery

import (
	"math/rand/v2"
	"time"
)

// backoff returns the delay before attempt+1: base*2^(attempt-1) capped at max,
// with jitter in [50%, 100%] so that retries of a burst spread out.
func backoff(attempt int, base, max time.Duration, rnd func() float64) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	if rnd == nil {
		rnd = rand.Float64
	}
	return time.Duration(float64(d) * (0.5 + rnd()/2))
}
