package systemdtest

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleet-next/fleet/agent"
	"github.com/fleet-next/fleet/unit"
)

// Unit files the suite uses.
const (
	SleepUnit = "[Unit]\nDescription=contract sleeper\n\n[Service]\nExecStart=/bin/sleep 3600\n"
	FailUnit  = "[Unit]\nDescription=contract failure\n\n[Service]\nExecStart=/bin/false\n"
)

// Timeout guards every wait of the suite against a manager that never
// reaches a state; it is a hang guard, not a performance expectation.
const Timeout = 30 * time.Second

const pollInterval = 20 * time.Millisecond

// Subject is one manager under test.
type Subject struct {
	Manager agent.UnitManager
	// Restart stops the systemd manager behind Manager and starts it again
	// (same units directory and runtime links, nothing running), returning
	// once the new manager is ready: what a host sees when its manager or
	// its bus restarts.
	Restart func(t *testing.T)
	// HostUnit names a unit the host has of its own, outside the units
	// directory.
	HostUnit string
}

// Run runs the UnitManager contract. Every subtest calls newSubject once
// and expects a manager with an empty units directory that is cleaned up
// when the subtest ends (t.Cleanup).
func Run(t *testing.T, newSubject func(t *testing.T) Subject) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, ctx context.Context, m agent.UnitManager)
	}{
		{"BadSetting", testBadSetting},
		{"StatesUnknownTypes", testStatesUnknownTypes},
		{"UnitFiles", testUnitFiles},
		{"LinkLoads", testLinkLoads},
		{"StartStopWatch", testStartStopWatch},
		{"EnableWantedBy", testEnableWantedBy},
		{"ResetFailed", testResetFailed},
		{"StatesUnknown", testStatesUnknown},
		{"StartUnknown", testStartUnknown},
		{"WatchEndsWithContext", testWatchEnds},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*Timeout)
			defer cancel()
			tc.run(t, ctx, newSubject(t).Manager)
		})
	}
	t.Run("HostUnit", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 2*Timeout)
		defer cancel()
		testHostUnit(t, ctx, newSubject(t))
	})
	t.Run("ManagerRestart", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 2*Timeout)
		defer cancel()
		testManagerRestart(t, ctx, newSubject(t))
	})
}

// BadSettingUnit is a service systemd refuses to start: nothing to run.
const BadSettingUnit = "[Unit]\nDescription=contract bad setting\n\n[Service]\nType=simple\n"

func testBadSetting(t *testing.T, ctx context.Context, m agent.UnitManager) {
	const name = "contract-bad.service"
	install(t, ctx, m, name, BadSettingUnit)
	if st := states(t, ctx, m, name); st.LoadState != "bad-setting" {
		t.Fatalf("LoadState = %q, want bad-setting", st.LoadState)
	}
	err := m.Start(ctx, name)
	if err == nil || !strings.Contains(err.Error(), "bad unit file setting") {
		t.Fatalf("Start = %v, want an error saying %q", err, "bad unit file setting")
	}
}

// testStatesUnknownTypes asks for names of unit types systemd no longer has
// beside a real one: each unknown name reads not-found and the real one
// keeps its state.
func testStatesUnknownTypes(t *testing.T, ctx context.Context, m agent.UnitManager) {
	const name = "contract-known.service"
	install(t, ctx, m, name, SleepUnit)
	got, err := m.States(ctx, []string{"x.snapshot", name, "y.busname"})
	if err != nil {
		t.Fatalf("States: %v", err)
	}
	if got[name].LoadState != "loaded" {
		t.Errorf("%s: %+v, want loaded", name, got[name])
	}
	for _, n := range []string{"x.snapshot", "y.busname"} {
		if got[n].LoadState != "not-found" {
			t.Errorf("%s: %+v, want not-found", n, got[n])
		}
	}
}

