package fleetctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/registry/registrytest"
	"github.com/fleet-next/fleet/unit"
)

// The machines of simulated clusters. Their IPs are data only: nothing
// dials them.
const (
	testMachine  = "113f16a7cafe0001"
	testIP       = "172.17.8.103"
	testMachine2 = "22222222beef0002"
	testIP2      = "172.17.8.104"
)

// machineLease is the TTL of simulated machines: longer than any test.
const machineLease = 10 * time.Minute

// simCluster is a fleet cluster for command tests: the real API handler
// on an httptest server, in front of a real registry on embedded etcd.
// The engine and the agents are simulated by the test: before the API
// serves each request, step places units and publishes their states
// through the registry as the engine leader and the agents would, which
// makes every run deterministic. Knobs make units slow, stuck or
// unplaceable.
type simCluster struct {
	t        *testing.T
	reg      *registry.Etcd
	leader   *registry.Leader
	leases   map[string]registry.LeaseID
	machines []unit.Machine
	endpoint string
	handler  http.Handler // the API with the simulation in front

	mu sync.Mutex // serializes requests and guards the fields below
	// place is the machine non-global units are placed on; "" places none.
	place string
	// reason is written for units that should run but are not placed.
	reason string
	// unplaceable units are never placed.
	unplaceable map[string]bool
	// frozen stops the simulation: nothing changes any more.
	frozen bool
	// settleAfter is how many unit GETs are answered before units are
	// placed.
	settleAfter int
	// activeAfter is how many state list GETs pass before systemd reports
	// launched units active; negative: never.
	activeAfter int
	// unavailable is how many unit GETs are answered 503, as when the
	// store does not answer in time, before the API answers them.
	unavailable int

	unitGets  int      // GET /units/<name> served
	stateGets int      // GET /state served
	created   []string // units PUT with options
	targets   []string // "name=state" of PUTs without options

	placed    map[string]map[string]unit.Placement // unit → machine → what step wrote
	published map[string]map[string]unit.State
	reasons   map[string]string
}

// clusterOptions shape a simCluster; zero values give one machine.
type clusterOptions struct {
	machines []unit.Machine
}

// newSimCluster starts a simulated cluster under its own key prefix of e.
func newSimCluster(t *testing.T, e *registrytest.Etcd, opts clusterOptions) *simCluster {
	t.Helper()
	machines := opts.machines
	if machines == nil {
		machines = []unit.Machine{{ID: testMachine, PublicIP: testIP}}
	}
	c := &simCluster{
		t:         t,
		reg:       registry.FromClient(e.Client(t), "/"+t.Name()+"/", nil),
		leases:    map[string]registry.LeaseID{},
		machines:  machines,
		place:     machines[0].ID,
		placed:    map[string]map[string]unit.Placement{},
		published: map[string]map[string]unit.State{},
		reasons:   map[string]string{},
	}
	ctx := t.Context()
	for _, m := range machines {
		lease, err := c.reg.Register(ctx, m, "installation-"+m.ID, machineLease)
		if err != nil {
			t.Fatalf("register machine %s: %v", m.ID, err)
		}
		c.leases[m.ID] = lease
	}
	leader, err := c.reg.Campaign(ctx, machines[0].ID, c.leases[machines[0].ID], registry.MinElectionTTL)
	if err != nil {
		t.Fatalf("campaign: %v", err)
	}
	c.leader = leader
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := leader.Resign(ctx); err != nil {
			t.Errorf("resign: %v", err)
		}
	})
	handler := api.NewHandler(c.reg, api.Options{Version: "test"})
	c.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.serve(w, r, handler)
	})
	srv := httptest.NewServer(c.handler)
	t.Cleanup(srv.Close)
	c.endpoint = srv.URL
	return c
}

