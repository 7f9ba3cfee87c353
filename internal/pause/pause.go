package pause

import (
	"context"
	"time"
)

// For waits for d, or until ctx ends; then it returns ctx.Err() (nil if
// the whole of d passed with ctx alive).
func For(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return ctx.Err()
	}
}
