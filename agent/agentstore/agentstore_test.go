package agentstore_test

import (
	"testing"
	"time"

	"github.com/fleet-next/fleet/agent/agentstore"
	"github.com/fleet-next/fleet/agent/agenttest"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/registry/registrytest"
	"github.com/fleet-next/fleet/unit"
)

type fixedLease registry.LeaseID

func (l fixedLease) Lease() registry.LeaseID { return registry.LeaseID(l) }

// TestContract runs the agent store contract against the registry on a
// real etcd: the schedule is written by an elected engine's fenced writes.
func TestContract(t *testing.T) {
	agenttest.RunContract(t, func(t *testing.T) agenttest.Subject {
		ctx := t.Context()
		reg := registrytest.New(t)
		lease, err := reg.Register(ctx, unit.Machine{ID: "m1"}, "i1", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		leader, err := reg.Campaign(ctx, "m1", lease, registry.MinElectionTTL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = leader.Resign(t.Context()) })
		store := agentstore.Store{Reg: reg, Leases: fixedLease(lease), MachineID: "m1"}
		var current map[string]unit.Placement
		return agenttest.Subject{MachineID: "m1", Schedule: store, Publisher: store,
			SetSchedule: func(t *testing.T, next map[string]unit.Placement) {
				var changes []registry.ScheduleChange
				for n, p := range current {
					if _, keep := next[n]; !keep {
						changes = append(changes, registry.Unplace(p))
					}
				}
				for _, p := range next {
					changes = append(changes, registry.Place(p))
				}
				if _, err := leader.Apply(t.Context(), changes); err != nil {
					t.Fatal(err)
				}
				current = next
			},
			Refusals: func(t *testing.T) map[string]unit.Refusal {
				view := reg.FollowCluster(t.Context())
				for {
					if snap, ok := view.Snapshot(); ok {
						out := map[string]unit.Refusal{}
						for name, byMachine := range snap.Refused {
							if ref, ok := byMachine["m1"]; ok {
								out[name] = ref
							}
						}
						return out
					}
					<-view.Changed()
				}
			},
			States: func(t *testing.T) map[string]unit.State {
				sts, err := reg.States(t.Context(), "", "m1")
				if err != nil {
					t.Fatal(err)
				}
				out := map[string]unit.State{}
				for _, s := range sts {
					out[s.Name] = s
				}
				return out
			}}
	})
}

func TestPublishNeedsALease(t *testing.T) {
	reg := registrytest.New(t)
	store := agentstore.Store{Reg: reg, Leases: fixedLease(0), MachineID: "m1"}
	if err := store.PublishState(t.Context(), unit.State{Name: "a.service", MachineID: "m1"}); err != agentstore.ErrNotRegistered {
		t.Fatalf("PublishState without a lease = %v, want ErrNotRegistered", err)
	}
}
