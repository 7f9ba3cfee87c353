package registry_test

import (
	clientv3 "go.etcd.io/etcd/client/v3"

	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/registry/registrytest"
	"github.com/fleet-next/fleet/unit"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mkUnit(name, content string, d unit.FleetState) unit.Unit {
	return unit.Unit{Name: name, Content: content, Hash: unit.HashOf(content), Desired: d}
}

func TestUnitsLifecycle(t *testing.T) {
	ctx, r := ctxT(t), registrytest.New(t)
	if _, err := r.Unit(ctx, "a.service"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Unit on empty store: err=%v, want ErrNotFound", err)
	}
	for _, n := range []string{"b.service", "a.service"} {
		if err := r.CreateUnit(ctx, mkUnit(n, "[Service]\nExecStart=/bin/true\n", unit.StateInactive)); err != nil {
			t.Fatal(err)
		}
	}
	us, err := r.Units(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 2 || us[0].Name != "a.service" || us[1].Name != "b.service" {
		t.Fatalf("Units = %+v, want a, b sorted", us)
	}
	if us[0].Current != unit.StateInactive || us[0].Target != "" {
		t.Errorf("unscheduled unit: current=%q target=%q", us[0].Current, us[0].Target)
	}
	if us[0].Seq <= us[1].Seq {
		t.Errorf("a.service submitted after b.service must have a higher Seq: %d <= %d", us[0].Seq, us[1].Seq)
	}
	if err := r.SetDesiredState(ctx, "a.service", unit.StateLaunched); err != nil {
		t.Fatal(err)
	}
	got, err := r.Unit(ctx, "a.service")
	if err != nil || got.Desired != unit.StateLaunched {
		t.Fatalf("after SetDesiredState: %+v, %v", got, err)
	}
	if err := r.SetDesiredState(ctx, "nope.service", unit.StateLaunched); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("SetDesiredState on missing unit: %v", err)
	}
	if err := r.DestroyUnit(ctx, "a.service"); err != nil {
		t.Fatal(err)
	}
	if err := r.DestroyUnit(ctx, "a.service"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("second destroy: %v, want ErrNotFound", err)
	}
	var nf interface{ NotFound() bool }
	if err := r.DestroyUnit(ctx, "a.service"); !errors.As(err, &nf) || !nf.NotFound() {
		t.Errorf("not-found error must implement NotFound(): %T", err)
	}
}

func TestRegisterDuplicateAndTakeover(t *testing.T) {
	ctx := ctxT(t)
	e := registrytest.StartEtcd(t)
	r := e.Registry(t)
	m := unit.Machine{ID: "m1", PublicIP: "127.0.0.11", Metadata: map[string]string{"region": "eu"}}
	lease, err := r.Register(ctx, m, "inst-A", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.PublishState(ctx, lease, unit.State{Name: "x.service", MachineID: "m1", Current: unit.StateLaunched,
		SystemdState: unit.SystemdState{LoadState: "loaded", ActiveState: "active", SubState: "running"}}); err != nil {
		t.Fatal(err)
	}
	// Another installation claiming m1 is refused, naming the ID and IP.
	_, err = e.Registry(t).Register(ctx, unit.Machine{ID: "m1", PublicIP: "127.0.0.99"}, "inst-B", 10*time.Second)
	var dup *registry.DuplicateMachineError
	if !errors.As(err, &dup) || dup.ID != "m1" || dup.PublicIP != "127.0.0.11" {
		t.Fatalf("duplicate register: err=%v", err)
	}
	// The same installation restarting takes over the live lease: the state survives.
	lease2, err := e.Registry(t).Register(ctx, m, "inst-A", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if lease2 != lease {
		t.Errorf("takeover granted a new lease %x, want the live one %x", lease2, lease)
	}
	st, err := r.States(ctx, "x.service", "")
	if err != nil || len(st) != 1 || st[0].ActiveState != "active" {
		t.Fatalf("state after takeover: %+v %v", st, err)
	}
	// Dynamic metadata overrides and removes config metadata atomically.
	if err := r.SetMachineMetadata(ctx, []unit.MetadataChange{{MachineID: "m1", Key: "region", Value: ""}, {MachineID: "m1", Key: "disk", Value: "ssd"}}); err != nil {
		t.Fatal(err)
	}
	ms, err := r.Machines(ctx)
	if err != nil || len(ms) != 1 {
		t.Fatalf("Machines: %+v %v", ms, err)
	}
	if _, has := ms[0].Metadata["region"]; has || ms[0].Metadata["disk"] != "ssd" {
		t.Errorf("merged metadata = %v, want disk=ssd only", ms[0].Metadata)
	}
	// Deregistering drops presence and states together, and leaves a
	// leaving record that the engine's view reports as departed.
	view := r.FollowCluster(ctx)
	if err := r.Deregister(ctx, "m1", lease, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if ms, _ := r.Machines(ctx); len(ms) != 0 {
		t.Errorf("machines after deregister: %+v", ms)
	}
	if st, _ := r.States(ctx, "", ""); len(st) != 0 {
		t.Errorf("states after deregister: %+v", st)
	}
	for {
		snap, ok := view.Snapshot()
		if ok && snap.Departed["m1"] {
			if _, live := snap.Machines["m1"]; live {
				t.Errorf("departed machine still live in the view: %+v", snap.Machines)
			}
			break
		}
		select {
		case <-view.Changed():
		case <-ctx.Done():
			t.Fatalf("view never reported m1 departed: %+v", snap)
		}
	}
	// The ID is free again: the same machine (or another installation)
	// registers at once.
	if _, err := r.Register(ctx, unit.Machine{ID: "m1"}, "other-install", 5*time.Second); err != nil {
		t.Fatalf("register after leaving: %v", err)
	}
	if ms, _ := r.Machines(ctx); len(ms) != 1 {
		t.Errorf("machines after registering again: %+v", ms)
	}
}

func TestScheduleWatchAndFencing(t *testing.T) {
	ctx := ctxT(t)
	e := registrytest.StartEtcd(t)
	r := e.Registry(t)
	view := r.FollowCluster(ctx)
	sched := r.WatchSchedule(ctx, "m1")
	if got := <-sched; len(got) != 0 {
		t.Fatalf("initial schedule = %v, want empty", got)
	}
	lease1, err := r.Register(ctx, unit.Machine{ID: "m1"}, "i1", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	lease2, err := r.Register(ctx, unit.Machine{ID: "m2"}, "i2", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	l1, err := r.Campaign(ctx, "m1", lease1, registry.MinElectionTTL)
	if err != nil {
		t.Fatal(err)
	}
	p := unit.Placement{Unit: "a.service", Machine: "m1", Hash: unit.HashOf("x"), Desired: unit.StateLaunched, Content: "x"}
	rev, err := l1.Apply(ctx, []registry.ScheduleChange{registry.Place(p), registry.SetReason("b.service", "no machine")})
	if err != nil {
		t.Fatal(err)
	}
	if got := <-sched; got["a.service"].Content != "x" || got["a.service"].Desired != unit.StateLaunched {
		t.Fatalf("schedule after put = %+v", got)
	}
	if err := view.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	snap, ok := view.Snapshot()
	if !ok || snap.Placements["a.service"]["m1"].Hash != p.Hash || snap.Reasons["b.service"] != "no machine" {
		t.Fatalf("view = %+v", snap)
	}
	// A deposed leader's writes fail.
	if err := l1.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	l2, err := e.Registry(t).Campaign(ctx, "m2", lease2, registry.MinElectionTTL)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Resign(ctx)
	if _, err := l1.Apply(ctx, []registry.ScheduleChange{registry.Unplace(p)}); !errors.Is(err, registry.ErrNotLeader) {
		t.Fatalf("deposed leader write: err=%v, want ErrNotLeader", err)
	}
	// Resigning leaves the machine's lease (and so its presence) alone.
	if ms, err := r.Machines(ctx); err != nil || len(ms) != 2 {
		t.Fatalf("machines after resign: %+v %v", ms, err)
	}
	// Batches larger than one transaction are all written.
	var big []registry.ScheduleChange
	for i := range 300 {
		q := p
		q.Unit = "u" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ".service"
		big = append(big, registry.Place(q))
	}
	if _, err := l2.Apply(ctx, big); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case got := <-sched:
			if len(got) == 301 {
				return
			}
		case <-deadline:
			t.Fatal("schedule never reached 301 placements")
		}
	}
}

// TestApplyRemovalsFirstAndSizedByBytes: a plan larger than one
// transaction commits every removal before any placement, and placements
// whose contents together exceed etcd's request limit are split so that
// every transaction is accepted.
func TestApplyRemovalsFirstAndSizedByBytes(t *testing.T) {
	ctx := ctxT(t)
	e := registrytest.StartEtcd(t)
	r := e.Registry(t)
	lease, err := r.Register(ctx, unit.Machine{ID: "m1"}, "i1", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	l, err := r.Campaign(ctx, "m1", lease, registry.MinElectionTTL)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Resign(ctx)
	place := func(name, content string) unit.Placement {
		return unit.Placement{Unit: name, Machine: "m1", Hash: unit.HashOf(content), Desired: unit.StateLaunched, Content: content}
	}
	var old []registry.ScheduleChange
	for i := range 300 {
		old = append(old, registry.Place(place(fmt.Sprintf("old-%03d.service", i), "x")))
	}
	if _, err := l.Apply(ctx, old); err != nil {
		t.Fatal(err)
	}
	events := e.Client(t).Watch(ctx, registry.DefaultPrefix+"schedule/m1/", clientv3.WithPrefix())
	// 300 removals and placements of three units of 500 KiB each (1.5 MB
	// together, above etcd's 1.5 MiB request limit with the keys), mixed.
	big := strings.Repeat("y", 500<<10)
	var plan []registry.ScheduleChange
	for i := range 300 {
		plan = append(plan, registry.Unplace(place(fmt.Sprintf("old-%03d.service", i), "x")))
		if i%100 == 0 {
			plan = append(plan, registry.Place(place(fmt.Sprintf("big-%d.service", i), big)))
		}
	}
	if _, err := l.Apply(ctx, plan); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	var lastDelete, firstPut int64
	deletes, puts := 0, 0
	for deletes < 300 || puts < 3 {
		resp, ok := <-events
		if !ok {
			t.Fatalf("watch ended after %d deletes and %d puts", deletes, puts)
		}
		for _, ev := range resp.Events {
			rev := ev.Kv.ModRevision
			if ev.Type == clientv3.EventTypeDelete {
				deletes++
				lastDelete = max(lastDelete, rev)
			} else {
				puts++
				if firstPut == 0 || rev < firstPut {
					firstPut = rev
				}
			}
		}
	}
	if firstPut <= lastDelete {
		t.Errorf("a placement committed at revision %d, before the last removal at %d", firstPut, lastDelete)
	}
}

// TestElectionOutlivesADeadLeaderOnlyByItsTTL: a leader that dies without
// resigning is replaced once its election lease expires, long before its
// machine's lease would; waiting candidates hold no lease and write nothing.
func TestElectionOutlivesADeadLeaderOnlyByItsTTL(t *testing.T) {
	ctx := ctxT(t)
	e := registrytest.StartEtcd(t)
	cli := e.Client(t)
	r := e.Registry(t)
	m1, err := r.Register(ctx, unit.Machine{ID: "m1"}, "i1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := r.Register(ctx, unit.Machine{ID: "m2"}, "i2", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	lctx, die := context.WithCancel(ctx)
	defer die()
	l1, err := e.Registry(t).Campaign(lctx, "m1", m1, registry.MinElectionTTL)
	if err != nil {
		t.Fatal(err)
	}
	type won struct {
		l   *registry.Leader
		err error
		at  time.Time
	}
	second := make(chan won, 1)
	go func() {
		l, err := e.Registry(t).Campaign(ctx, "m2", m2, registry.MinElectionTTL)
		second <- won{l, err, time.Now()}
	}()
	// The candidate waits: three leases (two machines, the leader's
	// election), m1 leads.
	time.Sleep(500 * time.Millisecond)
	if ls, err := cli.Leases(ctx); err != nil || len(ls.Leases) != 3 {
		t.Fatalf("leases while a candidate waits: %+v %v, want 3", ls, err)
	}
	if id, err := r.EngineLeader(ctx); err != nil || id != "m1" {
		t.Fatalf("leader = %q %v, want m1", id, err)
	}
	select {
	case w := <-second:
		t.Fatalf("second candidate won while the first led: %+v", w)
	default:
	}
	// The leader dies: its keep-alives stop, nothing is revoked, its
	// machine stays registered for a minute.
	died := time.Now()
	die()
	w := <-second
	if w.err != nil {
		t.Fatal(w.err)
	}
	defer w.l.Resign(ctx)
	t.Logf("new leader %s after the old one died (election ttl %s)", w.at.Sub(died).Round(10*time.Millisecond), registry.MinElectionTTL)
	if id, err := r.EngineLeader(ctx); err != nil || id != "m2" {
		t.Fatalf("leader = %q %v, want m2", id, err)
	}
	select {
	case <-l1.Done():
	case <-ctx.Done():
		t.Error("the dead leader's Done never closed")
	}
	p := unit.Placement{Unit: "a.service", Machine: "m1", Hash: unit.HashOf("x"), Desired: unit.StateLaunched, Content: "x"}
	if _, err := l1.Apply(ctx, []registry.ScheduleChange{registry.Place(p)}); !errors.Is(err, registry.ErrNotLeader) {
		t.Fatalf("dead leader's write: %v, want ErrNotLeader", err)
	}
	if _, err := w.l.Apply(ctx, []registry.ScheduleChange{registry.Place(p)}); err != nil {
		t.Fatalf("new leader's write: %v", err)
	}
}

// TestCampaignNeedsTheMachineRegistered: a machine that is not registered
// on the lease it names cannot lead.
func TestCampaignNeedsTheMachineRegistered(t *testing.T) {
	ctx := ctxT(t)
	r := registrytest.New(t)
	lease, err := r.Register(ctx, unit.Machine{ID: "m1"}, "i1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := r.Campaign(ctx, "m2", lease, registry.MinElectionTTL); err == nil {
		_ = l.Resign(ctx)
		t.Fatal("a machine registered on no lease won the election")
	}
	if id, err := r.EngineLeader(ctx); err != nil || id != "" {
		t.Fatalf("leader = %q %v, want none", id, err)
	}
}
