package registry_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/registry/registrytest"
	"github.com/fleet-next/fleet/unit"
)

// replacing is a unit whose [X-Fleet] Replaces the other unit.
func replacing(name, other string) unit.Unit {
	return mkUnit(name, "[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nReplaces="+other+"\n", unit.StateInactive)
}

// noCycle is the check the API makes before storing u.
func noCycle(u unit.Unit) func([]unit.Unit) error {
	return func(stored []unit.Unit) error {
		f, err := unit.Parse(u.Content)
		if err != nil {
			return err
		}
		if c := unit.ReplacesCycle(u.Name, f.Requirements(u.Name), unit.ReplacesOf(stored)); c != "" {
			return errors.New("circular Replaces: " + c)
		}
		return nil
	}
}

// TestCreateUnitIfChecksAgainAfterAConcurrentWrite makes a unit appear
// between the check and the write: the write must not happen, and the
// second check must see the new unit.
func TestCreateUnitIfChecksAgainAfterAConcurrentWrite(t *testing.T) {
	ctx, r := ctxT(t), registrytest.New(t)
	a, b := replacing("a.service", "b.service"), replacing("b.service", "a.service")
	calls := 0
	err := r.CreateUnitIf(ctx, a, func(stored []unit.Unit) error {
		calls++
		if calls == 1 {
			if len(stored) != 0 {
				t.Errorf("first check saw %d units, want none", len(stored))
			}
			// Another API server stores b now, after its own check.
			if err := r.CreateUnit(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		return noCycle(a)(stored)
	})
	if err == nil || err.Error() != "circular Replaces: a.service replaces b.service, b.service replaces a.service" {
		t.Fatalf("CreateUnitIf = %v, want the cycle through b.service", err)
	}
	if calls != 2 {
		t.Errorf("check ran %d times, want 2", calls)
	}
	if _, err := r.Unit(ctx, "a.service"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("a.service stored after a refused check: %v", err)
	}
}

// TestConcurrentReplacesCycleNeverStored stores pairs of units replacing
// each other from two goroutines at once: at most one of each pair may be
// stored.
func TestConcurrentReplacesCycleNeverStored(t *testing.T) {
	ctx, e := ctxT(t), registrytest.StartEtcd(t)
	r1, r2 := e.Registry(t), e.Registry(t) // two API servers
	const pairs = 15
	for i := range pairs {
		a := replacing(fmt.Sprintf("a%d.service", i), fmt.Sprintf("b%d.service", i))
		b := replacing(fmt.Sprintf("b%d.service", i), fmt.Sprintf("a%d.service", i))
		var wg sync.WaitGroup
		errs := make([]error, 2)
		start := make(chan struct{})
		for j, w := range []struct {
			r *registry.Etcd
			u unit.Unit
		}{{r1, a}, {r2, b}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[j] = w.r.CreateUnitIf(ctx, w.u, noCycle(w.u))
			}()
		}
		close(start)
		wg.Wait()
		stored := 0
		for j, err := range errs {
			switch {
			case err == nil:
				stored++
			case !strings.HasPrefix(err.Error(), "circular Replaces: "):
				t.Fatalf("pair %d writer %d: %v", i, j, err)
			}
		}
		if stored != 1 {
			t.Fatalf("pair %d: %d of 2 units stored, want exactly 1 (errors %v)", i, stored, errs)
		}
	}
}

func TestCreateUnitIfStoresWhenTheCheckPasses(t *testing.T) {
	ctx, r := ctxT(t), registrytest.New(t)
	old := mkUnit("a.service", "[Service]\nExecStart=/bin/old\n", unit.StateLaunched)
	if err := r.CreateUnit(ctx, old); err != nil {
		t.Fatal(err)
	}
	u := mkUnit("a.service", "[Service]\nExecStart=/bin/new\n", "")
	var saw []string
	if err := r.CreateUnitIf(ctx, u, func(stored []unit.Unit) error {
		for _, s := range stored {
			saw = append(saw, s.Name+"="+s.Content)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(saw) != 1 || saw[0] != "a.service="+old.Content {
		t.Errorf("check saw %q, want the stored a.service", saw)
	}
	got, err := r.Unit(ctx, "a.service")
	if err != nil || got.Content != u.Content || got.Desired != unit.StateInactive {
		t.Fatalf("stored %+v, %v; want the new contents, inactive", got, err)
	}
	refused := errors.New("no")
	if err := r.CreateUnitIf(ctx, mkUnit("b.service", "[Service]\nExecStart=/bin/b\n", ""),
		func([]unit.Unit) error { return refused }); err != refused {
		t.Fatalf("CreateUnitIf with a failing check = %v, want the check's error", err)
	}
	if _, err := r.Unit(ctx, "b.service"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("b.service stored after a failed check: %v", err)
	}
}

func TestSetMachineMetadataNeedsRegisteredMachines(t *testing.T) {
	ctx, r := ctxT(t), registrytest.New(t)
	if _, err := r.Register(ctx, unit.Machine{ID: "m1"}, "i1", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	err := r.SetMachineMetadata(ctx, []unit.MetadataChange{
		{MachineID: "m1", Key: "rack", Value: "r1"},
		{MachineID: "ghost", Key: "rack", Value: "r2"},
	})
	if !errors.Is(err, registry.ErrNotFound) || err.Error() != "machine ghost not found" {
		t.Fatalf("SetMachineMetadata for an unknown machine = %v, want not found", err)
	}
	ms, err := r.Machines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || len(ms[0].Metadata) != 0 {
		t.Fatalf("machines after a refused change: %+v, want m1 without metadata", ms)
	}
	if err := r.SetMachineMetadata(ctx, []unit.MetadataChange{{MachineID: "m1", Key: "rack", Value: "r0"},
		{MachineID: "m1", Key: "rack", Value: "r1"}}); err != nil {
		t.Fatalf("two changes of one key: %v", err)
	}
	if ms, err = r.Machines(ctx); err != nil || ms[0].Metadata["rack"] != "r1" {
		t.Fatalf("machines after a change: %+v, %v", ms, err)
	}
}
