// Package agentstore gives the agent its Schedule and StatePublisher on the
// registry: the machine's schedule watch, and unit states written on the
// machine's current lease (refused while the machine holds none).
package agentstore

import (
	"context"
	"errors"

	"github.com/fleet-next/fleet/agent"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/unit"
)

// Leases gives the machine's current lease (0 while it has none).
type Leases interface {
	Lease() registry.LeaseID
}

// ErrNotRegistered is returned by PublishState while the machine holds no lease.
var ErrNotRegistered = errors.New("publish state: machine not registered")

// Store implements agent.Schedule and agent.StatePublisher for one machine.
type Store struct {
	Reg       *registry.Etcd
	Leases    Leases
	MachineID string
}

var (
	_ agent.Schedule       = Store{}
	_ agent.StatePublisher = Store{}
)

// WatchSchedule delivers the machine's schedule whenever it changes.
func (s Store) WatchSchedule(ctx context.Context, id string) <-chan map[string]unit.Placement {
	return s.Reg.WatchSchedule(ctx, id)
}

// PublishState writes s on the machine's lease.
func (s Store) PublishState(ctx context.Context, st unit.State) error {
	l := s.Leases.Lease()
	if l == 0 {
		return ErrNotRegistered
	}
	return s.Reg.PublishState(ctx, l, st)
}

// DeleteState removes the machine's state of name.
func (s Store) DeleteState(ctx context.Context, name string) error {
	return s.Reg.DeleteState(ctx, name, s.MachineID)
}

// PublishRefusal records on the machine's lease that it refuses version h
// of name.
func (s Store) PublishRefusal(ctx context.Context, name string, h unit.Hash, reason string) error {
	l := s.Leases.Lease()
	if l == 0 {
		return ErrNotRegistered
	}
	return s.Reg.PublishRefusal(ctx, l, name, s.MachineID, h, reason)
}

// PublishedStates lists the units this machine has a state of.
func (s Store) PublishedStates(ctx context.Context) ([]string, error) {
	sts, err := s.Reg.States(ctx, "", s.MachineID)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(sts))
	for i, st := range sts {
		names[i] = st.Name
	}
	return names, nil
}
