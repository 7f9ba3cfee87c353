package engine_test

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fleet-next/fleet/engine"
	"github.com/fleet-next/fleet/engine/enginetest"
	"github.com/fleet-next/fleet/unit"
)

// The tests below run the engine's loop inside a synctest bubble, on
// enginetest.Memory (which passes the same store contract as the
// registry): the reconcile ticks, the debounce and the loss grace pass on
// the bubble's fake clock, and synctest.Wait returns once the engine has
// done all it can do at that instant.

// tick is the reconcile interval of these tests.
const tick = time.Second

// roundLog records an engine's reconcile rounds.
type roundLog struct {
	mu     sync.Mutex // guards rounds
	rounds []engine.Round
}

func (r *roundLog) Leading(time.Time) {}

func (r *roundLog) Reconciled(x engine.Round) {
	r.mu.Lock()
	r.rounds = append(r.rounds, x)
	r.mu.Unlock()
}

// count is how many rounds the engine has made.
func (r *roundLog) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.rounds)
}

// writes returns the changes of each round from the from-th on that wrote
// something.
func (r *roundLog) writes(from int) [][]engine.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]engine.Change
	for _, x := range r.rounds[from:] {
		if x.Applied != nil {
			out = append(out, x.Applied)
		}
	}
	return out
}

// startEngine runs the engine of machine id on c until the test ends.
func startEngine(t *testing.T, c *enginetest.Memory, id string, cfg engine.Config) (*engine.Engine, *roundLog) {
	t.Helper()
	log := &roundLog{}
	cfg.MachineID, cfg.Metrics = id, log
	e := engine.New(c.Store(id), cfg)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return e, log
}

// newCluster returns a cluster of the given live machines and launched units.
func newCluster(t *testing.T, machines []string, units ...string) *enginetest.Memory {
	t.Helper()
	c := enginetest.NewMemory()
	for _, id := range machines {
		if err := c.Join(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range units {
		if err := c.CreateUnit(t.Context(), enginetest.Unit(name, unit.StateLaunched)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// placed returns where each unit is placed (unit name -> machine IDs).
func placed(t *testing.T, c *enginetest.Memory) map[string][]string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s, _ := c.Store("").Follow(ctx).Snapshot()
	out := make(map[string][]string, len(s.Placements))
	for name, pm := range s.Placements {
		out[name] = slices.Sorted(maps.Keys(pm))
	}
	return out
}

// perMachine counts placements by machine.
func perMachine(p map[string][]string) map[string]int {
	n := make(map[string]int)
	for _, ms := range p {
		for _, m := range ms {
			n[m]++
		}
	}
	return n
}

func TestEngineRestsUntilSomethingChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, []string{"m1", "m2"}, "a.service", "b.service", "c.service", "d.service")
		e, log := startEngine(t, c, "m1", engine.Config{ReconcileInterval: tick, LossGrace: time.Minute})
		time.Sleep(tick)
		synctest.Wait()
		if !e.Leading() {
			t.Fatal("the only engine does not lead")
		}
		if n := perMachine(placed(t, c)); n["m1"] != 2 || n["m2"] != 2 {
			t.Fatalf("placements per machine = %v, want 2 and 2", n)
		}

		// With nothing changing, level-triggered ticks do not plan again.
		before := log.count()
		time.Sleep(20 * tick)
		synctest.Wait()
		if after := log.count(); after != before {
			t.Errorf("%d reconcile rounds over 20 idle ticks, want none", after-before)
		}

		// A change wakes it at once, well inside a tick.
		if err := c.SetDesiredState(t.Context(), "a.service", unit.StateInactive); err != nil {
			t.Fatal(err)
		}
		time.Sleep(tick / 10)
		synctest.Wait()
		if p := placed(t, c); len(p["a.service"]) != 0 {
			t.Errorf("a.service still placed on %v a tenth of a tick after it was stopped", p["a.service"])
		}
	})
}

func TestEngineDebounceWritesABurstOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, []string{"m1"})
		// No level-triggered rounds in this test: only changes wake the engine.
		_, log := startEngine(t, c, "m1", engine.Config{ReconcileInterval: time.Hour, Debounce: 100 * time.Millisecond})
		time.Sleep(tick)
		synctest.Wait()
		before := log.count()
		for _, name := range []string{"a.service", "b.service", "c.service"} {
			if err := c.CreateUnit(t.Context(), enginetest.Unit(name, unit.StateLaunched)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond) // well inside the debounce
		}
		time.Sleep(tick)
		synctest.Wait()
		writes := log.writes(before)
		if len(writes) != 1 || len(writes[0]) != 3 {
			t.Fatalf("the burst was written as %v, want one write of 3 placements", writes)
		}
		if p := placed(t, c); len(p) != 3 {
			t.Errorf("placements = %v, want the 3 units", p)
		}
	})
}

func TestEngineMovesUnitsOfAnAbsentMachineAfterTheGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const grace = 10 * tick
		c := newCluster(t, []string{"m1", "m2"}, "a.service", "b.service", "c.service", "d.service")
		startEngine(t, c, "m1", engine.Config{ReconcileInterval: tick, LossGrace: grace})
		time.Sleep(tick)
		synctest.Wait()
		before := placed(t, c)
		if n := perMachine(before); n["m2"] != 2 {
			t.Fatalf("placements per machine = %v, want 2 on m2", n)
		}

		if err := c.Leave(t.Context(), "m2"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(grace - tick)
		synctest.Wait()
		if p := placed(t, c); !maps.EqualFunc(p, before, slices.Equal) {
			t.Fatalf("placements %v changed to %v within the loss grace", before, p)
		}
		time.Sleep(2 * tick)
		synctest.Wait()
		if n := perMachine(placed(t, c)); n["m1"] != 4 || n["m2"] != 0 {
			t.Errorf("placements per machine after the grace = %v, want all 4 on m1", n)
		}
	})
}

func TestEngineKeepsUnitsOfAMachineBackWithinTheGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const grace = 10 * tick
		c := newCluster(t, []string{"m1", "m2"}, "a.service", "b.service", "c.service", "d.service")
		_, log := startEngine(t, c, "m1", engine.Config{ReconcileInterval: tick, LossGrace: grace})
		time.Sleep(tick)
		synctest.Wait()
		before, rounds := placed(t, c), log.count()

		if err := c.Leave(t.Context(), "m2"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(grace / 2)
		if err := c.Join(t.Context(), "m2"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * grace)
		synctest.Wait()
		if p := placed(t, c); !maps.EqualFunc(p, before, slices.Equal) {
			t.Errorf("placements %v changed to %v though m2 came back within the grace", before, p)
		}
		if w := log.writes(rounds); len(w) != 0 {
			t.Errorf("the engine wrote %v while m2 was briefly away", w)
		}
	})
}

func TestEngineHandsOverWhenTheLeadersMachineLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, []string{"m1", "m2"})
		cfg := engine.Config{ReconcileInterval: tick, LossGrace: time.Minute}
		e1, _ := startEngine(t, c, "m1", cfg)
		time.Sleep(tick)
		synctest.Wait()
		e2, _ := startEngine(t, c, "m2", cfg)
		time.Sleep(tick)
		synctest.Wait()
		if !e1.Leading() || e2.Leading() {
			t.Fatalf("leading: m1 %v, m2 %v; want m1 only", e1.Leading(), e2.Leading())
		}

		if err := c.Leave(t.Context(), "m1"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(tick)
		synctest.Wait()
		if e1.Leading() || !e2.Leading() {
			t.Fatalf("leading after m1 left: m1 %v, m2 %v; want m2 only", e1.Leading(), e2.Leading())
		}
		if err := c.CreateUnit(t.Context(), enginetest.Unit("a.service", unit.StateLaunched)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(tick)
		synctest.Wait()
		if p := placed(t, c); !slices.Equal(p["a.service"], []string{"m2"}) {
			t.Errorf("a.service placed on %v, want m2 by its new leader", p["a.service"])
		}
	})
}
