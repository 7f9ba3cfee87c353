package bench

import (
	"math"
	"slices"
	"time"
)

// latencies summarises a set of durations.
type latencies struct {
	N                  int
	P50, P90, P99, Max time.Duration
}

// summarize computes nearest-rank percentiles of ds.
func summarize(ds []time.Duration) latencies {
	if len(ds) == 0 {
		return latencies{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return latencies{N: len(s), P50: rank(0.50), P90: rank(0.90), P99: rank(0.99), Max: s[len(s)-1]}
}
