// Package enginestore gives the engine its Store on the registry: once the
// machine is registered it campaigns for leadership (an election lease of
// ElectionTTL, tied to the machine's registration), follows the cluster
// view, and turns each plan into fenced schedule writes.
package enginestore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fleet-next/fleet/engine"
	"github.com/fleet-next/fleet/internal/pause"
	"github.com/fleet-next/fleet/registry"
)

// Leases gives the machine's current lease (0 while it has none).
type Leases interface {
	Lease() registry.LeaseID
}

// Store implements engine.Store.
type Store struct {
	Reg    *registry.Etcd
	Leases Leases
	// ElectionTTL is how long a dead leader's leadership outlives it (at
	// least registry.MinElectionTTL). Only the leader keeps it alive.
	ElectionTTL time.Duration
}

var _ engine.Store = Store{}

// Campaign waits for the machine to be registered, then campaigns.
func (s Store) Campaign(ctx context.Context, id string) (engine.Leader, error) {
	lease := s.Leases.Lease()
	for lease == 0 {
		if pause.For(ctx, 100*time.Millisecond) != nil {
			return nil, ctx.Err()
		}
		lease = s.Leases.Lease()
	}
	l, err := s.Reg.Campaign(ctx, id, lease, s.ElectionTTL)
	if err != nil {
		return nil, err
	}
	return Leader{l}, nil
}

// Follow starts the engine's view of the cluster.
func (s Store) Follow(ctx context.Context) engine.View { return s.Reg.FollowCluster(ctx) }

// Leader implements engine.Leader on a won registry election.
type Leader struct{ L *registry.Leader }

func (a Leader) Done() <-chan struct{}            { return a.L.Done() }
func (a Leader) Resign(ctx context.Context) error { return a.L.Resign(ctx) }
func (a Leader) Apply(ctx context.Context, changes []engine.Change) (int64, error) {
	rev, err := a.L.Apply(ctx, ScheduleChanges(changes))
	if errors.Is(err, registry.ErrNotLeader) {
		err = fmt.Errorf("%w: %w", engine.ErrNotLeader, err)
	}
	return rev, err
}

// ScheduleChanges turns an engine plan into the registry's schedule writes.
func ScheduleChanges(changes []engine.Change) []registry.ScheduleChange {
	out := make([]registry.ScheduleChange, 0, len(changes))
	for i := range changes {
		c := &changes[i]
		switch c.Kind {
		case engine.Place, engine.Update:
			out = append(out, registry.Place(c.Placement))
		case engine.Unplace:
			out = append(out, registry.Unplace(c.Placement))
		case engine.SetReason:
			out = append(out, registry.SetReason(c.Unit, c.Reason))
		case engine.ClearReason:
			out = append(out, registry.ClearReason(c.Unit))
		}
	}
	return out
}
