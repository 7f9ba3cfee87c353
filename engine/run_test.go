package engine_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleet-next/fleet/engine"
	"github.com/fleet-next/fleet/engine/enginestore"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/registry/registrytest"
	"github.com/fleet-next/fleet/unit"
)

// fixedLease is a machine that holds one lease throughout.
type fixedLease registry.LeaseID

func (l fixedLease) Lease() registry.LeaseID { return registry.LeaseID(l) }

// rounds counts reconcile rounds.
type rounds struct{ n atomic.Int64 }

func (r *rounds) Leading(time.Time)       {}
func (r *rounds) Reconciled(engine.Round) { r.n.Add(1) }

func TestEngineLeadsPlacesAndRestsWhenNothingChanges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
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
	var counted rounds
	e := engine.New(enginestore.Store{Reg: reg, Leases: fixedLease(leases[0])}, engine.Config{MachineID: "m1",
		ReconcileInterval: 20 * time.Millisecond, LossGrace: time.Second, Metrics: &counted})
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = e.Run(runCtx) })
	defer func() { stop(); wg.Wait() }()

	content := "[Service]\nExecStart=/bin/sleep 1000\n"
	for _, n := range []string{"a.service", "b.service", "c.service", "d.service"} {
		if err := reg.CreateUnit(ctx, unit.Unit{Name: n, Content: content, Hash: unit.HashOf(content), Desired: unit.StateLaunched}); err != nil {
			t.Fatal(err)
		}
	}
	view := reg.FollowCluster(ctx)
	var snap unit.Cluster
	for deadline := time.Now().Add(30 * time.Second); ; {
		if s, ok := view.Snapshot(); ok && len(s.Placements) == 4 {
			snap = s
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the engine did not place 4 units")
		}
		time.Sleep(20 * time.Millisecond)
	}
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
	// With nothing changing, level-triggered ticks must not plan again.
	// First let the rounds that follow its own writes finish.
	for deadline := time.Now().Add(30 * time.Second); ; {
		n := counted.n.Load()
		time.Sleep(200 * time.Millisecond)
		if counted.n.Load() == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the engine never settled")
		}
	}
	before := counted.n.Load()
	time.Sleep(20 * 20 * time.Millisecond)
	if after := counted.n.Load(); after != before {
		t.Errorf("%d reconcile rounds over 20 idle ticks, want none", after-before)
	}
	// A change wakes it at once.
	if err := reg.SetDesiredState(ctx, "a.service", unit.StateInactive); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if s, ok := view.Snapshot(); ok && len(s.Placements["a.service"]) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a.service was not unplaced")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