// testManagerRestart: a restart of the manager ends every Watch; afterwards
// the same Manager value works again without being recreated (it
// reconnects), its runtime links still load the unit, and a new Watch
// reports changes.
func testManagerRestart(t *testing.T, ctx context.Context, s Subject) {
	const name = "contract-restart.service"
	m := s.Manager
	install(t, ctx, m, name, SleepUnit)
	if err := m.Start(ctx, name); err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitState(t, ctx, m, name, "active", func(st unit.SystemdState) bool { return st.ActiveState == "active" })
	events, err := m.Watch(ctx)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	s.Restart(t)
	drain := time.NewTimer(Timeout)
	defer drain.Stop()
	for open := true; open; {
		select {
		case _, open = <-events:
		case <-drain.C:
			t.Fatal("Watch still open after the manager restarted")
		}
	}
	// The first call after the restart may fail while the connection is
	// found lost; the next ones must succeed.
	var st unit.SystemdState
	deadline := time.Now().Add(Timeout)
	for {
		got, err := m.States(ctx, []string{name})
		if err == nil {
			st = got[name]
			break
		}
		var u interface{ Unavailable() bool }
		if !errors.As(err, &u) || !u.Unavailable() {
			t.Fatalf("States after restart: %v, want success or an error whose Unavailable() is true", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("States still failing after restart: %v", err)
		}
		time.Sleep(pollInterval)
	}
	if st.LoadState != "loaded" || st.ActiveState == "active" {
		t.Fatalf("after restart: %+v, want loaded and not running", st)
	}
	events, err = m.Watch(ctx)
	if err != nil {
		t.Fatalf("Watch after restart: %v", err)
	}
	if err := m.Start(ctx, name); err != nil {
		t.Fatalf("Start after restart: %v", err)
	}
	waitForName(t, ctx, events, name, "start after restart")
	waitState(t, ctx, m, name, "active", func(st unit.SystemdState) bool { return st.ActiveState == "active" })
}

func testUnitFiles(t *testing.T, ctx context.Context, m agent.UnitManager) {
	contents := map[string]string{
		"a.service":       SleepUnit,
		"b.service":       FailUnit,
		"a-other.service": SleepUnit + "\n# changed\n",
	}
	steps := []struct {
		name   string
		do     func() error
		expect map[string]string // name -> contents expected on disk
	}{
		{"empty", func() error { return nil }, map[string]string{}},
		{"write a", func() error { return m.WriteUnitFile(ctx, "a.service", contents["a.service"]) },
			map[string]string{"a.service": contents["a.service"]}},
		{"write b", func() error { return m.WriteUnitFile(ctx, "b.service", contents["b.service"]) },
			map[string]string{"a.service": contents["a.service"], "b.service": contents["b.service"]}},
		{"overwrite a", func() error { return m.WriteUnitFile(ctx, "a.service", contents["a-other.service"]) },
			map[string]string{"a.service": contents["a-other.service"], "b.service": contents["b.service"]}},
		{"remove b", func() error { return m.RemoveUnitFile(ctx, "b.service") },
			map[string]string{"a.service": contents["a-other.service"]}},
		{"remove b again", func() error { return m.RemoveUnitFile(ctx, "b.service") },
			map[string]string{"a.service": contents["a-other.service"]}},
		{"remove never written", func() error { return m.RemoveUnitFile(ctx, "never.service") },
			map[string]string{"a.service": contents["a-other.service"]}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got, err := m.UnitFiles(ctx)
		if err != nil {
			t.Fatalf("%s: UnitFiles: %v", st.name, err)
		}
		want := make(map[string]unit.Hash, len(st.expect))
		for name, c := range st.expect {
			want[name] = unit.HashOf(c)
		}
		if !maps.Equal(got, want) {
			t.Fatalf("%s: UnitFiles = %v, want %v", st.name, got, want)
		}
	}
}

func testLinkLoads(t *testing.T, ctx context.Context, m agent.UnitManager) {
	const name = "contract-link.service"
	before := states(t, ctx, m, name)
	if before.LoadState != "not-found" {
		t.Fatalf("before link: LoadState = %q, want not-found", before.LoadState)
	}
	install(t, ctx, m, name, SleepUnit)
	st := states(t, ctx, m, name)
	if st.LoadState != "loaded" || st.ActiveState != "inactive" {
		t.Fatalf("after link and reload: %+v, want loaded and inactive", st)
	}
}

func testStartStopWatch(t *testing.T, ctx context.Context, m agent.UnitManager) {
	const name = "contract-sleep.service"
	install(t, ctx, m, name, SleepUnit)
	events, err := m.Watch(ctx)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}

	if err := m.Start(ctx, name); err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitForName(t, ctx, events, name, "start")
	st := waitState(t, ctx, m, name, "active", func(s unit.SystemdState) bool {
		return s.ActiveState == "active" && s.SubState == "running"
	})
	if st.MainPID == 0 {
		t.Errorf("running service has MainPID 0: %+v", st)
	}

	if err := m.Stop(ctx, name); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	waitForName(t, ctx, events, name, "stop")
	st = waitState(t, ctx, m, name, "inactive", func(s unit.SystemdState) bool { return s.ActiveState == "inactive" })
	if st.MainPID != 0 {
		t.Errorf("stopped service has MainPID %d", st.MainPID)
	}
}

func testEnableWantedBy(t *testing.T, ctx context.Context, m agent.UnitManager) {
	const (
		target  = "contract-group.target"
		service = "contract-wanted.service"
	)
	install(t, ctx, m, target, "[Unit]\nDescription=contract group\n")
	install(t, ctx, m, service, SleepUnit+"\n[Install]\nWantedBy="+target+"\n")

	// Enabled: starting the target pulls the service in. A target is ordered
	// after what it wants, so the service is up once the target is active.
	if err := m.Enable(ctx, []string{service}); err != nil {
		t.Fatalf("Enable: %v", err)
	}
	reload(t, ctx, m)
	if err := m.Start(ctx, target); err != nil {
		t.Fatalf("Start %s: %v", target, err)
	}
	waitState(t, ctx, m, target, "active", func(s unit.SystemdState) bool { return s.ActiveState == "active" })
	if st := states(t, ctx, m, service); st.ActiveState != "active" && st.ActiveState != "activating" {
		t.Fatalf("enabled %s not started with %s: %+v", service, target, st)
	}

	// Disabled: the same start leaves the service alone.
	for _, n := range []string{service, target} {
		if err := m.Stop(ctx, n); err != nil {
			t.Fatalf("Stop %s: %v", n, err)
		}
		waitState(t, ctx, m, n, "inactive", func(s unit.SystemdState) bool { return s.ActiveState == "inactive" })
	}
	if err := m.Disable(ctx, []string{service}); err != nil {
		t.Fatalf("Disable: %v", err)
	}
	reload(t, ctx, m)
	if err := m.Start(ctx, target); err != nil {
		t.Fatalf("Start %s again: %v", target, err)
	}
	waitState(t, ctx, m, target, "active", func(s unit.SystemdState) bool { return s.ActiveState == "active" })
	if st := states(t, ctx, m, service); st.ActiveState != "inactive" {
		t.Fatalf("disabled %s started with %s: %+v", service, target, st)
	}
}

func testResetFailed(t *testing.T, ctx context.Context, m agent.UnitManager) {
	const (
		failing = "contract-fail.service"
		idle    = "contract-idle.service"
	)
	install(t, ctx, m, failing, FailUnit)
	install(t, ctx, m, idle, SleepUnit)
	if err := m.Start(ctx, failing); err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitState(t, ctx, m, failing, "failed", func(s unit.SystemdState) bool { return s.ActiveState == "failed" })

	tests := []struct {
		name, unit string
		want       string // ActiveState after ResetFailed
	}{
		{"failed unit", failing, "inactive"},
		{"failed unit again", failing, "inactive"},
		{"inactive unit", idle, "inactive"},
		{"unknown unit", "contract-unknown.service", "inactive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := m.ResetFailed(ctx, tc.unit); err != nil {
				t.Fatalf("ResetFailed(%s): %v", tc.unit, err)
			}
			if st := states(t, ctx, m, tc.unit); st.ActiveState != tc.want {
				t.Errorf("after ResetFailed(%s): %+v, want ActiveState %q", tc.unit, st, tc.want)
			}
		})
	}
}

