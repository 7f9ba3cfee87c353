package engine_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/fleet-next/fleet/engine"
	"github.com/fleet-next/fleet/engine/enginestore"
	"github.com/fleet-next/fleet/engine/enginetest"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/registry/registrytest"
	"github.com/fleet-next/fleet/unit"
)

// fixedLease is a machine that holds one lease throughout.
type fixedLease registry.LeaseID

func (l fixedLease) Lease() registry.LeaseID { return registry.LeaseID(l) }

// TestEngineOnTheRegistry runs the engine on the real store (its timing is
// tested in loop_test.go, on a fake clock): it leads, spreads units over
// the machines, and a change makes it plan again.
func TestEngineOnTheRegistry(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	reg := registrytest.New(t)
	var leases []registry.LeaseID
	for _, id := range []string{"m1", "m2"} {
		l, err := reg.Register(ctx, unit.Machine{ID: id}, "inst-"+id, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l)
	}
	e := engine.New(enginestore.Store{Reg: reg, Leases: fixedLease(leases[0])}, engine.Config{MachineID: "m1",
		ReconcileInterval: 20 * time.Millisecond, LossGrace: time.Second})
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = e.Run(runCtx) })
	defer func() { stop(); wg.Wait() }()

	for _, n := range []string{"a.service", "b.service", "c.service", "d.service"} {
		if err := reg.CreateUnit(ctx, enginetest.Unit(n, unit.StateLaunched)); err != nil {
			t.Fatal(err)
		}
	}
	view := reg.FollowCluster(ctx)
	snap := enginetest.WaitFor(ctx, t, view, "4 units placed", func(s unit.Cluster) bool { return len(s.Placements) == 4 })
	perMachine := map[string]int{}
	for _, pm := range snap.Placements {
		for m := range pm {
			perMachine[m]++
		}
	}
	if perMachine["m1"] != 2 || perMachine["m2"] != 2 {
		t.Errorf("placements per machine = %v, want 2 and 2", perMachine)
	}
	if !e.Leading() {
		t.Error("the only engine does not lead")
	}
	if err := reg.SetDesiredState(ctx, "a.service", unit.StateInactive); err != nil {
		t.Fatal(err)
	}
	enginetest.WaitFor(ctx, t, view, "a.service unplaced", func(s unit.Cluster) bool {
		return len(s.Placements["a.service"]) == 0
	})
}
