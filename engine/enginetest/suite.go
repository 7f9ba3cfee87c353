package enginetest

import (
	"context"
	"testing"
	"time"

	"github.com/fleet-next/fleet/engine"
	"github.com/fleet-next/fleet/unit"
)

// Cluster is an engine.Store under test together with the writes other
// components make to the cluster it holds: machines joining and leaving
// (presence), units submitted and their desired states changed (the API).
type Cluster interface {
	// Store returns the store of the engine on machine id. Its Campaign
	// can win only while that machine is joined.
	Store(id string) engine.Store
	// Join makes machine id live.
	Join(ctx context.Context, id string) error
	// Leave ends machine id's presence, and with it any leadership it
	// holds. Its placements stay.
	Leave(ctx context.Context, id string) error
	// CreateUnit stores u, replacing a unit of the same name.
	CreateUnit(ctx context.Context, u unit.Unit) error
	// SetDesiredState changes the desired state of a stored unit.
	SetDesiredState(ctx context.Context, name string, s unit.FleetState) error
}

// timeout guards each step of the suite against a hung store; it is not a
// performance expectation.
const timeout = 30 * time.Second

// Run runs the contract of engine.Store against clusters made by
// newCluster, a fresh and empty one for each case.
func Run(t *testing.T, newCluster func(t *testing.T) Cluster) {
	tests := []struct {
		name string
		fn   func(t *testing.T, c Cluster)
	}{
		{"ViewFollowsTheCluster", testViewFollowsTheCluster},
		{"WaitRevisionEndsWithContext", testWaitRevisionEndsWithContext},
		{"CampaignWaitsForTheMachine", testCampaignWaitsForTheMachine},
		{"OneLeaderAtATime", testOneLeaderAtATime},
		{"ApplyWritesTheSchedule", testApplyWritesTheSchedule},
		{"LeavingEndsLeadershipAndFencesWrites", testLeavingEndsLeadership},
		{"AbsentMachineKeepsItsPlacements", testAbsentMachineKeepsItsPlacements},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newCluster(t)) })
	}
}

// Unit returns a unit named name in desired state s.
func Unit(name string, s unit.FleetState) unit.Unit {
	content := "[Service]\nExecStart=/bin/sleep 1000\n"
	return unit.Unit{Name: name, Content: content, Hash: unit.HashOf(content), Desired: s}
}

// Placement returns the placement of u on machine.
func Placement(u unit.Unit, machine string) unit.Placement {
	return unit.Placement{Unit: u.Name, Machine: machine, Hash: u.Hash, Desired: u.Desired, Content: u.Content}
}