func testStatesUnknown(t *testing.T, ctx context.Context, m agent.UnitManager) {
	const known = "contract-known.service"
	install(t, ctx, m, known, SleepUnit)
	tests := []struct {
		name  string
		names []string
		want  map[string]string // name -> LoadState
	}{
		{"none", nil, map[string]string{}},
		{"unknown", []string{"contract-unknown.service"}, map[string]string{"contract-unknown.service": "not-found"}},
		{"mixed", []string{known, "contract-unknown.service"},
			map[string]string{known: "loaded", "contract-unknown.service": "not-found"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := m.States(ctx, tc.names)
			if err != nil {
				t.Fatalf("States: %v", err)
			}
			load := make(map[string]string, len(got))
			for n, st := range got {
				load[n] = st.LoadState
			}
			if !maps.Equal(load, tc.want) {
				t.Fatalf("States(%v) load states = %v, want %v", tc.names, load, tc.want)
			}
			for n, st := range got {
				if st.LoadState == "not-found" && (st.ActiveState != "inactive" || st.MainPID != 0) {
					t.Errorf("unknown %s: %+v, want inactive without a main PID", n, st)
				}
			}
		})
	}
}

func testStartUnknown(t *testing.T, ctx context.Context, m agent.UnitManager) {
	if err := m.Start(ctx, "contract-unknown.service"); err == nil {
		t.Fatal("Start of an unknown unit succeeded")
	}
}

