package unit

import (
	"fmt"
	"time"
)

// FleetState is a unit's state in fleet's terms: the desired state a user
// asks the cluster to hold it in, and the current state fleet derives from
// what its machine reports (spec §4.1, §4.3).
type FleetState string

// The three fleet unit states.
const (
	StateInactive FleetState = "inactive" // known, not assigned to a machine
	StateLoaded   FleetState = "loaded"   // assigned and loaded into systemd, not started
	StateLaunched FleetState = "launched" // loaded and started
)

// ParseFleetState validates s as one of inactive, loaded or launched.
func ParseFleetState(s string) (FleetState, error) {
	switch FleetState(s) {
	case StateInactive, StateLoaded, StateLaunched:
		return FleetState(s), nil
	}
	return "", fmt.Errorf("invalid desired state %q: must be inactive, loaded or launched", s)
}

// Rank orders the states: inactive < loaded < launched.
func (s FleetState) Rank() int {
	switch s {
	case StateLoaded:
		return 1
	case StateLaunched:
		return 2
	}
	return 0
}

// Unit is a unit as the cluster stores it: its name, its canonical contents
// and the state the user wants it in.
type Unit struct {
	Name    string
	Content string // canonical serialization (see File.Serialize)
	Hash    Hash   // SHA1 of Content
	Desired FleetState
	Global  bool  // [X-Fleet] Global=true, cached from Content
	Seq     int64 // submission order: lower was submitted first (etcd create revision)
}

// UnitStatus is a unit as readers see it: the stored unit plus where the
// engine placed it and the state its machine reports.
type UnitStatus struct {
	Unit
	Target  string     // machine ID the engine placed a non-global unit on; "" if none
	Current FleetState // derived current state ("" for global units)
	Reason  string     // why a unit that should run has no machine; "" otherwise
}

// SystemdState is the state systemd reports for a unit.
type SystemdState struct {
	LoadState   string // loaded, not-found, ...
	ActiveState string // active, inactive, failed, activating, ...
	SubState    string // running, dead, exited, ...
	MainPID     uint32
}

// State is one machine's report on one unit (spec §8.2 UnitState).
type State struct {
	Name      string
	MachineID string
	Hash      Hash // hash of the unit file the machine has loaded
	SystemdState
	// Current is the fleet state the agent holds the unit in on that machine:
	// loaded or launched.
	Current FleetState
	Since   time.Time // when the state last changed
	// Reason says why the machine could not apply the unit's last change
	// (the error systemd or the units directory gave); "" when it did.
	Reason string
}

// Machine is a live member of the cluster.
type Machine struct {
	ID       string
	PublicIP string
	Metadata map[string]string // merged: config metadata overlaid by dynamic metadata
	Version  string
	// APIURL is where this machine's own API answers (http://host:port), so
	// that any fleetd can forward per-machine requests (status, journal) to
	// it; "" if it listens on unix sockets only.
	APIURL string
}

// ShortID returns the first 8 characters of a machine ID.
func ShortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// Placement is the engine's decision that a unit runs on a machine: one
// entry of that machine's schedule. Global units have one per machine.
type Placement struct {
	Unit    string
	Machine string
	Hash    Hash
	Desired FleetState // loaded or launched
	Content string     // canonical unit file the agent writes
}

// Cluster is a consistent view of what the engine needs to schedule.
type Cluster struct {
	Units      map[string]Unit                 // by name
	Machines   map[string]Machine              // live machines by ID, metadata merged
	Placements map[string]map[string]Placement // unit name -> machine ID -> placement
	Reasons    map[string]string               // unit name -> why it cannot be placed
	Revision   int64                           // store revision the view reflects
	// Departed are machines that left the cluster cleanly (fleetd stopped
	// with shutdown_purge): not live, and their units are to move at once.
	Departed map[string]bool
	// Refused are the units machines refused to run: unit name -> machine
	// ID -> refusal.
	Refused map[string]map[string]Refusal
}

// Refusal is a machine's refusal to run one version of a unit, e.g.
// because the unit would replace one the host has of its own.
type Refusal struct {
	Hash   Hash // the version refused; a new version may be tried again
	Reason string
}

// MetadataChange sets (Value != "") or removes (Value == "") one dynamic
// metadata key of one machine.
type MetadataChange struct {
	MachineID string
	Key       string
	Value     string
}

// MaxContentBytes is the largest unit file the cluster stores and places.
// A placement carries the contents, and the engine writes placements in
// transactions that must stay under etcd's request limit (1.5 MiB by
// default): a record holds at most about twice its contents, so a unit of
// this size always fits one transaction with room to spare.
const MaxContentBytes = 512 << 10
