package agent

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/fleet-next/fleet/unit"
)

// unitContent is canonical unit text; version changes its hash and
// install adds an [Install] section.
func unitContent(name string, version int, install bool) string {
	text := fmt.Sprintf("[Unit]\nDescription=%s v%d\n\n[Service]\nExecStart=/bin/sleep %d\n", name, version, 100+version)
	if install {
		text += "\n[Install]\nWantedBy=multi-user.target\n"
	}
	return text
}

func placement(name string, desired unit.FleetState, version int, install bool) unit.Placement {
	content := unitContent(name, version, install)
	return unit.Placement{Unit: name, Machine: "m1", Hash: unit.HashOf(content), Desired: desired, Content: content}
}

// Systemd states a host may report.
func sdRunning() unit.SystemdState {
	return unit.SystemdState{LoadState: "loaded", ActiveState: "active", SubState: "running", MainPID: 4242}
}
func sdStopped() unit.SystemdState {
	return unit.SystemdState{LoadState: "loaded", ActiveState: "inactive", SubState: "dead"}
}
func sdFailed() unit.SystemdState {
	return unit.SystemdState{LoadState: "loaded", ActiveState: "failed", SubState: "failed"}
}
func sdExited() unit.SystemdState {
	return unit.SystemdState{LoadState: "loaded", ActiveState: "inactive", SubState: "dead"}
}
func sdActivating() unit.SystemdState {
	return unit.SystemdState{LoadState: "loaded", ActiveState: "activating", SubState: "start"}
}
func sdNotFound() unit.SystemdState {
	return unit.SystemdState{LoadState: "not-found", ActiveState: "inactive", SubState: "dead"}
}

// have is the actual state of a unit file of the given version.
func have(name string, version int, install bool, sd unit.SystemdState, launched bool) Actual {
	return Actual{Hash: unit.HashOf(unitContent(name, version, install)), Systemd: sd, Launched: launched}
}

func actionStrings(plan []Action) []string {
	out := make([]string, len(plan))
	for i, a := range plan {
		out[i] = a.String()
	}
	return out
}

