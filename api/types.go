package api

import "net/http"

// Wire types of the fleet HTTP API v1 (spec §8.2). Field names and omitempty
// follow fleet exactly so that its clients keep working.

// UnitOption is one Name=Value line of a unit file section.
type UnitOption struct {
	Section string `json:"section"`
	Name    string `json:"name"`
	Value   string `json:"value"`
}

// Unit is a unit as the API shows it.
type Unit struct {
	Name         string        `json:"name,omitempty"`
	Options      []*UnitOption `json:"options,omitempty"`
	DesiredState string        `json:"desiredState,omitempty"`
	CurrentState string        `json:"currentState,omitempty"`
	MachineID    string        `json:"machineID,omitempty"`
	// Reason says why a unit that should run has no machine (our addition).
	Reason string `json:"reason,omitempty"`
}

// UnitPage is one page of GET /units.
type UnitPage struct {
	Units         []*Unit `json:"units,omitempty"`
	NextPageToken string  `json:"nextPageToken,omitempty"`
}

// UnitState is one machine's report on one unit.
type UnitState struct {
	Name               string `json:"name,omitempty"`
	Hash               string `json:"hash,omitempty"`
	MachineID          string `json:"machineID,omitempty"`
	SystemdLoadState   string `json:"systemdLoadState,omitempty"`
	SystemdActiveState string `json:"systemdActiveState,omitempty"`
	SystemdSubState    string `json:"systemdSubState,omitempty"`
	// Reason says why the machine could not apply the unit's last change,
	// e.g. the error systemd gave when starting it (our addition).
	Reason string `json:"reason,omitempty"`
}

// UnitStatePage is one page of GET /state.
type UnitStatePage struct {
	States        []*UnitState `json:"states,omitempty"`
	NextPageToken string       `json:"nextPageToken,omitempty"`
}

// Machine is a live member of the cluster.
type Machine struct {
	ID        string            `json:"id,omitempty"`
	PrimaryIP string            `json:"primaryIP,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
}

// MachinePage is one page of GET /machines.
type MachinePage struct {
	Machines      []*Machine `json:"machines,omitempty"`
	NextPageToken string     `json:"nextPageToken,omitempty"`
}

// Error is the API's error envelope: {"error":{"code":N,"message":"..."}}.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	if e.Message == "" {
		return http.StatusText(e.Code)
	}
	return e.Message
}

// ErrorResponse wraps Error on the wire.
type ErrorResponse struct {
	Error Error `json:"error"`
}

// UnitStatusReport is the body of GET /fleet/v1/units/<name>/status (our
// addition): what the unit's own machine says about it.
type UnitStatusReport struct {
	Name               string `json:"name"`
	MachineID          string `json:"machineID"`
	SystemdLoadState   string `json:"systemdLoadState,omitempty"`
	SystemdActiveState string `json:"systemdActiveState,omitempty"`
	SystemdSubState    string `json:"systemdSubState,omitempty"`
	MainPID            uint32 `json:"mainPID,omitempty"`
	// Text reads like `systemctl status`: a "● name - description" line,
	// then "Loaded:", "Active:" and "Main PID:" lines, then recent log lines
	// when a journal is available.
	Text string `json:"text"`
	// JournalError says why Text has no log lines, if it has none.
	JournalError string `json:"journalError,omitempty"`
	// Reason says why the machine could not apply the unit's last change
	// (from the machine's unit state), if it could not.
	Reason string `json:"reason,omitempty"`
}

// JournalOptions are the query parameters of GET
// /fleet/v1/units/<name>/journal (our addition), which streams text/plain.
type JournalOptions struct {
	Lines  int    // -n; 0 = server default (10)
	Follow bool   // -f: keep streaming until the client goes away
	Output string // journalctl --output mode; "" = short
}
