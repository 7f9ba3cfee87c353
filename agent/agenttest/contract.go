package agenttest

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/fleet-next/fleet/agent"
	"github.com/fleet-next/fleet/unit"
)

// Subject is one implementation of the agent's store for machine MachineID,
// with the controls the contract needs.
type Subject struct {
	MachineID string
	Schedule  agent.Schedule
	Publisher agent.StatePublisher
	// SetSchedule makes placements the machine's complete schedule.
	SetSchedule func(t *testing.T, placements map[string]unit.Placement)
	// States reads the machine's published states by unit name.
	States func(t *testing.T) map[string]unit.State
	// Refusals reads the machine's published refusals by unit name.
	Refusals func(t *testing.T) map[string]unit.Refusal
}

// timeout guards every wait against an implementation that never delivers.
const timeout = 30 * time.Second

// RunContract runs the contract; newSubject is called once per subtest.
func RunContract(t *testing.T, newSubject func(t *testing.T) Subject) {
	t.Run("WatchDeliversCompleteSchedules", func(t *testing.T) { testWatch(t, newSubject(t)) })
	t.Run("PublishAndDelete", func(t *testing.T) { testPublish(t, newSubject(t)) })
	t.Run("WatchEndsWithContext", func(t *testing.T) { testWatchEnds(t, newSubject(t)) })
	t.Run("PublishRefusal", func(t *testing.T) { testRefusal(t, newSubject(t)) })
}

func placement(s Subject, name, content string, desired unit.FleetState) unit.Placement {
	return unit.Placement{Unit: name, Machine: s.MachineID, Hash: unit.HashOf(content), Desired: desired, Content: content}
}

// next reads schedules until one equals want.
func next(t *testing.T, ch <-chan map[string]unit.Placement, want map[string]unit.Placement) {
	t.Helper()
	deadline := time.After(timeout)
	var last map[string]unit.Placement
	for {
		select {
		case got, ok := <-ch:
			if !ok {
				t.Fatalf("schedule watch closed; last %v, want %v", last, want)
			}
			last = got
			if maps.EqualFunc(got, want, func(a, b unit.Placement) bool { return a == b }) {
				return
			}
		case <-deadline:
			t.Fatalf("schedule never became %v; last %v", want, last)
		}
	}
}

func testWatch(t *testing.T, s Subject) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*timeout)
	defer cancel()
	ch := s.Schedule.WatchSchedule(ctx, s.MachineID)
	next(t, ch, map[string]unit.Placement{})
	a := placement(s, "a.service", "[Service]\nExecStart=/bin/sleep 1\n", unit.StateLaunched)
	b := placement(s, "b.service", "[Service]\nExecStart=/bin/sleep 2\n", unit.StateLoaded)
	s.SetSchedule(t, map[string]unit.Placement{a.Unit: a})
	next(t, ch, map[string]unit.Placement{a.Unit: a})
	s.SetSchedule(t, map[string]unit.Placement{a.Unit: a, b.Unit: b})
	next(t, ch, map[string]unit.Placement{a.Unit: a, b.Unit: b})
	s.SetSchedule(t, map[string]unit.Placement{b.Unit: b})
	next(t, ch, map[string]unit.Placement{b.Unit: b})
}

func testPublish(t *testing.T, s Subject) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*timeout)
	defer cancel()
	st := unit.State{Name: "a.service", MachineID: s.MachineID, Hash: unit.HashOf("x"),
		SystemdState: unit.SystemdState{LoadState: "loaded", ActiveState: "failed", SubState: "failed"},
		Current:      unit.StateLaunched, Since: time.Unix(1700000000, 0).UTC(), Reason: "start a.service: it failed"}
	if err := s.Publisher.PublishState(ctx, st); err != nil {
		t.Fatalf("PublishState: %v", err)
	}
	if names, err := s.Publisher.PublishedStates(ctx); err != nil || len(names) != 1 || names[0] != "a.service" {
		t.Fatalf("PublishedStates = %v, %v; want [a.service]", names, err)
	}
	got := s.States(t)
	if len(got) != 1 || got["a.service"].Reason != st.Reason || got["a.service"].SystemdState != st.SystemdState ||
		got["a.service"].Hash != st.Hash || got["a.service"].Current != st.Current {
		t.Fatalf("states = %+v, want just %+v", got, st)
	}
	if err := s.Publisher.DeleteState(ctx, "a.service"); err != nil {
		t.Fatalf("DeleteState: %v", err)
	}
	if err := s.Publisher.DeleteState(ctx, "never.service"); err != nil {
		t.Fatalf("DeleteState of a unit with no state: %v", err)
	}
	if got := s.States(t); len(got) != 0 {
		t.Fatalf("states after delete = %+v, want none", got)
	}
}

func testWatchEnds(t *testing.T, s Subject) {
	ctx, cancel := context.WithCancel(t.Context())
	ch := s.Schedule.WatchSchedule(ctx, s.MachineID)
	cancel()
	deadline := time.After(timeout)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("schedule watch still open after its context ended")
		}
	}
}

func testRefusal(t *testing.T, s Subject) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*timeout)
	defer cancel()
	h := unit.HashOf("x")
	if err := s.Publisher.PublishRefusal(ctx, "a.service", h, "a.service is a unit of this host"); err != nil {
		t.Fatalf("PublishRefusal: %v", err)
	}
	got := s.Refusals(t)
	if len(got) != 1 || got["a.service"] != (unit.Refusal{Hash: h, Reason: "a.service is a unit of this host"}) {
		t.Fatalf("refusals = %+v", got)
	}
}
