package fleetctl

import (
	"bytes"
	"context"
	"io/fs"
	"maps"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/fleet-next/fleet/api"
)

// fakeCluster is an in-memory API: the cluster places every unit on one
// machine and units show their desired state as current state, with knobs
// for slow, stuck or unplaceable units. It is not safe for concurrent use;
// fleetctl makes one call at a time.
type fakeCluster struct {
	units    map[string]*api.Unit
	machines []*api.Machine
	// place is the machine units are placed on; "" leaves them unplaced.
	place string
	// reason is reported for units that have not reached their state.
	reason string
	// settleAfter is how many Unit calls answer before units show their
	// desired state (those show inactive).
	settleAfter int
	// activeAfter is how many UnitStates calls pass before systemd reports
	// launched units active; negative: never.
	activeAfter int

	unitCalls  int
	stateCalls int
	created    []string
	targets    []string // "name=state" per SetUnitTargetState
	destroyed  []string
}

const (
	testMachine = "113f16a7cafe0001"
	testIP      = "172.17.8.103"
)

func newFakeCluster() *fakeCluster {
	return &fakeCluster{
		units:    map[string]*api.Unit{},
		machines: []*api.Machine{{ID: testMachine, PrimaryIP: testIP}},
		place:    testMachine,
	}
}

func (f *fakeCluster) settled() bool { return f.place != "" && f.unitCalls >= f.settleAfter }

// view is a stored unit as the API shows it at this moment.
func (f *fakeCluster) view(u *api.Unit) *api.Unit {
	v := *u
	v.Options = slices.Clone(u.Options)
	v.CurrentState, v.MachineID, v.Reason = "", "", ""
	switch {
	case isGlobal(u):
	case u.DesiredState == stateInactive:
		v.CurrentState = stateInactive
	case f.settled():
		v.CurrentState, v.MachineID = u.DesiredState, f.place
	default:
		v.CurrentState, v.Reason = stateInactive, f.reason
	}
	return &v
}

func (f *fakeCluster) Units(context.Context) ([]*api.Unit, error) {
	var out []*api.Unit
	for _, name := range slices.Sorted(maps.Keys(f.units)) {
		out = append(out, f.view(f.units[name]))
	}
	return out, nil
}

func (f *fakeCluster) Unit(_ context.Context, name string) (*api.Unit, error) {
	defer func() { f.unitCalls++ }()
	u, ok := f.units[name]
	if !ok {
		return nil, nil
	}
	return f.view(u), nil
}

func (f *fakeCluster) CreateUnit(_ context.Context, u *api.Unit) error {
	stored := *u
	stored.Options = slices.Clone(u.Options)
	f.units[u.Name] = &stored
	f.created = append(f.created, u.Name)
	return nil
}

func (f *fakeCluster) SetUnitTargetState(_ context.Context, name, desired string) error {
	u, ok := f.units[name]
	if !ok {
		return &api.Error{Code: http.StatusConflict, Message: "unit does not exist and options field empty"}
	}
	u.DesiredState = desired
	f.targets = append(f.targets, name+"="+desired)
	return nil
}

func (f *fakeCluster) DestroyUnit(_ context.Context, name string) error {
	if _, ok := f.units[name]; !ok {
		return &api.Error{Code: http.StatusNotFound, Message: "unit does not exist"}
	}
	delete(f.units, name)
	f.destroyed = append(f.destroyed, name)
	return nil
}

func (f *fakeCluster) UnitStates(_ context.Context, machineID, unitName string) ([]*api.UnitState, error) {
	f.stateCalls++
	var out []*api.UnitState
	for _, name := range slices.Sorted(maps.Keys(f.units)) {
		u := f.units[name]
		if u.DesiredState == stateInactive || isGlobal(u) || !f.settled() {
			continue
		}
		if (machineID != "" && machineID != f.place) || (unitName != "" && unitName != name) {
			continue
		}
		active := "inactive"
		if u.DesiredState == stateLaunched && f.activeAfter >= 0 && f.stateCalls > f.activeAfter {
			active = "active"
		}
		out = append(out, &api.UnitState{Name: name, Hash: describeUnit(u).hash, MachineID: f.place,
			SystemdLoadState: "loaded", SystemdActiveState: active})
	}
	return out, nil
}

func (f *fakeCluster) Machines(context.Context) ([]*api.Machine, error) {
	return slices.Clone(f.machines), nil
}

// addUnit stores a unit parsed from text.
func (f *fakeCluster) addUnit(t *testing.T, name, text, desired string) {
	t.Helper()
	f.units[name] = &api.Unit{Name: name, Options: apiOptions(mustParse(t, text)), DesiredState: desired}
}

// fakeFiles serves ReadFile from a map of path to contents.
func fakeFiles(files map[string]string) func(string) ([]byte, error) {
	return func(path string) ([]byte, error) {
		text, ok := files[path]
		if !ok {
			return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
		}
		return []byte(text), nil
	}
}

// result is the outcome of one fleetctl run.
type result struct {
	code     int
	stdout   string
	stderr   string
	endpoint string            // endpoint given to NewAPI; "" if no client was made
	opts     api.ClientOptions // options given to NewAPI
	sleeps   int
}

// runFleetctl runs Main against cluster with the given environment and
// local files.
func runFleetctl(t *testing.T, cluster *fakeCluster, env, files map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	var res result
	deps := Deps{
		Stdin:   bytes.NewReader(nil),
		Stdout:  &stdout,
		Stderr:  &stderr,
		Version: "1.2.3",
		Getenv:  func(k string) string { return env[k] },
		NewAPI: func(endpoint string, opts api.ClientOptions) (API, error) {
			res.endpoint, res.opts = endpoint, opts
			return cluster, nil
		},
		ReadFile: fakeFiles(files),
		Sleep: func(ctx context.Context, _ time.Duration) error {
			res.sleeps++
			return ctx.Err()
		},
	}
	res.code = Main(t.Context(), args, deps)
	res.stdout, res.stderr = stdout.String(), stderr.String()
	return res
}
