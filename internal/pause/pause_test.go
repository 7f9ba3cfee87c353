package pause

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestForWaitsTheWholeDuration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if err := For(t.Context(), time.Hour); err != nil {
			t.Errorf("For = %v, want nil", err)
		}
		if waited := time.Since(start); waited != time.Hour {
			t.Errorf("waited %v, want 1h", waited)
		}
	})
}

func TestForEndsWithTheContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		start := time.Now()
		if err := For(ctx, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("For = %v, want the context's error", err)
		}
		if waited := time.Since(start); waited != time.Minute {
			t.Errorf("waited %v, want the minute the context lived", waited)
		}
	})
}
