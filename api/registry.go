package api

import (
	"context"

	"github.com/fleet-next/fleet/unit"
)

// Registry is what the API needs from the cluster store. registry.Etcd
// implements it. Errors: registry.ErrNotFound when a named unit does not
// exist (test with errors.Is); any other error is a store failure.
type Registry interface {
	// Units returns every unit sorted by name, with placement and current state.
	Units(ctx context.Context) ([]unit.UnitStatus, error)
	// UnitsPage returns at most limit units sorted by name, starting after
	// the unit named after ("" = from the first), reading only that span.
	UnitsPage(ctx context.Context, after string, limit int) ([]unit.UnitStatus, error)
	// UnitNameAt returns the name at 0-based position i in name order, or
	// "" if there are fewer units.
	UnitNameAt(ctx context.Context, i int) (string, error)
	// Unit returns one unit, or an error wrapping registry.ErrNotFound.
	Unit(ctx context.Context, name string) (unit.UnitStatus, error)
	// CreateUnit stores u, replacing any unit of that name (contents and
	// desired state) in one transaction.
	CreateUnit(ctx context.Context, u unit.Unit) error
	// CreateUnitIf is CreateUnit if check accepts every unit stored,
	// checked and written in one transaction (re-read and re-checked when
	// another write came between); check's error is returned as it is.
	CreateUnitIf(ctx context.Context, u unit.Unit, check func(stored []unit.Unit) error) error
	// SetDesiredState changes the desired state of an existing unit.
	SetDesiredState(ctx context.Context, name string, s unit.FleetState) error
	// DestroyUnit removes a unit; registry.ErrNotFound if it does not exist.
	DestroyUnit(ctx context.Context, name string) error
	// States returns machine reports sorted by unit name then machine ID.
	// Empty filter fields match everything.
	States(ctx context.Context, unitName, machineID string) ([]unit.State, error)
	// StatesPage returns at most limit states in the order and filter of
	// States, starting after the state key after ("unit/machine"; "" =
	// from the first), reading only as far as it needs.
	StatesPage(ctx context.Context, unitName, machineID, after string, limit int) ([]unit.State, error)
	// StateKeyAt returns the key ("unit/machine") of the state at 0-based
	// position i in that order and filter, or "" if there are fewer.
	StateKeyAt(ctx context.Context, unitName, machineID string, i int) (string, error)
	// Machines returns live machines sorted by ID, metadata merged.
	Machines(ctx context.Context) ([]unit.Machine, error)
	// SetMachineMetadata applies dynamic metadata changes atomically: every
	// op or none. An empty Value deletes the key. A machine that is not
	// registered makes it change nothing and return a not-found error.
	SetMachineMetadata(ctx context.Context, ops []unit.MetadataChange) error
}
