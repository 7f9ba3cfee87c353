package agent_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fleet-next/fleet/agent"
	"github.com/fleet-next/fleet/agent/agenttest"
	"github.com/fleet-next/fleet/systemd/systemdfake"
	"github.com/fleet-next/fleet/unit"
)

// The agent's loop, run on the in-memory systemd and the in-memory store
// (both pass the contract suites their real counterparts pass), in a
// synctest bubble: time moves only when every goroutine waits, so backoffs
// and resyncs are exercised without real sleeps.

const (
	goodUnit = "[Service]\nExecStart=/bin/sleep 3600\n"
	badUnit  = "[Service]\nType=simple\n" // no ExecStart=: systemd refuses it
)

func place(name, content string) unit.Placement {
	return unit.Placement{Unit: name, Machine: "m1", Hash: unit.HashOf(content), Desired: unit.StateLaunched, Content: content}
}

func schedule(ps ...unit.Placement) map[string]unit.Placement {
	m := map[string]unit.Placement{}
	for _, p := range ps {
		m[p.Unit] = p
	}
	return m
}

// starts counts start actions by outcome.
type starts struct {
	mu           sync.Mutex
	ok, failures int
}

func (s *starts) Planned([]agent.Action) {}
func (s *starts) Applied(k agent.ActionKind, err error) {
	if k != agent.ActStart {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.failures++
	} else {
		s.ok++
	}
}
func (s *starts) Published(error)               {}
func (s *starts) Units(map[unit.FleetState]int) {}

func (s *starts) failed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failures
}

type rig struct {
	store   *agenttest.Store
	sd      *systemdfake.Manager
	agent   *agent.Agent
	metrics *starts
	done    chan error
	cancel  context.CancelFunc
}

// run starts an agent in the bubble; stop it with r.stop.
func run(t *testing.T) *rig {
	r := &rig{store: agenttest.New(), sd: systemdfake.New(), metrics: &starts{}, done: make(chan error, 1)}
	r.agent = agent.New(r.store, r.store, r.sd, agent.Config{MachineID: "m1", Metrics: r.metrics,
		RetryInitial: time.Second, RetryMax: time.Minute})
	ctx, cancel := context.WithCancel(t.Context())
	r.cancel = cancel
	go func() { r.done <- r.agent.Run(ctx) }()
	return r
}

func (r *rig) stop(t *testing.T) {
	r.cancel()
	if err := <-r.done; err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
}

func (r *rig) state(t *testing.T, name string) unit.SystemdState {
	t.Helper()
	st, err := r.sd.States(t.Context(), []string{name})
	if err != nil {
		t.Fatal(err)
	}
	return st[name]
}

// settle lets the agent work through d of (virtual) time.
func settle(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func TestBadUnitDoesNotBlockOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := run(t)
		defer r.stop(t)
		r.store.SetSchedule(schedule(place("bad.service", badUnit), place("good.service", goodUnit)))
		settle(time.Second)

		if st := r.state(t, "good.service"); st.ActiveState != "active" {
			t.Fatalf("good.service beside a bad unit: %+v, want active", st)
		}
		pub := r.store.States()
		if !strings.Contains(pub["bad.service"].Reason, "bad unit file setting") {
			t.Errorf("bad.service published reason %q, want systemd's 'bad unit file setting'", pub["bad.service"].Reason)
		}
		if pub["good.service"].Reason != "" || pub["good.service"].ActiveState != "active" {
			t.Errorf("good.service published %+v, want active with no reason", pub["good.service"])
		}
		if got := r.agent.Failures(); len(got) != 1 || got["bad.service"] == "" {
			t.Errorf("Failures = %v, want bad.service only", got)
		}

		// A unit added later starts while bad.service keeps failing.
		r.store.SetSchedule(schedule(place("bad.service", badUnit), place("good.service", goodUnit),
			place("late.service", goodUnit)))
		settle(time.Second)
		if st := r.state(t, "late.service"); st.ActiveState != "active" {
			t.Fatalf("late.service: %+v, want active", st)
		}

		// Fixing the unit (new contents) clears its failure at once.
		fixed := place("bad.service", goodUnit+"# fixed\n")
		r.store.SetSchedule(schedule(fixed, place("good.service", goodUnit), place("late.service", goodUnit)))
		settle(time.Second)
		if st := r.state(t, "bad.service"); st.ActiveState != "active" {
			t.Fatalf("fixed bad.service: %+v, want active", st)
		}
		if reason := r.store.States()["bad.service"].Reason; reason != "" {
			t.Errorf("fixed bad.service still has reason %q", reason)
		}
		if got := r.agent.Failures(); len(got) != 0 {
			t.Errorf("Failures after the fix = %v, want none", got)
		}
	})
}

// TestFailedUnitBacksOff: a unit that keeps failing is retried with a
// growing interval, not every second.
func TestFailedUnitBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := run(t)
		defer r.stop(t)
		r.store.SetSchedule(schedule(place("bad.service", badUnit)))
		// The first retry comes no sooner than RetryInitial less jitter.
		settle(400 * time.Millisecond)
		if first := r.metrics.failed(); first != 1 {
			t.Fatalf("start attempts in the first 400ms = %d, want 1", first)
		}
		// Backoff from 1 s doubling to 1 min, each wait drawn from ±50% of
		// the interval: over 10 minutes at most 26 attempts (one a second
		// would be 600) and at least 7.
		settle(10 * time.Minute)
		n := r.metrics.failed()
		if n < 7 || n > 26 {
			t.Errorf("start attempts over 10 minutes = %d, want between 7 and 26", n)
		}
	})
}

