package systemd_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/fleet-next/fleet/agent"
	"github.com/fleet-next/fleet/internal/testenv"
	"github.com/fleet-next/fleet/systemd"
	"github.com/fleet-next/fleet/systemd/launch"
	"github.com/fleet-next/fleet/systemd/systemdtest"
	"github.com/fleet-next/fleet/unit"
)

var _ agent.UnitManager = (*systemd.Manager)(nil)

const testTimeout = 60 * time.Second

// startHost starts a private manager for the test and stops it at cleanup.
func startHost(t *testing.T) *launch.Manager {
	t.Helper()
	testenv.RequireSystemd(t)
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	lm, err := launch.Start(ctx, launch.Options{})
	if err != nil {
		t.Fatalf("launch.Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := lm.Stop(ctx); err != nil {
			t.Errorf("launch Stop: %v", err)
		}
	})
	return lm
}

// connect makes a Manager for cfg and closes it at cleanup.
func connect(t *testing.T, cfg systemd.Config) *systemd.Manager {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	m, err := systemd.New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// newManager starts a private manager and connects to its private socket.
func newManager(t *testing.T) (*systemd.Manager, *launch.Manager) {
	t.Helper()
	lm := startHost(t)
	m := connect(t, systemd.Config{UnitsDir: filepath.Join(t.TempDir(), "units"), PrivateSocket: lm.PrivateSocket()})
	return m, lm
}

func TestContractPrivateSocket(t *testing.T) {
	systemdtest.Run(t, func(t *testing.T) systemdtest.Subject {
		h := startRestartableHost(t)
		m := connect(t, systemd.Config{UnitsDir: filepath.Join(t.TempDir(), "units"), PrivateSocket: h.lm.PrivateSocket()})
		return systemdtest.Subject{Manager: m, Restart: h.restart, HostUnit: "dbus.socket"}
	})
}

func TestContractSessionBus(t *testing.T) {
	systemdtest.Run(t, func(t *testing.T) systemdtest.Subject {
		h := startRestartableHost(t)
		t.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path="+filepath.Join(h.lm.RuntimeDir(), "bus"))
		m := connect(t, systemd.Config{UnitsDir: filepath.Join(t.TempDir(), "units"), User: true})
		return systemdtest.Subject{Manager: m, Restart: h.restart, HostUnit: "dbus.socket"}
	})
}

// restartableHost is a private manager on a runtime directory of its own,
// which a restart keeps (as a host keeps /run across a restart of its
// manager).
type restartableHost struct {
	dir string
	lm  *launch.Manager
}

func startRestartableHost(t *testing.T) *restartableHost {
	t.Helper()
	testenv.RequireSystemd(t)
	dir, err := os.MkdirTemp("", "sdr-")
	if err != nil {
		t.Fatal(err)
	}
	h := &restartableHost{dir: dir}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if h.lm != nil {
			if err := h.lm.Stop(ctx); err != nil {
				t.Errorf("launch Stop: %v", err)
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	h.start(t)
	return h
}

func (h *restartableHost) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	lm, err := launch.Start(ctx, launch.Options{Dir: h.dir})
	if err != nil {
		t.Fatalf("launch.Start: %v", err)
	}
	h.lm = lm
}

func (h *restartableHost) restart(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	if err := h.lm.Stop(ctx); err != nil {
		t.Fatalf("stop the manager: %v", err)
	}
	h.lm = nil
	h.start(t)
}

// systemctl runs `systemctl --user args...` inside lm's mount namespace,
// where systemctl sees a booted systemd and asks the manager.
func systemctl(ctx context.Context, lm *launch.Manager, args ...string) (string, error) {
	cmdArgs := []string{"-t", strconv.Itoa(lm.PID()), "-m", "--", "env"}
	cmdArgs = append(cmdArgs, lm.Env()...)
	cmdArgs = append(cmdArgs, "systemctl", "--user")
	cmdArgs = append(cmdArgs, args...)
	out, err := exec.CommandContext(ctx, "nsenter", cmdArgs...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func TestLinkEnableDisable(t *testing.T) {
	m, lm := newManager(t)
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	const name = "hello.service"
	content := systemdtest.SleepUnit + "\n[Install]\nWantedBy=default.target\n"
	if err := m.WriteUnitFile(ctx, name, content); err != nil {
		t.Fatalf("WriteUnitFile: %v", err)
	}
	userDir := filepath.Join(lm.RuntimeDir(), "systemd", "user")
	link := filepath.Join(userDir, name)
	wants := filepath.Join(userDir, "default.target.wants", name)

	steps := []struct {
		name      string
		do        func() error
		isEnabled string // systemctl is-enabled output
		link      bool   // runtime link to the unit file exists
		wants     bool   // default.target.wants link exists
	}{
		{"link", func() error { return m.Link(ctx, []string{name}) }, "linked-runtime", true, false},
		{"link again", func() error { return m.Link(ctx, []string{name}) }, "linked-runtime", true, false},
		{"enable", func() error { return m.Enable(ctx, []string{name}) }, "enabled-runtime", true, true},
		{"disable", func() error { return m.Disable(ctx, []string{name}) }, "", false, false},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := st.do(); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			// is-enabled exits non-zero for runtime states; its output is
			// what counts.
			got, err := systemctl(ctx, lm, "is-enabled", name)
			if st.isEnabled != "" && got != st.isEnabled {
				t.Errorf("is-enabled = %q (%v), want %q", got, err, st.isEnabled)
			}
			if st.isEnabled == "" && (err == nil || strings.Contains(got, "runtime")) {
				t.Errorf("is-enabled = %q (%v), want a failure: the unit file is no longer linked", got, err)
			}
			if got := linkTarget(link); (got != "") != st.link {
				t.Errorf("runtime link %s -> %q, want present=%v", link, got, st.link)
			}
			if got := linkTarget(wants); (got != "") != st.wants {
				t.Errorf("wants link %s -> %q, want present=%v", wants, got, st.wants)
			}
		})
	}
}

// linkTarget returns where the symlink p points, or "" if there is none.
func linkTarget(p string) string {
	target, err := os.Readlink(p)
	if err != nil {
		return ""
	}
	return target
}

func TestNoSuchUnitErrors(t *testing.T) {
	m, _ := newManager(t)
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	tests := []struct {
		name string
		op   func(context.Context, string) error
	}{
		{"start", m.Start},
		{"stop", m.Stop},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.op(ctx, "missing.service")
			if !errors.Is(err, systemd.ErrNoSuchUnit) {
				t.Fatalf("%s of a missing unit: %v, want ErrNoSuchUnit", tc.name, err)
			}
			var nsu interface{ NoSuchUnit() bool }
			if !errors.As(err, &nsu) || !nsu.NoSuchUnit() {
				t.Errorf("error %v does not offer NoSuchUnit()", err)
			}
			var dbusErr dbus.Error
			if !errors.As(err, &dbusErr) || dbusErr.Name != "org.freedesktop.systemd1.NoSuchUnit" {
				t.Errorf("error %v does not unwrap to the D-Bus NoSuchUnit error", err)
			}
			if !strings.Contains(err.Error(), "missing.service") {
				t.Errorf("error %q does not name the unit", err)
			}
		})
	}
}