// serve runs the simulation, then the API.
func (c *simCluster) serve(w http.ResponseWriter, r *http.Request, h http.Handler) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.record(r)
	if err := c.step(r.Context()); err != nil {
		c.t.Errorf("simulation step: %v", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/fleet/v1")
	isUnitGet := r.Method == http.MethodGet && strings.HasPrefix(path, "/units/") && strings.Count(path, "/") == 2
	if isUnitGet && c.unavailable > 0 {
		c.unavailable--
		c.unitGets++
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, `{"error":{"code":503,"message":"get unit: read unit states: context deadline exceeded"}}`)
		return
	}
	h.ServeHTTP(w, r)
	switch {
	case r.Method == http.MethodGet && path == "/state":
		c.stateGets++
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/units/") && strings.Count(path, "/") == 2:
		c.unitGets++
	}
}

// record notes the unit writes a request makes.
func (c *simCluster) record(r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, "/fleet/v1/units/")
	if r.Method != http.MethodPut || !ok {
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		c.t.Errorf("read request body: %v", err)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var u api.Unit
	if err := json.Unmarshal(body, &u); err != nil {
		return // the API answers it
	}
	if len(u.Options) > 0 {
		c.created = append(c.created, name)
	} else {
		c.targets = append(c.targets, name+"="+u.DesiredState)
	}
}

// step makes the registry show what a settled cluster would: placements
// of units that should run (per the knobs), their machines' states, and
// reasons for units that cannot be placed.
func (c *simCluster) step(ctx context.Context) error {
	if c.frozen {
		return nil
	}
	units, err := c.reg.Units(ctx)
	if err != nil {
		return err
	}
	want := map[string]map[string]unit.Placement{}
	wantReasons := map[string]string{}
	for _, u := range units {
		if u.Desired == unit.StateInactive {
			continue
		}
		var on []string
		switch {
		case c.unplaceable[u.Name]:
			wantReasons[u.Name] = c.reason
		case u.Global:
			for _, m := range c.machines {
				on = append(on, m.ID)
			}
		case c.place != "" && c.unitGets >= c.settleAfter:
			on = []string{c.place}
		case c.reason != "":
			wantReasons[u.Name] = c.reason
		}
		for _, m := range on {
			if want[u.Name] == nil {
				want[u.Name] = map[string]unit.Placement{}
			}
			want[u.Name][m] = unit.Placement{Unit: u.Name, Machine: m, Hash: u.Hash, Desired: u.Desired, Content: u.Content}
		}
	}
	var changes []registry.ScheduleChange
	for name, ms := range c.placed {
		for m, p := range ms {
			if _, keep := want[name][m]; !keep {
				changes = append(changes, registry.Unplace(p))
				if err := c.reg.DeleteState(ctx, name, m); err != nil {
					return err
				}
				delete(c.published[name], m)
			}
		}
	}
	for name, ms := range want {
		for m, p := range ms {
			if c.placed[name][m] != p {
				changes = append(changes, registry.Place(p))
			}
		}
	}
	for name, reason := range wantReasons {
		if c.reasons[name] != reason {
			changes = append(changes, registry.SetReason(name, reason))
		}
	}
	for name := range c.reasons {
		if _, keep := wantReasons[name]; !keep {
			changes = append(changes, registry.ClearReason(name))
		}
	}
	if len(changes) > 0 {
		if _, err := c.leader.Apply(ctx, changes); err != nil {
			return err
		}
	}
	c.placed, c.reasons = want, wantReasons
	active := c.activeAfter >= 0 && c.stateGets >= c.activeAfter
	for name, ms := range want {
		for m, p := range ms {
			st := unit.State{Name: name, MachineID: m, Hash: p.Hash, Current: p.Desired,
				SystemdState: unit.SystemdState{LoadState: "loaded", ActiveState: "inactive", SubState: "dead"}}
			if p.Desired == unit.StateLaunched && active {
				st.ActiveState, st.SubState, st.MainPID = "active", "running", 4242
			}
			if c.published[name][m] == st {
				continue
			}
			if err := c.reg.PublishState(ctx, c.leases[m], st); err != nil {
				return err
			}
			if c.published[name] == nil {
				c.published[name] = map[string]unit.State{}
			}
			c.published[name][m] = st
		}
	}
	return nil
}

