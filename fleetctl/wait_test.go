package fleetctl

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// TestWaiter counts polls (Unit calls) and pauses, never time: one attempt
// is pollsPerAttempt polls with a pause between polls.
func TestWaiter(t *testing.T) {
	const reason = "no machine matches MachineMetadata"
	tests := []struct {
		name      string
		setup     func(t *testing.T, c *fakeCluster)
		goals     []goal
		attempts  int
		wantErr   string // "" for success
		wantOut   string
		wantPolls int // Unit calls
		wantPause int // sleeps
	}{
		{
			name: "state reached on the fourth poll",
			setup: func(t *testing.T, c *fakeCluster) {
				c.addUnit(t, "hello.service", helloUnit, stateLoaded)
				c.settleAfter = 3
			},
			goals:   []goal{{name: "hello.service", kind: goalState, state: stateLoaded}},
			wantOut: "Unit hello.service loaded on 113f16a7.../" + testIP + "\n", wantPolls: 4, wantPause: 3,
		},
		{
			name: "two units share the polls",
			setup: func(t *testing.T, c *fakeCluster) {
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
			setup: func(t *testing.T, c *fakeCluster) {
				c.addUnit(t, "hello.service", helloUnit, stateLaunched)
				c.place = ""
			},
			goals:     []goal{{name: "hello.service", kind: goalState, state: stateLaunched}},
			attempts:  2,
			wantErr:   "timed out waiting for unit hello.service to report state launched",
			wantPolls: 2 * pollsPerAttempt, wantPause: 2*pollsPerAttempt - 1,
		},
		{
			name: "reason for two attempts stops an endless wait",
			setup: func(t *testing.T, c *fakeCluster) {
				c.addUnit(t, "hello.service", helloUnit, stateLaunched)
				c.place, c.reason = "", reason
			},
			goals:     []goal{{name: "hello.service", kind: goalState, state: stateLaunched}},
			wantErr:   "Unit hello.service cannot be placed: " + reason,
			wantPolls: reasonAttempts * pollsPerAttempt, wantPause: reasonAttempts*pollsPerAttempt - 1,
		},
		{
			name: "reason shorter than two attempts is tolerated",
			setup: func(t *testing.T, c *fakeCluster) {
				c.addUnit(t, "hello.service", helloUnit, stateLaunched)
				c.reason, c.settleAfter = reason, reasonAttempts*pollsPerAttempt-1
			},
			goals:     []goal{{name: "hello.service", kind: goalState, state: stateLaunched}},
			wantOut:   "Unit hello.service launched on 113f16a7.../" + testIP + "\n",
			wantPolls: reasonAttempts * pollsPerAttempt, wantPause: reasonAttempts*pollsPerAttempt - 1,
		},
		{
			name: "active waits for systemd after launched",
			setup: func(t *testing.T, c *fakeCluster) {
				c.addUnit(t, "hello.service", helloUnit, stateLaunched)
				c.activeAfter = 5
			},
			goals:   []goal{{name: "hello.service", kind: goalActive, state: stateLaunched}},
			wantOut: "Unit hello.service launched on 113f16a7.../" + testIP + "\n", wantPolls: 1, wantPause: 5,
		},
		{
			name: "active timeout names the systemd state",
			setup: func(t *testing.T, c *fakeCluster) {
				c.addUnit(t, "hello.service", helloUnit, stateLaunched)
				c.activeAfter = -1
			},
			goals:     []goal{{name: "hello.service", kind: goalActive, state: stateLaunched}},
			attempts:  1,
			wantOut:   "Unit hello.service launched on 113f16a7.../" + testIP + "\n",
			wantErr:   "timed out waiting for unit hello.service to report state active",
			wantPolls: 1, wantPause: pollsPerAttempt - 1,
		},
		{
			name:      "gone",
			goals:     []goal{{name: "hello.service", kind: goalGone}},
			wantPolls: 1,
		},
		{
			name:      "not gone in time",
			setup:     func(t *testing.T, c *fakeCluster) { c.addUnit(t, "hello.service", helloUnit, stateInactive) },
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
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newFakeCluster()
			if tc.setup != nil {
				tc.setup(t, c)
			}
			var out bytes.Buffer
			pauses := 0
			w := &waiter{api: c, out: &out, maxPolls: blockFlags{attempts: tc.attempts}.maxPolls(),
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
			if c.unitCalls != tc.wantPolls || pauses != tc.wantPause {
				t.Errorf("polls = %d, pauses = %d; want %d, %d", c.unitCalls, pauses, tc.wantPolls, tc.wantPause)
			}
		})
	}
}

func TestWaiterStopsWithContext(t *testing.T) {
	c := newFakeCluster()
	c.addUnit(t, "hello.service", helloUnit, stateLaunched)
	c.place = ""
	ctx, cancel := context.WithCancel(t.Context())
	pauses := 0
	w := &waiter{api: c, out: &bytes.Buffer{}, sleep: func(ctx context.Context, _ time.Duration) error {
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
	if c.unitCalls != 3 {
		t.Errorf("polls = %d, want 3", c.unitCalls)
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
