package systemd_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fleet-next/fleet/systemd"
)

// TestUnitStatusMatchesSystemctl compares UnitStatus with what systemctl
// status prints for the same unit of the same manager, line by line for
// every line UnitStatus writes. The relative part of the Active: line
// ("5s ago") may differ by the time between the two reads.
func TestUnitStatusMatchesSystemctl(t *testing.T) {
	m, lm := newManager(t)
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()

	tests := []struct {
		name       string
		content    string // "" = no unit file
		start      bool
		wantActive string // expected ActiveState
		wantPID    bool
	}{
		{name: "running.service", content: "[Unit]\nDescription=Runs\n\n[Service]\nExecStart=/bin/sleep 3600\n",
			start: true, wantActive: "active", wantPID: true},
		{name: "failing.service", content: "[Unit]\nDescription=Fails\n\n[Service]\nExecStart=/bin/false\n",
			start: true, wantActive: "failed"},
		{name: "idle.service", content: "[Service]\nExecStart=/bin/sleep 3600\n", wantActive: "inactive"},
		{name: "missing.service", wantActive: "inactive"},
	}
	var linked []string
	for _, tc := range tests {
		if tc.content == "" {
			continue
		}
		if err := m.WriteUnitFile(ctx, tc.name, tc.content); err != nil {
			t.Fatalf("WriteUnitFile %s: %v", tc.name, err)
		}
		linked = append(linked, tc.name)
	}
	if err := m.Link(ctx, linked); err != nil {
		t.Fatalf("Link: %v", err)
	}
	if err := m.Reload(ctx); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	for _, tc := range tests {
		if tc.start {
			if err := m.Start(ctx, tc.name); err != nil {
				t.Fatalf("Start %s: %v", tc.name, err)
			}
		}
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := waitStatus(t, ctx, m, tc.name, tc.wantActive)
			if tc.wantPID != (st.MainPID > 0) {
				t.Errorf("MainPID = %d, want one: %v", st.MainPID, tc.wantPID)
			}
			if st.MainPID > 0 {
				// Right after the start the main process may not have
				// exec'd its program yet (its name is still systemd's): wait,
				// then take both views of the settled process.
				waitExec(t, st.MainPID, "sleep")
				st = waitStatus(t, ctx, m, tc.name, tc.wantActive)
			}
			// systemctl status exits non-zero for units that are not active.
			out, _ := systemctl(ctx, lm, "status", "--no-pager", "--lines=0", tc.name)
			ref := strings.Split(out, "\n")
			for i, line := range strings.Split(strings.TrimSuffix(st.Text, "\n"), "\n") {
				want := referenceLine(ref, line, i)
				if strings.HasPrefix(strings.TrimSpace(line), "Active:") {
					line, want = beforeSemicolon(line), beforeSemicolon(want)
				}
				if line != want {
					t.Errorf("line %d:\n got %q\nwant %q (systemctl status:\n%s)", i, line, want, out)
				}
			}
		})
	}
}

// waitStatus polls UnitStatus until the unit reaches the active state.
func waitStatus(t *testing.T, ctx context.Context, m *systemd.Manager, name, active string) systemd.UnitStatus {
	t.Helper()
	var st systemd.UnitStatus
	ok := func() bool {
		var err error
		st, err = m.UnitStatus(ctx, name)
		if err != nil {
			t.Fatalf("UnitStatus %s: %v", name, err)
		}
		return st.ActiveState == active && (active != "active" || st.MainPID > 0)
	}
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s never became %s; last status:\n%s", name, active, st.Text)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return st
}

// referenceLine finds the systemctl line with the same label ("Loaded:")
// as line; the first line is compared with systemctl's first line.
func referenceLine(ref []string, line string, i int) string {
	if i == 0 {
		return ref[0]
	}
	label, _, _ := strings.Cut(strings.TrimSpace(line), ":")
	for _, r := range ref {
		if strings.HasPrefix(strings.TrimSpace(r), label+":") {
			return r
		}
	}
	return "(no " + label + ": line)"
}

func beforeSemicolon(s string) string {
	before, _, _ := strings.Cut(s, ";")
	return before
}

func TestUnitStatusStates(t *testing.T) {
	m, _ := newManager(t)
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	const name = "state.service"
	if err := m.WriteUnitFile(ctx, name, "[Service]\nExecStart=/bin/sleep 3600\n"); err != nil {
		t.Fatalf("WriteUnitFile: %v", err)
	}
	if err := m.Link(ctx, []string{name}); err != nil {
		t.Fatalf("Link: %v", err)
	}
	if err := m.Reload(ctx); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if err := m.Start(ctx, name); err != nil {
		t.Fatalf("Start: %v", err)
	}
	st := waitStatus(t, ctx, m, name, "active")
	states, err := m.States(ctx, []string{name})
	if err != nil {
		t.Fatalf("States: %v", err)
	}
	want := states[name]
	if st.SystemdState != want {
		t.Errorf("UnitStatus states = %+v, States says %+v", st.SystemdState, want)
	}
	if st.LoadState != "loaded" || st.SubState != "running" || st.MainPID == 0 {
		t.Errorf("UnitStatus = %+v, want loaded, running, with a main PID", st.SystemdState)
	}
}

// waitExec waits until process pid runs the program named comm.
func waitExec(t *testing.T, pid uint32, comm string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && strings.TrimSpace(string(b)) == comm {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d never ran %s (comm %q, %v)", pid, comm, b, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
