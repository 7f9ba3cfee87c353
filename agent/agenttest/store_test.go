package agenttest_test

import (
	"maps"
	"testing"

	"github.com/fleet-next/fleet/agent/agenttest"
	"github.com/fleet-next/fleet/unit"
)

func TestContract(t *testing.T) {
	agenttest.RunContract(t, func(t *testing.T) agenttest.Subject {
		s := agenttest.New()
		return agenttest.Subject{MachineID: "m1", Schedule: s, Publisher: s,
			SetSchedule: func(_ *testing.T, p map[string]unit.Placement) { s.SetSchedule(p) },
			States:      func(*testing.T) map[string]unit.State { return maps.Clone(s.States()) },
			Refusals:    func(*testing.T) map[string]unit.Refusal { return s.Refusals() }}
	})
}
