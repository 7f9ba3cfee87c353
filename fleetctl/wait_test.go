package fleetctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/fleet-next/fleet/registry/registrytest"
)

// TestWaiter counts polls (Unit calls) and pauses, never time: one attempt
// is pollsPerAttempt polls with a pause between polls.
func TestWaiter(t *testing.T) {
	const reason = "no machine matches MachineMetadata"
	tests := []struct {
		name      string
		setup     func(t *testing.T, c *simCluster)
		goals     []goal
		attempts  int
		wantErr   string // "" for success
		wantOut   string
		wantPolls int // Unit calls
		wantPause int // sleeps
	}{
		{
			name: "state reached on the fourth poll",
			setup: func(t *testing.T, c *simCluster) {
				c.addUnit(t, "hello.service", helloUnit, stateLoaded)
				c.set(func(c *simCluster) { c.settleAfter = 3 })
			},
			goals:   []goal{{name: "hello.service", kind: goalState, state: stateLoaded}},
			wantOut: "Unit hello.service loaded on 113f16a7.../" + testIP + "\n", wantPolls: 4, wantPause: 3,
		},
		{
			name: "two units share the polls",
			setup: func(t *testing.T, c *simCluster) {
				c.addUnit(t, "a.service", helloUnit, stateInactive)
				c.addUnit(t, "b.service", helloUnit, stateInactive)
			},
			goals: []goal{
				{name: "a.service", kind: goalState, state: stateInactive},
				{name: "b.service", kind: goalState, state: stateInactive},
			},
			wantOut: "Unit a.service inactive\nUnit b.service inactive\n", wantPolls: 2, wantPause: 0,
		},
		{
			name: "timeout after the attempts",
			setup: func(t *testing.T, c *simCluster) {
				c.addUnit(t, "hello.service", helloUnit, stateLaunched)
				c.set(func(c *simCluster) { c.place = "" })
			},
			goals:     []goal{{name: "hello.service", kind: goalState, state: stateLaunched}},
			attempts:  2,
			wantErr:   "timed out waiting for unit hello.service to report state launched",
			wantPolls: 2 * pollsPerAttempt, wantPause: 2*pollsPerAttempt - 1,
		},
		{
			name: "reason for two attempts stops an endless wait",
			setup: func(t *testing.T, c *simCluster) {
				c.addUnit(t, "hello.service", helloUnit, stateLaunched)
				c.set(func(c *simCluster) { c.place, c.reason = "", reason })
			},
			goals:     []goal{{name: "hello.service", kind: goalState, state: stateLaunched}},
			wantErr:   "Unit hello.service cannot be placed: " + reason,
			wantPolls: reasonAttempts * pollsPerAttempt, wantPause: reasonAttempts*pollsPerAttempt - 1,
		},
		{
			name: "reason shorter than two attempts is tolerated",
			setup: func(t *testing.T, c *simCluster) {
				c.addUnit(t, "hello.service", helloUnit, stateLaunched)
				c.set(func(c *simCluster) { c.reason, c.settleAfter = reason, reasonAttempts*pollsPerAttempt-1 })
			},
			goals:     []goal{{name: "hello.service", kind: goalState, state: stateLaunched}},
			wantOut:   "Unit hello.service launched on 113f16a7.../" + testIP + "\n",
			wantPolls: reasonAttempts * pollsPerAttempt, wantPause: reasonAttempts*pollsPerAttempt - 1,
		},
		{
			name: "active waits for systemd after launched",
			setup: func(t *testing.T, c *simCluster) {
				c.addUnit(t, "hello.service", helloUnit, stateLaunched)
				c.set(func(c *simCluster) { c.activeAfter = 5 })
			},
			goals:   []goal{{name: "hello.service", kind: goalActive, state: stateLaunched}},
			wantOut: "Unit hello.service launched on 113f16a7.../" + testIP + "\n", wantPolls: 1, wantPause: 5,
		},
		{
			name: "active timeout names the systemd state",
			setup: func(t *testing.T, c *simCluster) {
				c.addUnit(t, "hello.service", helloUnit, stateLaunched)
				c.set(func(c *simCluster) { c.activeAfter = -1 })
			},
			goals:     []goal{{name: "hello.service", kind: goalActive, state: stateLaunched}},
			attempts:  1,
			wantOut:   "Unit hello.service launched on 113f16a7.../" + testIP + "\n",
			wantErr:   "timed out waiting for unit hello.service to report state active",
			wantPolls: 1, wantPause: pollsPerAttempt - 1,
		},
		{
			name: "a server unavailable for a while is polled through",
			setup: func(t *testing.T, c *simCluster) {
				c.addUnit(t, "hello.service", helloUnit, stateLoaded)
				c.set(func(c *simCluster) { c.unavailable = 3 })
			},
			goals:   []goal{{name: "hello.service", kind: goalState, state: stateLoaded}},
			wantOut: "Unit hello.service loaded on 113f16a7.../" + testIP + "\n", wantPolls: 4, wantPause: 3,
		},
		{
			name: "a server unavailable for too long fails the wait",
			setup: func(t *testing.T, c *simCluster) {
				c.addUnit(t, "hello.service", helloUnit, stateLoaded)
				c.set(func(c *simCluster) { c.unavailable = maxTransients + 1 })
			},
			goals:     []goal{{name: "hello.service", kind: goalState, state: stateLoaded}},
			wantErr:   "get unit hello.service: GET /fleet/v1/units/hello.service: get unit: read unit states: context deadline exceeded",
			wantPolls: maxTransients + 1, wantPause: maxTransients,
		},
		{
			name:      "gone",
			goals:     []goal{{name: "hello.service", kind: goalGone}},
			wantPolls: 1,
		},
		{
			name:      "not gone in time",
			setup:     func(t *testing.T, c *simCluster) { c.addUnit(t, "hello.service", helloUnit, stateInactive) },
			goals:     []goal{{name: "hello.service", kind: goalGone}},
			attempts:  1,
			wantErr:   "timed out waiting for unit hello.service to be destroyed",
			wantPolls: pollsPerAttempt, wantPause: pollsPerAttempt - 1,
		},
		{
			name:      "unit removed while waiting",
			goals:     []goal{{name: "hello.service", kind: goalState, state: stateLoaded}},
			wantErr:   "unit hello.service disappeared from the registry",
			wantPolls: 1,
		},
	}
	e := registrytest.StartEtcd(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newSimCluster(t, e, clusterOptions{})
			if tc.setup != nil {
				tc.setup(t, c)
			}
			var out bytes.Buffer
			pauses := 0
			w := &waiter{api: c.client(t), out: &out, maxPolls: blockFlags{attempts: tc.attempts}.maxPolls(),
				sleep: func(ctx context.Context, d time.Duration) error {
					if d != pollInterval {
						t.Errorf("pause of %v, want %v", d, pollInterval)
					}
					pauses++
					return ctx.Err()
				}}
			err := w.wait(t.Context(), tc.goals)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("wait: %v", err)
			case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
				t.Fatalf("wait error = %v, want %q", err, tc.wantErr)
			}
			if out.String() != tc.wantOut {
				t.Errorf("output = %q, want %q", out.String(), tc.wantOut)
			}
			if polls, _ := c.counters(); polls != tc.wantPolls || pauses != tc.wantPause {
				t.Errorf("polls = %d, pauses = %d; want %d, %d", polls, pauses, tc.wantPolls, tc.wantPause)
			}
		})
	}
}