// settle runs one simulation step now.
func (c *simCluster) settle(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.step(t.Context()); err != nil {
		t.Fatalf("simulation step: %v", err)
	}
}

// set changes knobs between requests.
func (c *simCluster) set(f func(c *simCluster)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(c)
}

// addUnit stores a unit parsed from text, as fleetctl submit would.
func (c *simCluster) addUnit(t *testing.T, name, text, desired string) {
	t.Helper()
	client := c.client(t)
	if err := client.CreateUnit(t.Context(), &api.Unit{Name: name, Options: apiOptions(mustParse(t, text)), DesiredState: desired}); err != nil {
		t.Fatalf("create unit %s: %v", name, err)
	}
	c.set(func(c *simCluster) { c.created, c.targets = nil, nil })
}

// client is an API client of the cluster.
func (c *simCluster) client(t *testing.T) *api.Client {
	t.Helper()
	client, err := api.NewClient(c.endpoint, api.ClientOptions{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("api client: %v", err)
	}
	return client
}

// unit reads a unit from the registry; nil when it does not exist.
func (c *simCluster) unit(t *testing.T, name string) *unit.UnitStatus {
	t.Helper()
	u, err := c.reg.Unit(t.Context(), name)
	if err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return nil
		}
		t.Fatalf("get unit %s: %v", name, err)
	}
	return &u
}

// counters returns the request counters.
func (c *simCluster) counters() (unitGets, stateGets int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unitGets, c.stateGets
}

// writes returns the units created and the target states set so far.
func (c *simCluster) writes() (created, targets []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.created...), append([]string(nil), c.targets...)
}

// fakeFiles serves ReadFile from a map of path to contents.
func fakeFiles(files map[string]string) func(string, int64) ([]byte, error) {
	return func(path string, limit int64) ([]byte, error) {
		text, ok := files[path]
		switch {
		case !ok:
			return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
		case int64(len(text)) > limit:
			return nil, tooLarge(path, limit)
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

// run is one fleetctl command line for runFleetctl.
type run struct {
	env      map[string]string
	files    map[string]string
	stdin    string
	terminal bool // stderr is a terminal
	// realFiles reads local files from the file system as fleetctl does,
	// instead of from files.
	realFiles bool
	// redirect sends every API client to the cluster whatever the
	// endpoint, which is only recorded (tests of the endpoint flags).
	redirect bool
	args     []string
}

// runFleetctl runs Main against cluster c; FLEETCTL_ENDPOINT points at it
// unless r.env says otherwise.
func runFleetctl(t *testing.T, c *simCluster, r run) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	var res result
	env := map[string]string{}
	if c != nil {
		env["FLEETCTL_ENDPOINT"] = c.endpoint
	}
	for k, v := range r.env {
		env[k] = v
	}
	deps := Deps{
		Stdin:   strings.NewReader(r.stdin),
		Stdout:  &stdout,
		Stderr:  &stderr,
		Version: "1.2.3",
		Getenv:  func(k string) string { return env[k] },
		NewAPI: func(endpoint string, opts api.ClientOptions) (API, error) {
			res.endpoint, res.opts = endpoint, opts
			if r.redirect && c != nil {
				endpoint = c.endpoint
			}
			return newHTTPClient(endpoint, opts)
		},
		ReadFile: fakeFiles(r.files),
		Sleep: func(ctx context.Context, _ time.Duration) error {
			res.sleeps++
			return ctx.Err()
		},
		IsTerminal: func(f any) bool { return r.terminal && f == any(&stderr) },
	}
	if r.realFiles {
		deps.ReadFile = nil
	}
	res.code = Main(t.Context(), r.args, deps)
	res.stdout, res.stderr = stdout.String(), stderr.String()
	return res
}