func TestPlanRules(t *testing.T) {
	tests := []struct {
		name    string
		desired map[string]unit.Placement
		actual  map[string]Actual
		want    []string
	}{
		{
			name:    "new launched unit with [Install]: write, link, enable, reload, start",
			desired: map[string]unit.Placement{"a.service": placement("a.service", unit.StateLaunched, 1, true)},
			want:    []string{"write-file a.service", "link a.service", "enable a.service", "reload", "start a.service"},
		},
		{
			name:    "new loaded unit without [Install]: write, link, reload",
			desired: map[string]unit.Placement{"a.service": placement("a.service", unit.StateLoaded, 1, false)},
			want:    []string{"write-file a.service", "link a.service", "reload"},
		},
		{
			name: "new units share one reload",
			desired: map[string]unit.Placement{
				"b.service": placement("b.service", unit.StateLaunched, 1, false),
				"a.service": placement("a.service", unit.StateLaunched, 1, true),
				"c.service": placement("c.service", unit.StateLoaded, 1, false),
			},
			want: []string{"write-file a.service", "write-file b.service", "write-file c.service",
				"link a.service", "link b.service", "link c.service", "enable a.service", "reload",
				"start a.service", "start b.service"},
		},
		{
			name:    "changed hash while running: stop, rewrite, reload, start",
			desired: map[string]unit.Placement{"a.service": placement("a.service", unit.StateLaunched, 2, false)},
			actual:  map[string]Actual{"a.service": have("a.service", 1, false, sdRunning(), true)},
			want:    []string{"stop a.service", "write-file a.service", "link a.service", "reload", "start a.service"},
		},
		{
			name:    "changed hash of a failed launched unit: no stop, rewrite, reload, start",
			desired: map[string]unit.Placement{"a.service": placement("a.service", unit.StateLaunched, 2, false)},
			actual:  map[string]Actual{"a.service": have("a.service", 1, false, sdFailed(), true)},
			want:    []string{"write-file a.service", "link a.service", "reload", "start a.service"},
		},
		{
			name:    "changed hash of a loaded unit: rewrite and reload only",
			desired: map[string]unit.Placement{"a.service": placement("a.service", unit.StateLoaded, 2, true)},
			actual:  map[string]Actual{"a.service": have("a.service", 1, true, sdStopped(), false)},
			want:    []string{"write-file a.service", "link a.service", "enable a.service", "reload"},
		},
		{
			name:    "changed hash with desired loaded stops the running unit and does not start it",
			desired: map[string]unit.Placement{"a.service": placement("a.service", unit.StateLoaded, 2, false)},
			actual:  map[string]Actual{"a.service": have("a.service", 1, false, sdRunning(), true)},
			want:    []string{"stop a.service", "write-file a.service", "link a.service", "reload"},
		},
		{
			name:    "changed hash of a launched unit that exited, desired loaded: stop ends the launch",
			desired: map[string]unit.Placement{"a.service": placement("a.service", unit.StateLoaded, 2, false)},
			actual:  map[string]Actual{"a.service": have("a.service", 1, false, sdExited(), true)},
			want:    []string{"stop a.service", "write-file a.service", "link a.service", "reload"},
		},
		{
			name:   "no longer desired and running: stop, disable, remove, reset-failed, reload",
			actual: map[string]Actual{"a.service": have("a.service", 1, true, sdRunning(), true)},
			want: []string{"stop a.service", "disable a.service", "remove-file a.service", "reset-failed a.service",
				"reload"},
		},
		{
			name:   "no longer desired and failed: no stop",
			actual: map[string]Actual{"a.service": have("a.service", 1, false, sdFailed(), true)},
			want:   []string{"disable a.service", "remove-file a.service", "reset-failed a.service", "reload"},
		},
		{
			name:   "no longer desired and starting: stop",
			actual: map[string]Actual{"a.service": have("a.service", 1, false, sdActivating(), false)},
			want: []string{"stop a.service", "disable a.service", "remove-file a.service", "reset-failed a.service",
				"reload"},
		},
		{
			name:    "desired loaded while launched: stop",
			desired: map[string]unit.Placement{"a.service": placement("a.service", unit.StateLoaded, 1, false)},
			actual:  map[string]Actual{"a.service": have("a.service", 1, false, sdRunning(), true)},
			want:    []string{"stop a.service"},
		},
		{
			name:    "desired loaded while launched but exited: stop clears the launch",
			desired: map[string]unit.Placement{"a.service": placement("a.service", unit.StateLoaded, 1, false)},
			actual:  map[string]Actual{"a.service": have("a.service", 1, false, sdExited(), true)},
			want:    []string{"stop a.service"},
		},
		{
			name:    "desired loaded but started by systemd (WantedBy, socket, timer): left to systemd",
			desired: map[string]unit.Placement{"a.service": placement("a.service", unit.StateLoaded, 1, true)},
			actual:  map[string]Actual{"a.service": have("a.service", 1, true, sdRunning(), false)},
			want:    []string{},
		},
		{
			name:    "desired loaded and stopped: nothing",
			desired: map[string]unit.Placement{"a.service": placement("a.service", unit.StateLoaded, 1, false)},
			actual:  map[string]Actual{"a.service": have("a.service", 1, false, sdStopped(), false)},
			want:    []string{},
		},
		{
			name:    "launched and adopted running: nothing, no restart",
			desired: map[string]unit.Placement{"a.service": placement("a.service", unit.StateLaunched, 1, true)},
			actual:  map[string]Actual{"a.service": have("a.service", 1, true, sdRunning(), true)},
			want:    []string{},
		},
		{
			name:    "failed unit already launched: nothing, systemd Restart= decides",
			desired: map[string]unit.Placement{"a.service": placement("a.service", unit.StateLaunched, 1, false)},
			actual:  map[string]Actual{"a.service": have("a.service", 1, false, sdFailed(), true)},
			want:    []string{},
		},
		{
			name:    "launched unit that exited: nothing",
			desired: map[string]unit.Placement{"a.service": placement("a.service", unit.StateLaunched, 1, false)},
			actual:  map[string]Actual{"a.service": have("a.service", 1, false, sdExited(), true)},
			want:    []string{},
		},
		{
			name:    "desired launched, loaded and never started: start",
			desired: map[string]unit.Placement{"a.service": placement("a.service", unit.StateLaunched, 1, false)},
			actual:  map[string]Actual{"a.service": have("a.service", 1, false, sdStopped(), false)},
			want:    []string{"start a.service"},
		},
		{
			name:    "file not loaded by systemd: link and reload",
			desired: map[string]unit.Placement{"a.service": placement("a.service", unit.StateLoaded, 1, false)},
			actual:  map[string]Actual{"a.service": have("a.service", 1, false, sdNotFound(), false)},
			want:    []string{"link a.service", "reload"},
		},
		{
			name:    "file not loaded by systemd, desired launched: link, reload, start",
			desired: map[string]unit.Placement{"a.service": placement("a.service", unit.StateLaunched, 1, false)},
			actual:  map[string]Actual{"a.service": have("a.service", 1, false, sdNotFound(), false)},
			want:    []string{"link a.service", "reload", "start a.service"},
		},
		{
			name:    "file not loaded by systemd, launched and desired loaded: stop, link, reload",
			desired: map[string]unit.Placement{"a.service": placement("a.service", unit.StateLoaded, 1, false)},
			actual:  map[string]Actual{"a.service": have("a.service", 1, false, sdNotFound(), true)},
			want:    []string{"stop a.service", "link a.service", "reload"},
		},
		{
			name: "mixed changes: stops, then removals, then writes, one reload, then starts",
			desired: map[string]unit.Placement{
				"changed.service": placement("changed.service", unit.StateLaunched, 2, false),
				"new.service":     placement("new.service", unit.StateLaunched, 1, true),
				"idle.service":    placement("idle.service", unit.StateLoaded, 1, false),
				"kept.service":    placement("kept.service", unit.StateLaunched, 1, false),
			},
			actual: map[string]Actual{
				"changed.service": have("changed.service", 1, false, sdRunning(), true),
				"gone.service":    have("gone.service", 1, false, sdRunning(), true),
				"idle.service":    have("idle.service", 1, false, sdRunning(), true),
				"kept.service":    have("kept.service", 1, false, sdRunning(), true),
			},
			want: []string{
				"stop changed.service", "stop gone.service", "stop idle.service",
				"disable gone.service", "remove-file gone.service", "reset-failed gone.service",
				"write-file changed.service", "write-file new.service",
				"link changed.service", "link new.service", "enable new.service",
				"reload",
				"start changed.service", "start new.service",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := Plan(tc.desired, tc.actual, hasInstall)
			if got := actionStrings(plan); !slices.Equal(got, tc.want) {
				t.Errorf("plan = %q\nwant   %q", got, tc.want)
			}
			for _, a := range plan {
				if a.Kind == ActWriteFile && a.Content != tc.desired[a.Unit].Content {
					t.Errorf("write-file %s writes %q, want the placement's contents", a.Unit, a.Content)
				}
			}
			checkOrder(t, plan)
			h := newHost(tc.actual)
			h.apply(t, plan)
			if again := Plan(tc.desired, h.units, hasInstall); len(again) != 0 {
				t.Errorf("planning the applied result gave %q", actionStrings(again))
			}
		})
	}
}