func TestWaiterStopsWithContext(t *testing.T) {
	c := newSimCluster(t, registrytest.StartEtcd(t), clusterOptions{})
	c.addUnit(t, "hello.service", helloUnit, stateLaunched)
	c.set(func(c *simCluster) { c.place = "" })
	ctx, cancel := context.WithCancel(t.Context())
	pauses := 0
	w := &waiter{api: c.client(t), out: &bytes.Buffer{}, sleep: func(ctx context.Context, _ time.Duration) error {
		pauses++
		if pauses == 3 {
			cancel()
		}
		return ctx.Err()
	}}
	err := w.wait(ctx, []goal{{name: "hello.service", kind: goalState, state: stateLaunched}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("wait error = %v, want context.Canceled", err)
	}
	if polls, _ := c.counters(); polls != 3 {
		t.Errorf("polls = %d, want 3", polls)
	}
}

func TestWaitFailure(t *testing.T) {
	tests := []struct {
		name string
		err  error
		line string
		want string
	}{
		{name: "timeout", err: &timeoutError{name: "a.service", state: "loaded"},
			want: "Error waiting for units: timed out waiting for unit a.service to report state loaded"},
		{name: "timeout with command line", err: &timeoutError{name: "a.service", state: "loaded"},
			line: "Failed to stop units [a.service].",
			want: "Error waiting for units: timed out waiting for unit a.service to report state loaded\n" +
				"Failed to stop units [a.service]."},
		{name: "final message kept", err: failf("Unit a.service cannot be placed: x"), line: "ignored",
			want: "Unit a.service cannot be placed: x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := waitFailure(tc.err, tc.line)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != ExitError || ee.msg != tc.want {
				t.Errorf("waitFailure() = %#v, want exit 1 with %q", err, tc.want)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("waitFailure() does not wrap its cause")
			}
		})
	}
}

