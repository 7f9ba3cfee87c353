package fleetctl

import (
	"slices"
	"strings"
	"testing"
)

const (
	helloV2    = "[Unit]\nDescription=Hello again\n\n[Service]\nExecStart=/bin/sleep 2000\n"
	globalUnit = "[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nGlobal=true\n"
)

// TestCommands runs whole command lines against the in-memory cluster and
// checks what they print, their exit status and what they changed.
func TestCommands(t *testing.T) {
	launchedLine := "Unit hello.service launched on 113f16a7.../" + testIP + "\n"
	tests := []struct {
		name       string
		setup      func(t *testing.T, c *fakeCluster)
		files      map[string]string
		args       []string
		wantCode   int
		wantStdout string // exact
		wantStderr string // exact
		check      func(t *testing.T, c *fakeCluster)
	}{
		{
			name: "start creates from local file and waits until active", files: map[string]string{"hello.service": helloUnit},
			args: []string{"start", "hello.service"}, wantStdout: launchedLine,
			check: func(t *testing.T, c *fakeCluster) {
				wantDesired(t, c, "hello.service", stateLaunched)
				if !slices.Equal(c.created, []string{"hello.service"}) || len(c.targets) != 0 {
					t.Errorf("created %v, targets %v; want one create with its final state", c.created, c.targets)
				}
			},
		},
		{
			name: "start finds the mangled file name", files: map[string]string{"hello.service": helloUnit},
			args: []string{"start", "hello"}, wantStdout: launchedLine,
		},
		{
			name: "start no-block triggers once", files: map[string]string{"hello.service": helloUnit},
			args: []string{"start", "--no-block", "hello.service"}, wantStdout: "Triggered unit hello.service start\n",
		},
		{
			name: "start of a loaded unit raises its target state",
			setup: func(t *testing.T, c *fakeCluster) {
				c.addUnit(t, "hello.service", helloUnit, stateLoaded)
			},
			args: []string{"start", "hello"}, wantStdout: launchedLine,
			check: func(t *testing.T, c *fakeCluster) {
				if !slices.Equal(c.targets, []string{"hello.service=launched"}) || len(c.created) != 0 {
					t.Errorf("targets %v, created %v", c.targets, c.created)
				}
			},
		},
		{
			name: "start of a global unit is not waited for", files: map[string]string{"g.service": globalUnit},
			args: []string{"start", "g.service"}, wantStdout: "Triggered global unit g.service start\n",
		},
		{
			name:  "start times out waiting for launched",
			setup: func(_ *testing.T, c *fakeCluster) { c.place = "" },
			files: map[string]string{"hello.service": helloUnit},
			args:  []string{"start", "--block-attempts=1", "hello.service"}, wantCode: ExitError,
			wantStderr: "Error waiting for units: timed out waiting for unit hello.service to report state launched\n",
		},
		{
			name:  "start times out waiting for systemd",
			setup: func(_ *testing.T, c *fakeCluster) { c.activeAfter = -1 },
			files: map[string]string{"hello.service": helloUnit},
			args:  []string{"start", "--block-attempts=2", "hello.service"}, wantCode: ExitError,
			wantStdout: launchedLine,
			wantStderr: "Error waiting for units: timed out waiting for unit hello.service to report state active\n",
		},
		{
			name:  "start waits for slow systemd within the budget",
			setup: func(_ *testing.T, c *fakeCluster) { c.activeAfter = 12 },
			files: map[string]string{"hello.service": helloUnit},
			args:  []string{"start", "--block-attempts=2", "hello.service"}, wantStdout: launchedLine,
		},
		{
			name: "start of an unplaceable unit fails with the reason",
			setup: func(_ *testing.T, c *fakeCluster) {
				c.place, c.reason = "", "no machine matches MachineMetadata"
			},
			files: map[string]string{"hello.service": helloUnit},
			args:  []string{"start", "hello.service"}, wantCode: ExitError,
			wantStderr: "Unit hello.service cannot be placed: no machine matches MachineMetadata\n",
		},
		{
			name: "invalid name creates nothing", args: []string{"start", "@x.service"}, wantCode: ExitError,
			wantStderr: "Error creating units: @x.service: unit name cannot start in \"@\"\n",
			check:      wantNothingCreated,
		},
		{
			name:     "invalid unit file creates nothing",
			files:    map[string]string{"a.service": helloUnit, "b.service": helloUnit + "\n[X-Fleet]\nMachineID=abc\nGlobal=true\n"},
			args:     []string{"start", "a.service", "b.service"},
			wantCode: ExitError, wantStderr: "Error creating units: unit b.service: MachineID cannot be used with Global\n",
			check: wantNothingCreated,
		},
		{
			name: "missing unit", args: []string{"load", "nope"}, wantCode: ExitError,
			wantStderr: "Error creating units: unable to find Unit(nope.service) in Registry or on filesystem\n",
		},
		{
			name: "template cannot be started", files: map[string]string{"app@.service": helloUnit},
			args: []string{"start", "app@.service"}, wantCode: ExitError,
			wantStderr: "Error creating units: cannot activate template \"app@.service\"\n",
			check:      wantNothingCreated,
		},
		{
			name:  "unknown X-Fleet option warns",
			files: map[string]string{"hello.service": helloUnit + "\n[X-Fleet]\nFoo=bar\n"},
			args:  []string{"submit", "hello.service"}, wantStdout: "Unit hello.service inactive\n",
			wantStderr: "Unit hello.service: unrecognized requirement in [X-Fleet] section: \"Foo\"\n",
		},
		{
			name: "submit creates inactive", files: map[string]string{"hello.service": helloUnit},
			args: []string{"submit", "hello.service"}, wantStdout: "Unit hello.service inactive\n",
			check: func(t *testing.T, c *fakeCluster) { wantDesired(t, c, "hello.service", stateInactive) },
		},
		{
			name:  "submit of an identical unit does nothing",
			setup: func(t *testing.T, c *fakeCluster) { c.addUnit(t, "hello.service", helloUnit, stateLaunched) },
			files: map[string]string{"hello.service": helloUnit},
			args:  []string{"submit", "hello.service"},
			check: wantNothingCreated,
		},
		{
			name:  "submit of a differing unit warns",
			setup: func(t *testing.T, c *fakeCluster) { c.addUnit(t, "hello.service", helloUnit, stateInactive) },
			files: map[string]string{"hello.service": helloV2},
			args:  []string{"submit", "hello.service"},
			wantStderr: "WARNING: Unit hello.service in registry differs from local unit file hello.service. " +
				"Add --replace to override.\n",
			check: wantNothingCreated,
		},
		{
			name:  "submit --replace refuses a launched unit",
			setup: func(t *testing.T, c *fakeCluster) { c.addUnit(t, "hello.service", helloUnit, stateLaunched) },
			files: map[string]string{"hello.service": helloV2},
			args:  []string{"submit", "--replace", "hello.service"},
			wantStderr: "Warning: can not replace Unit(hello.service) in state 'launched', " +
				"use the appropriate command\n",
			check: wantNothingCreated,
		},
		{
			name:       "submit --replace of an identical unit",
			setup:      func(t *testing.T, c *fakeCluster) { c.addUnit(t, "hello.service", helloUnit, stateInactive) },
			files:      map[string]string{"hello.service": helloUnit},
			args:       []string{"submit", "--replace", "hello.service"},
			wantStdout: "Found same Unit(hello.service) in Registry, nothing to do\n",
			check:      wantNothingCreated,
		},
		{
			name:  "start --replace replaces a launched unit",
			setup: func(t *testing.T, c *fakeCluster) { c.addUnit(t, "hello.service", helloUnit, stateLaunched) },
			files: map[string]string{"hello.service": helloV2},
			args:  []string{"start", "--replace", "hello.service"}, wantStdout: launchedLine,
			check: func(t *testing.T, c *fakeCluster) {
				wantDesired(t, c, "hello.service", stateLaunched)
				if got := describeUnit(c.units["hello.service"]).description; got != "Hello again" {
					t.Errorf("unit not replaced: description %q", got)
				}
			},
		},
		{
			name:       "load --replace refuses a launched unit",
			setup:      func(t *testing.T, c *fakeCluster) { c.addUnit(t, "hello.service", helloUnit, stateLaunched) },
			files:      map[string]string{"hello.service": helloV2},
			args:       []string{"load", "--replace", "hello.service"},
			wantStdout: "Unit hello.service loaded on 113f16a7.../" + testIP + "\n",
			wantStderr: "Warning: can not replace Unit(hello.service) in state 'launched', " +
				"use the appropriate command\n",
		},
		{
			name:       "instance from a template in the registry",
			setup:      func(t *testing.T, c *fakeCluster) { c.addUnit(t, "app@.service", helloUnit, stateInactive) },
			args:       []string{"load", "app@1"},
			wantStdout: "Unit app@1.service loaded on 113f16a7.../" + testIP + "\n",
			check: func(t *testing.T, c *fakeCluster) {
				if describeUnit(c.units["app@1.service"]).hash != describeUnit(c.units["app@.service"]).hash {
					t.Errorf("instance hash differs from its template")
				}
			},
		},
		{
			name:       "stop a launched unit",
			setup:      func(t *testing.T, c *fakeCluster) { c.addUnit(t, "hello.service", helloUnit, stateLaunched) },
			args:       []string{"stop", "hello"},
			wantStdout: "Unit hello.service loaded on 113f16a7.../" + testIP + "\n",
			wantStderr: "Successfully stopped units [hello.service].\n",
			check:      func(t *testing.T, c *fakeCluster) { wantDesired(t, c, "hello.service", stateLoaded) },
		},
		{
			name:  "stop an inactive unit fails",
			setup: func(t *testing.T, c *fakeCluster) { c.addUnit(t, "hello.service", helloUnit, stateInactive) },
			args:  []string{"stop", "hello"}, wantCode: ExitError,
			wantStderr: "Unable to stop unit hello.service in state inactive\n",
		},
		{
			name: "stop unknown units", args: []string{"stop", "nope"}, wantStderr: "Units not found in registry\n",
		},
		{
			name: "unload with no-block",
			setup: func(t *testing.T, c *fakeCluster) {
				c.addUnit(t, "hello.service", helloUnit, stateLaunched)
				c.addUnit(t, "g.service", globalUnit, stateLaunched)
			},
			args:       []string{"unload", "--no-block", "hello", "g"},
			wantStdout: "Triggered unit hello.service unload\nTriggered global unit g.service unload\n",
			check: func(t *testing.T, c *fakeCluster) {
				wantDesired(t, c, "hello.service", stateInactive)
				wantDesired(t, c, "g.service", stateInactive)
			},
		},
		{
			name:  "unload waits for inactive",
			setup: func(t *testing.T, c *fakeCluster) { c.addUnit(t, "hello.service", helloUnit, stateLoaded) },
			args:  []string{"unload", "hello"}, wantStdout: "Unit hello.service inactive\n",
			wantStderr: "Successfully unloaded units [hello.service].\n",
		},
		{
			name:  "destroy",
			setup: func(t *testing.T, c *fakeCluster) { c.addUnit(t, "hello.service", helloUnit, stateLaunched) },
			args:  []string{"destroy", "hello", "nope"}, wantStdout: "Destroyed hello.service\n",
			check: func(t *testing.T, c *fakeCluster) {
				if _, ok := c.units["hello.service"]; ok {
					t.Errorf("hello.service still exists")
				}
			},
		},
		{
			name: "destroy unknown units", args: []string{"destroy", "nope"}, wantStderr: "Units not found in registry\n",
		},
		{
			name: "cat prints the canonical form",
			setup: func(t *testing.T, c *fakeCluster) {
				c.addUnit(t, "hello.service", "# comment\n"+helloUnit, stateInactive)
			},
			args: []string{"cat", "hello"}, wantStdout: helloUnit,
		},
		{
			name: "cat unknown unit", args: []string{"cat", "nope"}, wantCode: ExitError,
			wantStderr: "Unit nope.service not found\n",
		},
		{
			name: "list-unit-files",
			setup: func(t *testing.T, c *fakeCluster) {
				c.addUnit(t, "hello.service", helloUnit, stateLaunched)
			},
			args:       []string{"list-unit-files", "--no-legend", "--fields=unit,dstate,state,target"},
			wantStdout: "hello.service\tlaunched\tlaunched\t113f16a7.../" + testIP + "\n",
		},
		{
			name:       "list-units",
			setup:      func(t *testing.T, c *fakeCluster) { c.addUnit(t, "hello.service", helloUnit, stateLaunched) },
			args:       []string{"list-units"},
			wantStdout: "UNIT\t\tMACHINE\t\t\t\tACTIVE\tSUB\nhello.service\t113f16a7.../" + testIP + "\tactive\t-\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newFakeCluster()
			if tc.setup != nil {
				tc.setup(t, c)
			}
			res := runFleetctl(t, c, nil, tc.files, tc.args...)
			if res.code != tc.wantCode {
				t.Errorf("exit status = %d, want %d", res.code, tc.wantCode)
			}
			if res.stdout != tc.wantStdout {
				t.Errorf("stdout = %q, want %q", res.stdout, tc.wantStdout)
			}
			if res.stderr != tc.wantStderr {
				t.Errorf("stderr = %q, want %q", res.stderr, tc.wantStderr)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

func wantDesired(t *testing.T, c *fakeCluster, name, desired string) {
	t.Helper()
	u, ok := c.units[name]
	if !ok {
		t.Fatalf("unit %s does not exist", name)
	}
	if u.DesiredState != desired {
		t.Errorf("unit %s desired state = %q, want %q", name, u.DesiredState, desired)
	}
}

func wantNothingCreated(t *testing.T, c *fakeCluster) {
	t.Helper()
	if len(c.created) > 0 {
		t.Errorf("units created: %s", strings.Join(c.created, ", "))
	}
}
