package systemdfake_test

import (
	"context"
	"errors"
	"testing"

	"github.com/fleet-next/fleet/agent"
	"github.com/fleet-next/fleet/systemd/systemdfake"
	"github.com/fleet-next/fleet/systemd/systemdtest"
	"github.com/fleet-next/fleet/unit"
)

var _ agent.UnitManager = (*systemdfake.Manager)(nil)

// TestContract runs the UnitManager contract the D-Bus adapter passes
// against a real systemd.
func TestContract(t *testing.T) {
	systemdtest.Run(t, func(t *testing.T) systemdtest.Subject {
		m := systemdfake.New()
		m.AddHostUnit("dbus.socket", "/usr/lib/systemd/user/dbus.socket")
		return systemdtest.Subject{Manager: m, Restart: func(*testing.T) { m.Restart() }, HostUnit: "dbus.socket"}
	})
}

// install writes, links and reloads name.
func install(t *testing.T, ctx context.Context, m *systemdfake.Manager, name, content string) {
	t.Helper()
	if err := m.WriteUnitFile(ctx, name, content); err != nil {
		t.Fatal(err)
	}
	if err := m.Link(ctx, []string{name}); err != nil {
		t.Fatal(err)
	}
	if err := m.Reload(ctx); err != nil {
		t.Fatal(err)
	}
}

func state(t *testing.T, ctx context.Context, m *systemdfake.Manager, name string) unit.SystemdState {
	t.Helper()
	st, err := m.States(ctx, []string{name})
	if err != nil {
		t.Fatal(err)
	}
	return st[name]
}

func TestServiceOutcomes(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    unit.SystemdState // MainPID compared as set / unset
	}{
		{"long running", systemdtest.SleepUnit,
			unit.SystemdState{LoadState: "loaded", ActiveState: "active", SubState: "running", MainPID: 1}},
		{"fails", systemdtest.FailUnit,
			unit.SystemdState{LoadState: "loaded", ActiveState: "failed", SubState: "failed"}},
		{"exits cleanly", "[Service]\nExecStart=/bin/true\n",
			unit.SystemdState{LoadState: "loaded", ActiveState: "inactive", SubState: "dead"}},
		{"oneshot remains", "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=-/usr/bin/true\n",
			unit.SystemdState{LoadState: "loaded", ActiveState: "active", SubState: "exited"}},
		{"unparseable", "no section here\n",
			unit.SystemdState{LoadState: "error", ActiveState: "inactive", SubState: "dead"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			m := systemdfake.New()
			install(t, ctx, m, "x.service", tc.content)
			err := m.Start(ctx, "x.service")
			if (err != nil) != (tc.want.LoadState != "loaded") {
				t.Fatalf("Start: %v", err)
			}
			got := state(t, ctx, m, "x.service")
			if (got.MainPID != 0) != (tc.want.MainPID != 0) {
				t.Errorf("MainPID %d, want set: %v", got.MainPID, tc.want.MainPID != 0)
			}
			got.MainPID, tc.want.MainPID = 0, 0
			if got != tc.want {
				t.Errorf("state %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestLoadingNeedsReload(t *testing.T) {
	ctx := t.Context()
	steps := []struct {
		name     string
		do       func(m *systemdfake.Manager) error
		wantLoad string
		active   string
	}{
		{"written", func(m *systemdfake.Manager) error {
			return m.WriteUnitFile(ctx, "a.service", systemdtest.SleepUnit)
		}, "not-found", "inactive"},
		{"linked", func(m *systemdfake.Manager) error { return m.Link(ctx, []string{"a.service"}) }, "not-found", "inactive"},
		{"reloaded", func(m *systemdfake.Manager) error { return m.Reload(ctx) }, "loaded", "inactive"},
		{"started", func(m *systemdfake.Manager) error { return m.Start(ctx, "a.service") }, "loaded", "active"},
		{"removed while running", func(m *systemdfake.Manager) error {
			if err := m.Disable(ctx, []string{"a.service"}); err != nil {
				return err
			}
			if err := m.RemoveUnitFile(ctx, "a.service"); err != nil {
				return err
			}
			return m.Reload(ctx)
		}, "not-found", "active"},
		{"stopped after removal", func(m *systemdfake.Manager) error { return m.Stop(ctx, "a.service") }, "not-found", "inactive"},
	}
	m := systemdfake.New()
	for _, st := range steps {
		if err := st.do(m); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got := state(t, ctx, m, "a.service")
		if got.LoadState != st.wantLoad || got.ActiveState != st.active {
			t.Fatalf("%s: %+v, want %s and %s", st.name, got, st.wantLoad, st.active)
		}
	}
	err := m.Stop(ctx, "a.service")
	var nsu interface{ NoSuchUnit() bool }
	if !errors.Is(err, systemdfake.ErrNoSuchUnit) || !errors.As(err, &nsu) || !nsu.NoSuchUnit() {
		t.Errorf("Stop of an unloaded, stopped unit: %v, want a NoSuchUnit error", err)
	}
}

func TestLinkNeedsFile(t *testing.T) {
	m := systemdfake.New()
	tests := []struct {
		name string
		op   func(context.Context, []string) error
	}{
		{"link", m.Link},
		{"enable", m.Enable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.op(t.Context(), []string{"missing.service"}); err == nil {
				t.Errorf("%s of a unit without a file succeeded", tc.name)
			}
		})
	}
}

func TestWatchCoalescesWhileReaderBusy(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	m := systemdfake.New()
	names := []string{"a.service", "b.service", "c.service"}
	for _, n := range names {
		install(t, ctx, m, n, systemdtest.SleepUnit)
	}
	events, err := m.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Nobody reads while the units start and stop twice: the changes
	// pile up.
	for range 2 {
		for _, n := range names {
			if err := m.Start(ctx, n); err != nil {
				t.Fatal(err)
			}
			if err := m.Stop(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
	}
	// All changes were made before the first read: they arrive in at most
	// two batches (the one the watch had merged when the first read came,
	// and the rest), each sorted and unique.
	seen := map[string]bool{}
	batches := 0
	for len(seen) < len(names) {
		batch := <-events
		batches++
		for i, n := range batch {
			if i > 0 && batch[i-1] >= n {
				t.Fatalf("batch %v not sorted and unique", batch)
			}
			seen[n] = true
		}
	}
	if batches > 2 {
		t.Errorf("12 changes of 3 units came in %d batches, want them merged into at most 2", batches)
	}
}