// TestNamesTheHostRefuses: a unit whose file cannot be written (here a
// dot file) fails alone; the reason is published although it has no file.
func TestNamesTheHostRefuses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := run(t)
		defer r.stop(t)
		r.store.SetSchedule(schedule(place(".service", goodUnit), place("good.service", goodUnit)))
		settle(time.Second)
		if st := r.state(t, "good.service"); st.ActiveState != "active" {
			t.Fatalf("good.service: %+v, want active", st)
		}
		st := r.store.States()[".service"]
		if st.Reason == "" || st.Current != unit.StateInactive {
			t.Errorf(".service published %+v, want a reason and current state inactive", st)
		}
	})
}

// TestSystemdRestart: while the manager is down the agent says it is
// unhealthy; once it is back, the agent reconnects and starts again what
// the restart stopped.
func TestSystemdRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := run(t)
		defer r.stop(t)
		r.store.SetSchedule(schedule(place("a.service", goodUnit), place("b.service", goodUnit)))
		settle(time.Second)
		if err := r.agent.Healthy(); err != nil {
			t.Fatalf("Healthy before the restart: %v", err)
		}
		r.sd.StopManager()
		settle(time.Second)
		if err := r.agent.Healthy(); err == nil {
			t.Fatal("Healthy while systemd is down = nil, want an error")
		}
		if st := r.store.States()["a.service"]; st.ActiveState != "active" {
			t.Errorf("a.service published %+v while systemd is down, want its last state kept", st)
		}
		r.sd.StartManager()
		settle(time.Minute) // the reconnect backoff is at most 30 s
		if err := r.agent.Healthy(); err != nil {
			t.Fatalf("Healthy after the restart: %v", err)
		}
		for _, n := range []string{"a.service", "b.service"} {
			if st := r.state(t, n); st.ActiveState != "active" {
				t.Errorf("%s after the restart: %+v, want active again", n, st)
			}
		}
		// New units start too.
		r.store.SetSchedule(schedule(place("a.service", goodUnit), place("b.service", goodUnit), place("c.service", goodUnit)))
		settle(time.Second)
		if st := r.state(t, "c.service"); st.ActiveState != "active" {
			t.Errorf("c.service after the restart: %+v, want active", st)
		}
	})
}

// TestRestartAdoptsWhatStillRuns: a reconnect without a restart of the
// units (a daemon-reexec) does not restart them.
func TestRestartAdoptsWhatStillRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := run(t)
		defer r.stop(t)
		r.store.SetSchedule(schedule(place("a.service", goodUnit)))
		settle(time.Second)
		before := r.state(t, "a.service").MainPID
		if before == 0 {
			t.Fatal("a.service has no main PID")
		}
		r.sd.DropConnections()
		settle(time.Minute)
		if err := r.agent.Healthy(); err != nil {
			t.Fatalf("Healthy after the reconnect: %v", err)
		}
		if after := r.state(t, "a.service").MainPID; after != before {
			t.Errorf("a.service main PID %d -> %d: restarted by a reconnect", before, after)
		}
	})
}

// TestHostUnitsAreNotTakenOver: a unit named like one the host has of its
// own, or aliasing one, is neither written nor linked; its refusal is
// published for the engine and its reason with its state.
func TestHostUnitsAreNotTakenOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := run(t)
		defer r.stop(t)
		r.sd.AddHostUnit("gpg-agent.socket", "/usr/lib/systemd/user/gpg-agent.socket")
		r.sd.AddHostUnit("gpg-agent.service", "/usr/lib/systemd/user/gpg-agent.service")
		alias := goodUnit + "\n[Install]\nAlias=gpg-agent.service\n"
		r.store.SetSchedule(schedule(place("gpg-agent.socket", "[Socket]\nListenStream=%t/x\n"),
			place("harmless.service", alias), place("good.service", goodUnit)))
		settle(time.Second)
		files, err := r.sd.UnitFiles(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"gpg-agent.socket", "harmless.service"} {
			if _, written := files[n]; written {
				t.Errorf("%s written to the units directory over the host's unit", n)
			}
			ref := r.store.Refusals()[n]
			if !strings.Contains(ref.Reason, "a unit of this host") || ref.Hash.IsZero() {
				t.Errorf("%s refusal %+v, want one naming the host's unit", n, ref)
			}
			if st := r.store.States()[n]; !strings.Contains(st.Reason, "/usr/lib/systemd/user/gpg-agent") {
				t.Errorf("%s state reason %q, want the host's unit path", n, st.Reason)
			}
		}
		if st := r.state(t, "good.service"); st.ActiveState != "active" {
			t.Errorf("good.service: %+v, want active", st)
		}
	})
}

// TestStateRemovalRetried: a unit leaves the host while the store is
// down; its state, which could not be removed then, is removed once the
// store is back (list-units must not show a unit the host no longer has).
func TestStateRemovalRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := run(t)
		defer r.stop(t)
		r.store.SetSchedule(schedule(place("a.service", goodUnit)))
		settle(time.Second)
		if _, ok := r.store.States()["a.service"]; !ok {
			t.Fatal("a.service state not published")
		}
		r.store.Fail(errors.New("store unreachable"))
		r.store.SetSchedule(schedule())
		settle(time.Second)
		if st := r.state(t, "a.service"); st.LoadState != "not-found" {
			t.Fatalf("a.service still on the host: %+v", st)
		}
		r.store.Fail(nil)
		settle(time.Minute)
		if st, ok := r.store.States()["a.service"]; ok {
			t.Errorf("state of a.service left behind after the store came back: %+v", st)
		}
	})
}
