package launch

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet-next/fleet/internal/testenv"
)

// testTimeout guards every test against a hung manager; it is not a
// performance expectation.
const testTimeout = 60 * time.Second

// startForTest starts a manager and registers its Stop as cleanup.
func startForTest(t *testing.T, opts Options) *Manager {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	m, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := m.Stop(ctx); err != nil {
			t.Errorf("cleanup Stop: %v", err)
		}
	})
	return m
}

// processGone reports whether pid no longer exists or is at most a zombie.
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// processExists reports whether pid exists and is not a zombie.
func processExists(pid int) bool { return !processGone(pid) }

// systemctl runs `systemctl --user args...` against m inside its mount
// namespace.
func systemctl(ctx context.Context, m *Manager, args ...string) (string, error) {
	cmdArgs := []string{"-t", strconv.Itoa(m.PID()), "-m", "--", "env"}
	cmdArgs = append(cmdArgs, m.Env()...)
	cmdArgs = append(cmdArgs, "systemctl", "--user")
	cmdArgs = append(cmdArgs, args...)
	out, err := exec.CommandContext(ctx, "nsenter", cmdArgs...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func cgroupDirs(t *testing.T, name string) []string {
	t.Helper()
	roots, err := cgroupRoots(cgroupBase)
	if err != nil {
		t.Fatalf("cgroupRoots: %v", err)
	}
	dirs := make([]string, len(roots))
	for i, r := range roots {
		dirs[i] = filepath.Join(r, name)
	}
	return dirs
}

func TestStartTwoManagers(t *testing.T) {
	testenv.RequireSystemd(t)
	names := []string{"fleet/launch-test-a-" + randomHex(4), "fleet/launch-test-b-" + randomHex(4)}
	managers := make([]*Manager, len(names))
	errs := make([]error, len(names))
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { managers[i], errs[i] = Start(ctx, Options{CgroupName: name}) })
	}
	wg.Wait()
	for i, m := range managers {
		if m == nil {
			continue
		}
		t.Cleanup(func() {
			if err := m.Stop(context.Background()); err != nil {
				t.Errorf("cleanup Stop %s: %v", names[i], err)
			}
		})
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Start %s: %v", names[i], err)
		}
	}

	a, b := managers[0], managers[1]
	if a.PID() == b.PID() || a.RuntimeDir() == b.RuntimeDir() {
		t.Fatalf("managers share PID or runtime dir: %d %s / %d %s", a.PID(), a.RuntimeDir(), b.PID(), b.RuntimeDir())
	}
	for i, m := range managers {
		t.Run("running/"+names[i], func(t *testing.T) {
			if !processExists(m.PID()) {
				t.Fatalf("pid %d is not running", m.PID())
			}
			if _, err := os.Stat(m.PrivateSocket()); err != nil {
				t.Fatalf("private socket: %v", err)
			}
			for _, dir := range cgroupDirs(t, names[i]) {
				procs, err := readPIDs(filepath.Join(dir, "init.scope", "cgroup.procs"))
				if err != nil {
					t.Fatalf("read procs of %s: %v", dir, err)
				}
				if len(procs) != 1 || procs[0] != m.PID() {
					t.Errorf("%s/init.scope holds %v, want [%d]", dir, procs, m.PID())
				}
			}
			state, err := systemctl(ctx, m, "is-system-running")
			if state != "running" && state != "degraded" {
				t.Errorf("is-system-running = %q (%v), want running or degraded", state, err)
			}
		})
	}

	// The same unit name in both managers: stopping the first manager must
	// leave the second one's process alone.
	sleepers := make([]int, len(managers))
	for i, m := range managers {
		sleepers[i] = runSleeper(ctx, t, m, "same.service")
	}
	for i, m := range managers {
		t.Run("stop/"+names[i], func(t *testing.T) {
			if err := m.Stop(ctx); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if !processGone(m.PID()) {
				t.Errorf("pid %d still running after Stop", m.PID())
			}
			for _, dir := range cgroupDirs(t, names[i]) {
				if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("cgroup %s still there after Stop (stat: %v)", dir, err)
				}
			}
			if _, err := os.Stat(m.RuntimeDir()); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("runtime dir %s still there after Stop (stat: %v)", m.RuntimeDir(), err)
			}
			if !processGone(sleepers[i]) {
				t.Errorf("unit process %d survived Stop", sleepers[i])
			}
			for j := i + 1; j < len(managers); j++ {
				if !processExists(sleepers[j]) {
					t.Errorf("stopping manager %d killed manager %d's unit process %d", i, j, sleepers[j])
				}
			}
			if err := m.Stop(ctx); err != nil {
				t.Errorf("second Stop: %v", err)
			}
		})
	}
}