// checkOrder reports plans that are not grouped in application order, or
// that reload other than exactly once when they touch unit files.
func checkOrder(t *testing.T, plan []Action) {
	t.Helper()
	reloads, fileChanges := 0, 0
	for i, a := range plan {
		if i > 0 && plan[i-1].Kind > a.Kind {
			t.Errorf("%v comes after %v", a, plan[i-1])
		}
		switch a.Kind {
		case ActReload:
			reloads++
			if a.Unit != "" {
				t.Errorf("reload names unit %q", a.Unit)
			}
		case ActWriteFile, ActRemoveFile, ActLink, ActDisable:
			fileChanges++
		}
		if a.Kind != ActReload && a.Unit == "" {
			t.Errorf("%v names no unit", a.Kind)
		}
	}
	switch {
	case fileChanges > 0 && reloads != 1:
		t.Errorf("%d reloads for %d unit file changes, want exactly one", reloads, fileChanges)
	case fileChanges == 0 && reloads != 0:
		t.Errorf("%d reloads without unit file changes", reloads)
	}
}

// host simulates the unit files and systemd of one machine.
type host struct {
	units   map[string]Actual
	files   map[string]string // written contents; "" for files present before
	linked  map[string]bool
	enabled map[string]bool
}

func newHost(actual map[string]Actual) *host {
	h := &host{units: maps.Clone(actual), files: map[string]string{}, linked: map[string]bool{}, enabled: map[string]bool{}}
	if h.units == nil {
		h.units = map[string]Actual{}
	}
	for name, a := range h.units {
		h.linked[name] = a.Systemd.LoadState == "loaded"
	}
	return h
}

