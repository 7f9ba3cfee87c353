// Package retry is the one retry policy of fleetd: jittered exponential
// backoff (github.com/cenkalti/backoff), so that a thousand hosts that
// failed together after an outage do not retry in lockstep. Waiting is
// internal/pause's.
package retry

import (
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Jitter is the randomization factor of every backoff: each wait is drawn
// from [1-Jitter, 1+Jitter] times the current interval.
const Jitter = 0.5

// Backoff returns a jittered exponential backoff doubling from initial up
// to max. It is not safe for concurrent use; Reset it after a success.
func Backoff(initial, max time.Duration) *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{
		InitialInterval:     initial,
		RandomizationFactor: Jitter,
		Multiplier:          2,
		MaxInterval:         max,
	}
}
