package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/unit"
)

// benchUnitText is the unit file every benchmark unit uses, with its name
// as description so that every unit has its own contents and hash. extra
// adds lines to [X-Fleet].
func benchUnitText(name, extra string) string {
	s := fmt.Sprintf("[Unit]\nDescription=benchmark unit %s\n\n[Service]\nExecStart=/bin/sleep infinity\n", name)
	if extra != "" {
		s += "\n[X-Fleet]\n" + extra + "\n"
	}
	return s
}

// benchUnit returns the stored form of a benchmark unit.
func benchUnit(name, extra string, desired unit.FleetState) (unit.Unit, error) {
	f, err := unit.Parse(benchUnitText(name, extra))
	if err != nil {
		return unit.Unit{}, fmt.Errorf("parse unit %s: %w", name, err)
	}
	c := f.Serialize()
	return unit.Unit{Name: name, Content: c, Hash: unit.HashOf(c), Desired: desired}, nil
}

// unitNames returns n names "<prefix>-00000.service", ...
func unitNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%05d.service", prefix, i)
	}
	return out
}

// submitUnits stores one launched unit per name with registry.CreateUnit
// (one put each) from workers goroutines and returns, per name, when its
// put was acknowledged: the moment the unit was accepted.
func submitUnits(ctx context.Context, reg *registry.Etcd, names []string, extra string, workers int) ([]time.Time, error) {
	accepted := make([]time.Time, len(names))
	var next atomic.Int64
	var (
		mu       sync.Mutex // guards firstErr
		firstErr error
	)
	var wg sync.WaitGroup
	for range max(1, workers) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(names) || ctx.Err() != nil {
					return
				}
				u, err := benchUnit(names[i], extra, unit.StateLaunched)
				if err == nil {
					err = reg.CreateUnit(ctx, u)
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				accepted[i] = time.Now()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("submit units: %w", firstErr)
	}
	return accepted, ctx.Err()
}
