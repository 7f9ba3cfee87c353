package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/fleet-next/fleet/unit"
)

// JSON records stored in etcd. Field names are short and stable: they are
// the on-disk format of a running cluster.

type unitRecord struct {
	Name    string `json:"name"`
	Hash    string `json:"hash"`
	Desired string `json:"desiredState"`
	Global  bool   `json:"global,omitempty"`
	Content string `json:"content"`
}

type placementRecord struct {
	Hash    string `json:"hash"`
	Desired string `json:"desiredState"`
	Content string `json:"content"`
}

type machineRecord struct {
	ID       string            `json:"id"`
	PublicIP string            `json:"publicIP,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Version  string            `json:"version,omitempty"`
	// Instance identifies the fleetd installation (its data_dir) that owns
	// the registration, so a restart on the same host can take it over and a
	// different host claiming the same machine ID is refused.
	Instance string `json:"instance,omitempty"`
	// APIURL is where the machine's own API answers (http://host:port).
	APIURL string `json:"apiURL,omitempty"`
	// Leaving marks the record a machine leaves behind when it leaves the
	// cluster cleanly: it is not a live machine, and tells the engine to
	// move its units without waiting for the loss grace.
	Leaving bool `json:"leaving,omitempty"`
}

type stateRecord struct {
	Hash        string    `json:"hash"`
	LoadState   string    `json:"loadState"`
	ActiveState string    `json:"activeState"`
	SubState    string    `json:"subState"`
	MainPID     uint32    `json:"mainPID,omitempty"`
	Current     string    `json:"state"`
	Since       time.Time `json:"since"`
	Reason      string    `json:"reason,omitempty"`
}

func encodeUnit(u unit.Unit) ([]byte, error) {
	return marshalPlain(unitRecord{Name: u.Name, Hash: u.Hash.String(), Desired: string(u.Desired), Global: u.Global, Content: u.Content})
}

func decodeUnit(b []byte, seq int64) (unit.Unit, error) {
	var r unitRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return unit.Unit{}, fmt.Errorf("decode unit record: %w", err)
	}
	h, err := unit.ParseHash(r.Hash)
	if err != nil {
		return unit.Unit{}, fmt.Errorf("decode unit record %q: %w", r.Name, err)
	}
	return unit.Unit{Name: r.Name, Content: r.Content, Hash: h, Desired: unit.FleetState(r.Desired), Global: r.Global, Seq: seq}, nil
}

func encodePlacement(p unit.Placement) ([]byte, error) {
	return marshalPlain(placementRecord{Hash: p.Hash.String(), Desired: string(p.Desired), Content: p.Content})
}

func decodePlacement(machine, name string, b []byte) (unit.Placement, error) {
	var r placementRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return unit.Placement{}, fmt.Errorf("decode placement %s/%s: %w", machine, name, err)
	}
	h, err := unit.ParseHash(r.Hash)
	if err != nil {
		return unit.Placement{}, fmt.Errorf("decode placement %s/%s: %w", machine, name, err)
	}
	return unit.Placement{Unit: name, Machine: machine, Hash: h, Desired: unit.FleetState(r.Desired), Content: r.Content}, nil
}

func encodeMachine(m unit.Machine, instance string) ([]byte, error) {
	return json.Marshal(machineRecord{ID: m.ID, PublicIP: m.PublicIP, Metadata: m.Metadata, Version: m.Version,
		Instance: instance, APIURL: m.APIURL})
}

func decodeMachine(b []byte) (machineRecord, error) {
	var r machineRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode machine record: %w", err)
	}
	return r, nil
}

func encodeState(s unit.State) ([]byte, error) {
	return json.Marshal(stateRecord{Hash: s.Hash.String(), LoadState: s.LoadState, ActiveState: s.ActiveState,
		SubState: s.SubState, MainPID: s.MainPID, Current: string(s.Current), Since: s.Since.UTC(), Reason: s.Reason})
}

func decodeState(name, machine string, b []byte) (unit.State, error) {
	var r stateRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return unit.State{}, fmt.Errorf("decode state %s/%s: %w", name, machine, err)
	}
	h, _ := unit.ParseHash(r.Hash) // a state may be published before a hash is known
	return unit.State{Name: name, MachineID: machine, Hash: h,
		SystemdState: unit.SystemdState{LoadState: r.LoadState, ActiveState: r.ActiveState, SubState: r.SubState, MainPID: r.MainPID},
		Current:      unit.FleetState(r.Current), Since: r.Since, Reason: r.Reason}, nil
}

// marshalPlain is json.Marshal without HTML escaping: a unit's '<', '>' and
// '&' take one byte in the store, not six, so a record is at most about
// twice its contents.
func marshalPlain(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

type refusalRecord struct {
	Hash   string `json:"hash"`
	Reason string `json:"reason"`
}