// apply runs a plan the way the agent does, and reports steps that would
// fail against a real systemd.
func (h *host) apply(t *testing.T, plan []Action) {
	t.Helper()
	for _, act := range plan {
		a, ok := h.units[act.Unit]
		switch act.Kind {
		case ActStop:
			if !ok {
				t.Errorf("%v: no such unit", act)
				continue
			}
			a.Systemd.ActiveState, a.Systemd.SubState, a.Systemd.MainPID = "inactive", "dead", 0
			a.Launched = false
		case ActDisable:
			delete(h.linked, act.Unit)
			delete(h.enabled, act.Unit)
			continue
		case ActRemoveFile:
			delete(h.units, act.Unit)
			delete(h.files, act.Unit)
			continue
		case ActResetFailed:
			if !ok {
				continue
			}
			if a.Systemd.ActiveState == "failed" {
				a.Systemd.ActiveState, a.Systemd.SubState = "inactive", "dead"
			}
		case ActWriteFile:
			if !ok {
				a = Actual{Systemd: sdNotFound()}
			}
			a.Hash = unit.HashOf(act.Content)
			h.files[act.Unit] = act.Content
		case ActLink:
			if !ok {
				t.Errorf("%v: no unit file", act)
				continue
			}
			h.linked[act.Unit] = true
		case ActEnable:
			if !hasInstall(h.files[act.Unit]) {
				t.Errorf("%v: unit file has no [Install] section", act)
			}
			h.enabled[act.Unit] = true
		case ActReload:
			for name, u := range h.units {
				if h.linked[name] {
					u.Systemd.LoadState = "loaded"
				} else {
					u.Systemd.LoadState = "not-found"
				}
				h.units[name] = u
			}
			continue
		case ActStart:
			if !ok || a.Systemd.LoadState != "loaded" {
				t.Errorf("%v: unit not loaded", act)
				continue
			}
			a.Systemd = sdRunning()
			a.Launched = true
		default:
			t.Errorf("unknown action %v", act)
			continue
		}
		h.units[act.Unit] = a
	}
}

// testSeed is the seed of a property test: FLEET_TEST_SEED if set (to
// replay a failure), else the clock. It is logged either way.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("FLEET_TEST_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("FLEET_TEST_SEED=%q: %v", v, err)
		}
		seed = s
	}
	t.Logf("seed %d (replay with FLEET_TEST_SEED=%d)", seed, seed)
	return seed
}

// randomHost generates a schedule for this machine and what the host has:
// units in any mix of missing, current, stale, unloaded, running, failed
// and launched.
func randomHost(r *rand.Rand) (map[string]unit.Placement, map[string]Actual) {
	desired := map[string]unit.Placement{}
	actual := map[string]Actual{}
	states := []func() unit.SystemdState{sdRunning, sdStopped, sdFailed, sdExited, sdActivating, sdNotFound}
	for i := range r.IntN(8) {
		name := fmt.Sprintf("svc-%d.service", i)
		install := r.IntN(2) == 0
		if r.IntN(3) > 0 {
			want := []unit.FleetState{unit.StateLoaded, unit.StateLaunched}[r.IntN(2)]
			desired[name] = placement(name, want, 1+r.IntN(2), install)
		}
		if r.IntN(3) > 0 {
			actual[name] = have(name, 1+r.IntN(2), install, states[r.IntN(len(states))](), r.IntN(2) == 0)
		}
	}
	return desired, actual
}

func TestPlanProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 0xa6e7))
	for i := range 300 {
		desired, actual := randomHost(r)
		t.Run(fmt.Sprintf("host %d", i), func(t *testing.T) {
			plan := Plan(desired, actual, hasInstall)
			checkOrder(t, plan)
			for range 3 {
				if again := Plan(maps.Clone(desired), maps.Clone(actual), hasInstall); !reflect.DeepEqual(again, plan) {
					t.Fatalf("planning again gave %q, first %q", actionStrings(again), actionStrings(plan))
				}
			}
			h := newHost(actual)
			h.apply(t, plan)
			if again := Plan(desired, h.units, hasInstall); len(again) != 0 {
				t.Errorf("planning the applied result gave %q\nfirst plan %q\ndesired %v\nactual %+v",
					actionStrings(again), actionStrings(plan), desired, actual)
			}
			for name, p := range desired {
				a, ok := h.units[name]
				switch {
				case !ok || a.Hash != p.Hash:
					t.Errorf("%s: file missing or stale after the plan", name)
				case a.Systemd.LoadState != "loaded":
					t.Errorf("%s: not loaded after the plan", name)
				case p.Desired == unit.StateLoaded && a.Launched:
					t.Errorf("%s: desired loaded but still launched by the agent", name)
				case p.Desired == unit.StateLaunched && !a.Launched:
					t.Errorf("%s: desired launched but never started", name)
				}
			}
			for name := range h.units {
				if _, ok := desired[name]; !ok {
					t.Errorf("%s: still on the host though not scheduled here", name)
				}
			}
		})
	}
}
