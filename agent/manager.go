package agent

import (
	"context"

	"github.com/fleet-next/fleet/unit"
)

// UnitManager is the agent's view of the host's systemd and its units
// directory. systemd.Manager implements it over D-Bus.
//
// All methods are safe for concurrent use. Names are full unit names
// ("hello.service").
type UnitManager interface {
	// UnitFiles lists the unit files in the units directory with the hash of
	// their contents (unit.HashOf of the file bytes).
	UnitFiles(ctx context.Context) (map[string]unit.Hash, error)
	// WriteUnitFile writes content to the units directory atomically.
	WriteUnitFile(ctx context.Context, name, content string) error
	// RemoveUnitFile deletes the file; no error if it is already gone.
	RemoveUnitFile(ctx context.Context, name string) error
	// Link links the files of names at runtime (LinkUnitFiles runtime=true, force=true).
	Link(ctx context.Context, names []string) error
	// Enable enables names at runtime so [Install] WantedBy takes effect.
	Enable(ctx context.Context, names []string) error
	// Disable removes runtime links and enablement of names.
	Disable(ctx context.Context, names []string) error
	// Reload runs daemon-reload.
	Reload(ctx context.Context) error
	// Start queues a start job (mode "replace") and returns once it is queued.
	Start(ctx context.Context, name string) error
	// Stop queues a stop job (mode "replace") and returns once it is queued.
	Stop(ctx context.Context, name string) error
	// ResetFailed clears a failed state; no error if the unit is not failed or unknown.
	ResetFailed(ctx context.Context, name string) error
	// HostUnit returns where the host defines name outside the units
	// directory (the path of its unit file, or a description such as
	// "masked"), or "" if only fleet does (or nobody). Fleet never links a
	// unit over one of the host's own.
	HostUnit(ctx context.Context, name string) (string, error)
	// States reports systemd's view of names (LoadState "not-found" for unknown ones).
	States(ctx context.Context, names []string) (map[string]unit.SystemdState, error)
	// Watch delivers batches of unit names whose state may have changed,
	// deduplicated, until ctx ends; then the channel is closed.
	Watch(ctx context.Context) (<-chan []string, error)
}