func testWatchEnds(t *testing.T, ctx context.Context, m agent.UnitManager) {
	wctx, cancel := context.WithCancel(ctx)
	events, err := m.Watch(wctx)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	cancel()
	guard := time.NewTimer(Timeout)
	defer guard.Stop()
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-guard.C:
			t.Fatal("Watch channel not closed after its context ended")
		}
	}
}

// install writes, links and loads a unit file.
func install(t *testing.T, ctx context.Context, m agent.UnitManager, name, content string) {
	t.Helper()
	if err := m.WriteUnitFile(ctx, name, content); err != nil {
		t.Fatalf("WriteUnitFile(%s): %v", name, err)
	}
	if err := m.Link(ctx, []string{name}); err != nil {
		t.Fatalf("Link(%s): %v", name, err)
	}
	reload(t, ctx, m)
}

func reload(t *testing.T, ctx context.Context, m agent.UnitManager) {
	t.Helper()
	if err := m.Reload(ctx); err != nil {
		t.Fatalf("Reload: %v", err)
	}
}

// states returns the state of one unit.
func states(t *testing.T, ctx context.Context, m agent.UnitManager, name string) unit.SystemdState {
	t.Helper()
	got, err := m.States(ctx, []string{name})
	if err != nil {
		t.Fatalf("States(%s): %v", name, err)
	}
	st, ok := got[name]
	if !ok {
		t.Fatalf("States(%s) has no entry for it: %v", name, got)
	}
	return st
}

// waitState polls States until ok holds for name.
func waitState(t *testing.T, ctx context.Context, m agent.UnitManager, name, what string, ok func(unit.SystemdState) bool) unit.SystemdState {
	t.Helper()
	guard := time.NewTimer(Timeout)
	defer guard.Stop()
	for {
		st := states(t, ctx, m, name)
		if ok(st) {
			return st
		}
		select {
		case <-guard.C:
			t.Fatalf("%s never became %s; last state %+v", name, what, st)
		case <-ctx.Done():
			t.Fatalf("%s never became %s: %v; last state %+v", name, what, ctx.Err(), st)
		case <-time.After(pollInterval):
		}
	}
}

// waitForName reads batches from events until one names name.
func waitForName(t *testing.T, ctx context.Context, events <-chan []string, name, after string) {
	t.Helper()
	guard := time.NewTimer(Timeout)
	defer guard.Stop()
	for {
		select {
		case batch, ok := <-events:
			if !ok {
				t.Fatalf("Watch channel closed before it reported %s after %s", name, after)
			}
			if dup := duplicate(batch); dup != "" {
				t.Errorf("Watch batch names %s twice: %v", dup, batch)
			}
			if slices.Contains(batch, name) {
				return
			}
		case <-guard.C:
			t.Fatalf("Watch did not report %s after %s", name, after)
		case <-ctx.Done():
			t.Fatalf("Watch did not report %s after %s: %v", name, after, ctx.Err())
		}
	}
}

// duplicate returns a name that occurs twice in batch, or "".
func duplicate(batch []string) string {
	seen := make(map[string]bool, len(batch))
	for _, n := range batch {
		if seen[n] {
			return n
		}
		seen[n] = true
	}
	return ""
}

// testHostUnit: the host's own unit is reported with where it is defined;
// fleet's own units and unknown names are not.
func testHostUnit(t *testing.T, ctx context.Context, s Subject) {
	m := s.Manager
	if path, err := m.HostUnit(ctx, s.HostUnit); err != nil || path == "" {
		t.Errorf("HostUnit(%s) = %q, %v; want where the host defines it", s.HostUnit, path, err)
	}
	const ours = "contract-ours.service"
	install(t, ctx, m, ours, SleepUnit)
	if path, err := m.HostUnit(ctx, ours); err != nil || path != "" {
		t.Errorf("HostUnit(%s), a unit fleet wrote and linked = %q, %v; want \"\"", ours, path, err)
	}
	if path, err := m.HostUnit(ctx, "contract-nowhere.service"); err != nil || path != "" {
		t.Errorf("HostUnit of an unknown unit = %q, %v; want \"\"", path, err)
	}
}