// WaitFor waits until v's snapshot satisfies ok and returns it; it fails t
// when ctx ends first.
func WaitFor(ctx context.Context, t testing.TB, v engine.View, what string, ok func(unit.Cluster) bool) unit.Cluster {
	t.Helper()
	for {
		if s, ready := v.Snapshot(); ready && ok(s) {
			return s
		}
		select {
		case <-v.Changed():
		case <-ctx.Done():
			s, _ := v.Snapshot()
			t.Fatalf("waiting for %s: %v; last snapshot: %+v", what, ctx.Err(), s)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func stepContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return ctx
}

func join(ctx context.Context, t *testing.T, c Cluster, ids ...string) {
	t.Helper()
	for _, id := range ids {
		must(t, c.Join(ctx, id))
	}
}

func campaign(ctx context.Context, t *testing.T, c Cluster, id string) engine.Leader {
	t.Helper()
	l, err := c.Store(id).Campaign(ctx, id)
	if err != nil {
		t.Fatalf("campaign of %s: %v", id, err)
	}
	return l
}

// apply writes changes as l and waits until v reflects them.
func apply(ctx context.Context, t *testing.T, l engine.Leader, v engine.View, changes ...engine.Change) unit.Cluster {
	t.Helper()
	rev, err := l.Apply(ctx, changes)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if rev <= 0 {
		t.Fatalf("Apply returned revision %d, want > 0", rev)
	}
	if err := v.WaitRevision(ctx, rev); err != nil {
		t.Fatalf("WaitRevision(%d): %v", rev, err)
	}
	s, ok := v.Snapshot()
	if !ok || s.Revision < rev {
		t.Fatalf("after WaitRevision(%d): snapshot ready %v at revision %d", rev, ok, s.Revision)
	}
	return s
}

func testViewFollowsTheCluster(t *testing.T, c Cluster) {
	ctx := stepContext(t)
	join(ctx, t, c, "m1", "m2")
	must(t, c.CreateUnit(ctx, Unit("a.service", unit.StateLaunched)))
	v := c.Store("m1").Follow(ctx)
	select {
	case <-v.Changed(): // a new view reports its first snapshot
	case <-ctx.Done():
		t.Fatal("a new view never reported a change")
	}
	s := WaitFor(ctx, t, v, "two machines and a launched unit", func(s unit.Cluster) bool {
		_, m1 := s.Machines["m1"]
		_, m2 := s.Machines["m2"]
		return m1 && m2 && s.Units["a.service"].Desired == unit.StateLaunched
	})
	if s.Revision <= 0 || v.Revision() < s.Revision {
		t.Errorf("snapshot revision %d, view revision %d; want 0 < snapshot <= view", s.Revision, v.Revision())
	}
	a := s.Units["a.service"]
	if want := Unit("a.service", unit.StateLaunched); a.Content != want.Content || a.Hash != want.Hash {
		t.Errorf("unit in view = %+v, want contents and hash of %+v", a, want)
	}

	must(t, c.SetDesiredState(ctx, "a.service", unit.StateLoaded))
	s2 := WaitFor(ctx, t, v, "a.service loaded", func(s unit.Cluster) bool {
		return s.Units["a.service"].Desired == unit.StateLoaded
	})
	if s2.Revision <= s.Revision {
		t.Errorf("revision went from %d to %d over a change", s.Revision, s2.Revision)
	}
	// Submission order: a later unit has a higher Seq, and replacing a
	// unit keeps its place.
	must(t, c.CreateUnit(ctx, Unit("b.service", unit.StateLaunched)))
	replaced := Unit("a.service", unit.StateLaunched)
	replaced.Content += "# new contents\n"
	replaced.Hash = unit.HashOf(replaced.Content)
	must(t, c.CreateUnit(ctx, replaced))
	s3 := WaitFor(ctx, t, v, "b.service and a.service replaced", func(s unit.Cluster) bool {
		_, b := s.Units["b.service"]
		return b && s.Units["a.service"].Hash == replaced.Hash
	})
	if a, b := s3.Units["a.service"].Seq, s3.Units["b.service"].Seq; a != s.Units["a.service"].Seq || b <= a {
		t.Errorf("Seq of a.service %d (was %d), of b.service %d: want a unchanged and b after it", a, s.Units["a.service"].Seq, b)
	}
}

func testWaitRevisionEndsWithContext(t *testing.T, c Cluster) {
	ctx := stepContext(t)
	join(ctx, t, c, "m1")
	v := c.Store("m1").Follow(ctx)
	s := WaitFor(ctx, t, v, "machine m1", func(s unit.Cluster) bool { _, ok := s.Machines["m1"]; return ok })
	if err := v.WaitRevision(ctx, s.Revision); err != nil {
		t.Errorf("WaitRevision of a revision the view has: %v", err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := v.WaitRevision(done, s.Revision+1000); err == nil {
		t.Error("WaitRevision of a future revision returned nil after its context ended")
	}
}

func testCampaignWaitsForTheMachine(t *testing.T, c Cluster) {
	ctx := stepContext(t)
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if l, err := c.Store("m1").Campaign(short, "m1"); err == nil {
		_ = l.Resign(ctx)
		t.Fatal("Campaign won for a machine that has not joined")
	}
	join(ctx, t, c, "m1")
	must(t, campaign(ctx, t, c, "m1").Resign(ctx))
}

func testOneLeaderAtATime(t *testing.T, c Cluster) {
	ctx := stepContext(t)
	join(ctx, t, c, "m1", "m2")
	v := c.Store("m1").Follow(ctx)
	l1 := campaign(ctx, t, c, "m1")
	type result struct {
		l   engine.Leader
		err error
	}
	second := make(chan result, 1)
	go func() {
		l, err := c.Store("m2").Campaign(ctx, "m2")
		second <- result{l, err}
	}()
	apply(ctx, t, l1, v, engine.Change{Kind: engine.SetReason, Unit: "x.service", Reason: "from m1"})
	select {
	case r := <-second:
		t.Fatalf("m2 won the election (err %v) while m1 led", r.err)
	default:
	}
	must(t, l1.Resign(ctx))
	var r result
	select {
	case r = <-second:
	case <-ctx.Done():
		t.Fatal("m2 did not win after m1 resigned")
	}
	if r.err != nil {
		t.Fatalf("m2's campaign: %v", r.err)
	}
	defer func() { _ = r.l.Resign(context.WithoutCancel(ctx)) }()
	s := apply(ctx, t, r.l, v, engine.Change{Kind: engine.SetReason, Unit: "x.service", Reason: "from m2"})
	if _, err := l1.Apply(ctx, []engine.Change{{Kind: engine.SetReason, Unit: "x.service", Reason: "stale"}}); err == nil {
		t.Error("a resigned leader's Apply succeeded")
	}
	if err := v.WaitRevision(ctx, s.Revision); err != nil {
		t.Fatal(err)
	}
	if s, _ := v.Snapshot(); s.Reasons["x.service"] != "from m2" {
		t.Errorf("reason = %q, want the current leader's %q", s.Reasons["x.service"], "from m2")
	}
}

func testApplyWritesTheSchedule(t *testing.T, c Cluster) {
	ctx := stepContext(t)
	join(ctx, t, c, "m1", "m2")
	a, b := Unit("a.service", unit.StateLaunched), Unit("b.service", unit.StateLaunched)
	must(t, c.CreateUnit(ctx, a))
	must(t, c.CreateUnit(ctx, b))
	v := c.Store("m1").Follow(ctx)
	l := campaign(ctx, t, c, "m1")
	defer func() { _ = l.Resign(context.WithoutCancel(ctx)) }()

	s := apply(ctx, t, l, v,
		engine.Change{Kind: engine.Place, Placement: Placement(a, "m1")},
		engine.Change{Kind: engine.Place, Placement: Placement(b, "m2")},
		engine.Change{Kind: engine.SetReason, Unit: "c.service", Reason: "no machine can take it"})
	if got := s.Placements["a.service"]["m1"]; got != Placement(a, "m1") {
		t.Errorf("placement of a.service on m1 = %+v, want %+v", got, Placement(a, "m1"))
	}
	if got := s.Placements["b.service"]["m2"]; got != Placement(b, "m2") {
		t.Errorf("placement of b.service on m2 = %+v, want %+v", got, Placement(b, "m2"))
	}
	if got := s.Reasons["c.service"]; got != "no machine can take it" {
		t.Errorf("reason of c.service = %q", got)
	}

	loaded := b
	loaded.Desired = unit.StateLoaded
	s = apply(ctx, t, l, v,
		engine.Change{Kind: engine.Unplace, Placement: Placement(a, "m1")},
		engine.Change{Kind: engine.Update, Placement: Placement(loaded, "m2")},
		engine.Change{Kind: engine.ClearReason, Unit: "c.service"})
	if pm := s.Placements["a.service"]; len(pm) != 0 {
		t.Errorf("a.service still placed after Unplace: %v", pm)
	}
	if got := s.Placements["b.service"]["m2"]; got != Placement(loaded, "m2") {
		t.Errorf("placement of b.service after Update = %+v, want %+v", got, Placement(loaded, "m2"))
	}
	if r, ok := s.Reasons["c.service"]; ok {
		t.Errorf("reason of c.service still %q after ClearReason", r)
	}
}

func testLeavingEndsLeadership(t *testing.T, c Cluster) {
	ctx := stepContext(t)
	join(ctx, t, c, "m1", "m2")
	v := c.Store("m2").Follow(ctx)
	l1 := campaign(ctx, t, c, "m1")
	must(t, c.Leave(ctx, "m1"))
	select {
	case <-l1.Done():
	case <-ctx.Done():
		t.Fatal("leadership did not end when its machine left")
	}
	if _, err := l1.Apply(ctx, []engine.Change{{Kind: engine.SetReason, Unit: "x.service", Reason: "stale"}}); err == nil {
		t.Error("Apply of a leader whose machine left succeeded")
	}
	l2 := campaign(ctx, t, c, "m2")
	defer func() { _ = l2.Resign(context.WithoutCancel(ctx)) }()
	s := apply(ctx, t, l2, v, engine.Change{Kind: engine.SetReason, Unit: "y.service", Reason: "fresh"})
	if _, ok := s.Reasons["x.service"]; ok {
		t.Error("the write of the deposed leader is in the view")
	}
	if s.Reasons["y.service"] != "fresh" {
		t.Errorf("reasons = %v, want the new leader's write", s.Reasons)
	}
}

func testAbsentMachineKeepsItsPlacements(t *testing.T, c Cluster) {
	ctx := stepContext(t)
	join(ctx, t, c, "m1", "m2")
	a := Unit("a.service", unit.StateLaunched)
	must(t, c.CreateUnit(ctx, a))
	v := c.Store("m1").Follow(ctx)
	l := campaign(ctx, t, c, "m1")
	defer func() { _ = l.Resign(context.WithoutCancel(ctx)) }()
	apply(ctx, t, l, v, engine.Change{Kind: engine.Place, Placement: Placement(a, "m2")})
	must(t, c.Leave(ctx, "m2"))
	s := WaitFor(ctx, t, v, "m2 gone", func(s unit.Cluster) bool { _, ok := s.Machines["m2"]; return !ok })
	if _, ok := s.Machines["m1"]; !ok {
		t.Error("m1 left with m2")
	}
	if got := s.Placements["a.service"]["m2"]; got != Placement(a, "m2") {
		t.Errorf("placement on the absent machine = %+v, want it kept: %+v", got, Placement(a, "m2"))
	}
}