func TestUnitFileNames(t *testing.T) {
	m, _ := newManager(t)
	ctx := t.Context()
	tests := []struct {
		name    string
		unit    string
		wantErr bool
	}{
		{"plain", "ok.service", false},
		{"template instance", "ok@1.service", false},
		{"empty", "", true},
		{"dot file", ".hidden.service", true},
		{"slash", "a/b.service", true},
		{"parent", "../escape.service", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			werr := m.WriteUnitFile(ctx, tc.unit, systemdtest.SleepUnit)
			rerr := m.RemoveUnitFile(ctx, tc.unit)
			if (werr != nil) != tc.wantErr || (rerr != nil) != tc.wantErr {
				t.Errorf("WriteUnitFile error %v, RemoveUnitFile error %v; want errors: %v", werr, rerr, tc.wantErr)
			}
		})
	}
}

func TestWriteUnitFileLeavesOnlyTheFile(t *testing.T) {
	lm := startHost(t)
	dir := filepath.Join(t.TempDir(), "a", "units")
	m := connect(t, systemd.Config{UnitsDir: dir, PrivateSocket: lm.PrivateSocket()})
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o755 || !st.IsDir() {
		t.Fatalf("units dir: %v, %v; want a 0755 directory", st, err)
	}
	for i := range 3 {
		if err := m.WriteUnitFile(t.Context(), "x.service", fmt.Sprintf("%s# %d\n", systemdtest.SleepUnit, i)); err != nil {
			t.Fatalf("WriteUnitFile: %v", err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "x.service" {
		t.Fatalf("units dir holds %v, want only x.service", entries)
	}
	info, err := entries[0].Info()
	if err != nil || info.Mode() != 0o644 {
		t.Errorf("x.service mode %v (%v), want 0644", info.Mode(), err)
	}
}

func TestStatesManyUnits(t *testing.T) {
	m, _ := newManager(t)
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	// More names than one ListUnitsByNames request carries, a few running.
	const total, running = 600, 5
	names := make([]string, total)
	for i := range names {
		names[i] = fmt.Sprintf("many-%03d.service", i)
		if err := m.WriteUnitFile(ctx, names[i], systemdtest.SleepUnit); err != nil {
			t.Fatalf("WriteUnitFile: %v", err)
		}
	}
	if err := m.Link(ctx, names); err != nil {
		t.Fatalf("Link: %v", err)
	}
	if err := m.Reload(ctx); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	for _, n := range names[:running] {
		if err := m.Start(ctx, n); err != nil {
			t.Fatalf("Start: %v", err)
		}
	}
	query := append([]string{"absent.service"}, names...)
	var got map[string]unit.SystemdState
	for {
		var err error
		got, err = m.States(ctx, query)
		if err != nil {
			t.Fatalf("States: %v", err)
		}
		if allRunning(got, names[:running]) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("first %d units never all ran: %v", running, got)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if len(got) != len(query) {
		t.Fatalf("States returned %d entries, want %d", len(got), len(query))
	}
	if got["absent.service"].LoadState != "not-found" {
		t.Errorf("absent.service: %+v, want not-found", got["absent.service"])
	}
	for i, n := range names {
		st := got[n]
		wantActive, wantPID := "inactive", false
		if i < running {
			wantActive, wantPID = "active", true
		}
		if st.LoadState != "loaded" || st.ActiveState != wantActive || (st.MainPID != 0) != wantPID {
			t.Errorf("%s: %+v, want loaded, %s, main PID set %v", n, st, wantActive, wantPID)
		}
	}
}

func allRunning(states map[string]unit.SystemdState, names []string) bool {
	for _, n := range names {
		if st := states[n]; st.ActiveState != "active" || st.MainPID == 0 {
			return false
		}
	}
	return true
}

func TestCloseEndsWatch(t *testing.T) {
	m, _ := newManager(t)
	events, err := m.Watch(t.Context())
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	guard := time.NewTimer(testTimeout)
	defer guard.Stop()
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-guard.C:
			t.Fatal("Watch channel still open after Close")
		}
	}
}

func TestReachableUserBus(t *testing.T) {
	lm := startHost(t)
	tests := []struct {
		name string
		addr string
		want bool
	}{
		{"manager's session bus", "unix:path=" + filepath.Join(lm.RuntimeDir(), "bus"), true},
		{"no bus", "unix:path=" + filepath.Join(t.TempDir(), "missing-bus"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("DBUS_SESSION_BUS_ADDRESS", tc.addr)
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			if got := systemd.Reachable(ctx, true); got != tc.want {
				t.Errorf("Reachable(user) = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNewFailsWithoutManager(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  systemd.Config
	}{
		{"no units dir", systemd.Config{PrivateSocket: filepath.Join(dir, "private")}},
		{"missing socket", systemd.Config{UnitsDir: filepath.Join(dir, "units"), PrivateSocket: filepath.Join(dir, "private")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := systemd.New(t.Context(), tc.cfg)
			if err == nil {
				m.Close()
				t.Fatal("New succeeded without a manager")
			}
		})
	}
}

// BenchmarkStates measures one States call over 1,000 linked units of which
// 200 run (one MainPID lookup each). Idle units dominate: systemd loads and
// unloads each of them again on every call.
func BenchmarkStates(b *testing.B) {
	testenv.RequireSystemd(b)
	ctx := b.Context()
	lm, err := launch.Start(ctx, launch.Options{})
	if err != nil {
		b.Fatalf("launch.Start: %v", err)
	}
	b.Cleanup(func() {
		if err := lm.Stop(context.Background()); err != nil {
			b.Errorf("launch Stop: %v", err)
		}
	})
	m, err := systemd.New(ctx, systemd.Config{UnitsDir: filepath.Join(b.TempDir(), "units"), PrivateSocket: lm.PrivateSocket()})
	if err != nil {
		b.Fatalf("New: %v", err)
	}
	b.Cleanup(func() { m.Close() })
	const total, running = 1000, 200
	names := make([]string, total)
	for i := range names {
		names[i] = fmt.Sprintf("bench-%04d.service", i)
		if err := m.WriteUnitFile(ctx, names[i], systemdtest.SleepUnit); err != nil {
			b.Fatalf("WriteUnitFile: %v", err)
		}
	}
	if err := m.Link(ctx, names); err != nil {
		b.Fatalf("Link: %v", err)
	}
	if err := m.Reload(ctx); err != nil {
		b.Fatalf("Reload: %v", err)
	}
	for _, n := range names[:running] {
		if err := m.Start(ctx, n); err != nil {
			b.Fatalf("Start: %v", err)
		}
	}
	for {
		got, err := m.States(ctx, names)
		if err != nil {
			b.Fatalf("States: %v", err)
		}
		if allRunning(got, names[:running]) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.States(ctx, names); err != nil {
			b.Fatalf("States: %v", err)
		}
	}
}