func TestStopKeepsGivenDir(t *testing.T) {
	testenv.RequireSystemd(t)
	dir := filepath.Join(t.TempDir(), "rt")
	m := startForTest(t, Options{Dir: dir})
	if m.RuntimeDir() != dir {
		t.Fatalf("RuntimeDir = %q, want %q", m.RuntimeDir(), dir)
	}
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	if err := m.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("given runtime dir was removed: %v", err)
	}
	if !processGone(m.PID()) {
		t.Errorf("pid %d still running after Stop", m.PID())
	}
}

// runSleeper starts a transient service named unit running sleep in m and
// returns its main PID.
func runSleeper(ctx context.Context, t *testing.T, m *Manager, unit string) int {
	t.Helper()
	args := []string{"-t", strconv.Itoa(m.PID()), "-m", "--", "env"}
	args = append(args, m.Env()...)
	args = append(args, "systemd-run", "--user", "--unit="+unit, "/bin/sleep", "3600")
	if out, err := exec.CommandContext(ctx, "nsenter", args...).CombinedOutput(); err != nil {
		t.Fatalf("systemd-run %s: %v: %s", unit, err, out)
	}
	for {
		out, err := systemctl(ctx, m, "show", "-P", "MainPID", unit)
		if err != nil {
			t.Fatalf("show MainPID of %s: %v: %s", unit, err, out)
		}
		if pid, _ := strconv.Atoi(out); pid > 0 {
			return pid
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never got a main PID", unit)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestStopKillsUnits(t *testing.T) {
	testenv.RequireSystemd(t)
	name := "fleet/launch-test-units-" + randomHex(4)
	m := startForTest(t, Options{CgroupName: name})
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	sleeper := runSleeper(ctx, t, m, "sleeper.service")
	if err := m.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if !processGone(sleeper) {
		t.Errorf("unit process %d survived Stop", sleeper)
	}
	for _, dir := range cgroupDirs(t, name) {
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cgroup %s still there after Stop (stat: %v)", dir, err)
		}
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	testenv.RequireSystemd(t)
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"absolute cgroup", Options{CgroupName: "/fleet/x"}, "must be relative"},
		{"escaping cgroup", Options{CgroupName: "../x"}, "clean path"},
		{"unclean cgroup", Options{CgroupName: "fleet//x"}, "clean path"},
		{"reserved cgroup component", Options{CgroupName: "fleet/cgroup.procs"}, "reserved"},
		{"runtime dir too long", Options{Dir: "/tmp/" + strings.Repeat("d", maxDirLen)}, "longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Start(t.Context(), tc.opts)
			if err == nil {
				_ = m.Stop(context.Background())
				t.Fatalf("Start succeeded, want error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Start error = %v, want it to contain %q", err, tc.want)
			}
			if tc.opts.Dir != "" {
				if _, err := os.Stat(tc.opts.Dir); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("Start left %s behind (stat: %v)", tc.opts.Dir, err)
				}
			}
		})
	}
}

func TestStartFailureCleansUp(t *testing.T) {
	testenv.RequireSystemd(t)
	name := "fleet/launch-test-fail-" + randomHex(4)
	// A readiness limit no manager can meet makes Start fail after it has
	// created the cgroups and the process.
	m, err := Start(t.Context(), Options{CgroupName: name, ReadyTimeout: time.Nanosecond})
	if err == nil {
		_ = m.Stop(context.Background())
		t.Fatal("Start succeeded with a 1ns readiness limit")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Start error = %v, want a deadline error", err)
	}
	for _, dir := range cgroupDirs(t, name) {
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cgroup %s left behind after failed Start (stat: %v)", dir, err)
		}
	}
}