// TestWaiterMachines covers the goals on systemd's state on several
// machines (global units) and the budget shared by successive waits.
func TestWaiterMachines(t *testing.T) {
	e := registrytest.StartEtcd(t)
	machines := []string{testMachine, testMachine2}
	tests := []struct {
		name      string
		desired   string // set before waiting
		active    int    // activeAfter
		attempts  int
		goals     []goal
		wantErr   string
		wantOut   string
		wantPause int
	}{
		{
			name: "stopped everywhere", desired: stateLoaded,
			goals:   []goal{{name: "g.service", kind: goalStopped, state: stateLoaded, machines: machines}},
			wantOut: "Unit g.service loaded on 113f16a7.../172.17.8.103\nUnit g.service loaded on 22222222.../172.17.8.104\n",
		},
		{
			name: "running everywhere once systemd says so", desired: stateLaunched, active: 3,
			goals: []goal{{name: "g.service", kind: goalRunning, state: stateLaunched, machines: machines}},
			wantOut: "Unit g.service launched on 113f16a7.../172.17.8.103\n" +
				"Unit g.service launched on 22222222.../172.17.8.104\n",
			wantPause: 3,
		},
		{
			name: "not running in time", desired: stateLaunched, active: -1, attempts: 1,
			goals:     []goal{{name: "g.service", kind: goalRunning, state: stateLaunched, machines: machines}},
			wantErr:   "timed out waiting for unit g.service to report state active",
			wantPause: pollsPerAttempt - 1,
		},
		{
			name: "still running", desired: stateLaunched, attempts: 1,
			goals:     []goal{{name: "g.service", kind: goalStopped, state: stateLoaded, machines: machines}},
			wantErr:   "timed out waiting for unit g.service to report state inactive",
			wantPause: pollsPerAttempt - 1,
		},
		{
			name: "a machine without a state counts as stopped", desired: stateLoaded,
			goals: []goal{{name: "g.service", kind: goalStopped, state: stateLoaded,
				machines: []string{testMachine, "0123456789abcdef"}}},
			wantOut: "Unit g.service loaded on 113f16a7.../172.17.8.103\nUnit g.service loaded on 01234567...\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newSimCluster(t, e, twoMachines)
			c.addUnit(t, "g.service", globalUnit, stateLaunched)
			c.set(func(c *simCluster) { c.activeAfter = tc.active })
			client := c.client(t)
			if err := client.SetUnitTargetState(t.Context(), "g.service", tc.desired); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			pauses := 0
			w := &waiter{api: client, out: &out, maxPolls: blockFlags{attempts: tc.attempts}.maxPolls(),
				sleep: func(ctx context.Context, _ time.Duration) error {
					pauses++
					return ctx.Err()
				}}
			err := w.wait(t.Context(), tc.goals)
			if got := fmt.Sprint(err); tc.wantErr == "" && err != nil || tc.wantErr != "" && got != tc.wantErr {
				t.Fatalf("wait error = %v, want %q", err, tc.wantErr)
			}
			if out.String() != tc.wantOut || pauses != tc.wantPause {
				t.Errorf("output %q after %d pauses, want %q after %d", out.String(), pauses, tc.wantOut, tc.wantPause)
			}
		})
	}
}

// TestWaiterSharedBudget checks that successive waits of one waiter draw
// on one budget.
func TestWaiterSharedBudget(t *testing.T) {
	c := newSimCluster(t, registrytest.StartEtcd(t), clusterOptions{})
	c.addUnit(t, "hello.service", helloUnit, stateLaunched)
	c.set(func(c *simCluster) { c.place = "" }) // never placed again
	w := &waiter{api: c.client(t), out: &bytes.Buffer{}, maxPolls: blockFlags{attempts: 1}.maxPolls(),
		sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }}
	g := []goal{{name: "hello.service", kind: goalState, state: stateLaunched}}
	for i, want := range []int{pollsPerAttempt, pollsPerAttempt + 1} {
		err := w.wait(t.Context(), g)
		var te *timeoutError
		if !errors.As(err, &te) || w.polls != want {
			t.Errorf("wait %d: error %v after %d polls in all, want a timeout after %d", i+1, err, w.polls, want)
		}
	}
}

// TestWaiterProgress checks the progress line drawn on a terminal.
func TestWaiterProgress(t *testing.T) {
	c := newSimCluster(t, registrytest.StartEtcd(t), clusterOptions{})
	for _, name := range []string{"a.service", "b.service", "c.service", "d.service", "e.service"} {
		c.addUnit(t, name, helloUnit, stateLoaded)
	}
	c.set(func(c *simCluster) { c.settleAfter = 7 }) // the first 7 unit reads see nothing placed
	var out, term bytes.Buffer
	w := &waiter{api: c.client(t), out: &out, progress: &term,
		sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }}
	var goals []goal
	for _, name := range []string{"a.service", "b.service", "c.service", "d.service", "e.service"} {
		goals = append(goals, goal{name: name, kind: goalState, state: stateLoaded})
	}
	if err := w.wait(t.Context(), goals); err != nil {
		t.Fatal(err)
	}
	const erase = "\r\x1b[K"
	wantTerm := erase + "Waiting for 5 of 5 units: a.service, b.service, c.service, ..." +
		erase + erase + "Waiting for 2 of 5 units: a.service, b.service" + erase
	if term.String() != wantTerm {
		t.Errorf("terminal got %q, want %q", term.String(), wantTerm)
	}
	wantOut := "Unit c.service loaded on 113f16a7.../172.17.8.103\nUnit d.service loaded on 113f16a7.../172.17.8.103\n" +
		"Unit e.service loaded on 113f16a7.../172.17.8.103\nUnit a.service loaded on 113f16a7.../172.17.8.103\n" +
		"Unit b.service loaded on 113f16a7.../172.17.8.103\n"
	if out.String() != wantOut {
		t.Errorf("output %q, want %q", out.String(), wantOut)
	}
}
