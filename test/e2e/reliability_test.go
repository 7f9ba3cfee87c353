package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleet-next/fleet/test/cluster"
	"github.com/fleet-next/fleet/unit"
)

// writeUnit writes a unit file named name into dir and returns its path.
func writeUnit(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// badSetting is a service systemd refuses to start (nothing to run).
const badSetting = "[Service]\nType=simple\n"

// listedStates returns list-units -o json through h, by unit name.
func listedStates(t *testing.T, h *cluster.Host) map[string]map[string]string {
	t.Helper()
	r := h.Fleetctl("list-units", "-o", "json")
	if r.Exit != 0 {
		t.Fatalf("list-units -o json: exit %d\n%s", r.Exit, r.Stderr)
	}
	var rows []map[string]string
	if err := json.Unmarshal([]byte(r.Stdout), &rows); err != nil {
		t.Fatalf("list-units -o json: %v\n%s", err, r.Stdout)
	}
	out := map[string]map[string]string{}
	for _, row := range rows {
		out[row["name"]] = row
	}
	return out
}

// TestBadUnitBesideGoodUnit: a unit systemd refuses does not stall its
// host; its reason reaches list-units and status; fixing it clears it.
func TestBadUnitBesideGoodUnit(t *testing.T) {
	c := newCluster(t, cluster.Options{Hosts: 1})
	h := c.Hosts[0]
	dir := t.TempDir()
	bad := writeUnit(t, dir, "bad.service", badSetting)
	if r := h.Fleetctl("start", "--no-block", bad); r.Exit != 0 {
		t.Fatalf("start --no-block bad.service: exit %d\n%s", r.Exit, r.Stderr)
	}
	start(t, h, map[string]string{"good.service": sleeper})
	if active := h.Units("good.service")["good.service"].ActiveState; active != "active" {
		t.Fatalf("good.service beside a bad unit: %s, want active", active)
	}
	var row map[string]string
	cluster.Eventually(t, 30*time.Second, "bad.service's reason in list-units -o json", func() bool {
		row = listedStates(t, h)["bad.service"]
		return strings.Contains(row["reason"], "bad unit file setting")
	})
	if row["systemdLoadState"] != "bad-setting" {
		t.Errorf("bad.service row %v, want load state bad-setting", row)
	}
	r := h.Fleetctl("list-units", "--no-legend", "--fields", "unit,reason")
	if !strings.Contains(r.Stdout, "bad.service") || !strings.Contains(r.Stdout, "bad unit file setting") {
		t.Errorf("list-units --fields unit,reason:\n%s", r.Stdout)
	}
	if st := h.Fleetctl("status", "bad.service"); !strings.Contains(st.Stdout+st.Stderr, "bad unit file setting") {
		t.Errorf("status bad.service does not say why:\n%s%s", st.Stdout, st.Stderr)
	}

	// Fixed with destroy + start: it runs and its reason is gone.
	if r := h.Fleetctl("destroy", "bad.service"); r.Exit != 0 {
		t.Fatalf("destroy: exit %d\n%s", r.Exit, r.Stderr)
	}
	start(t, h, map[string]string{"bad.service": sleeper})
	cluster.Eventually(t, 30*time.Second, "the fixed bad.service active with no reason", func() bool {
		row = listedStates(t, h)["bad.service"]
		return row["systemdActiveState"] == "active" && row["reason"] == ""
	})
}

// TestStoredUnitsTheHostCannotHandle: units that reach the store by other
// means than the API (which refuses them) and that this systemd cannot
// handle never stop the host from applying the rest.
func TestStoredUnitsTheHostCannotHandle(t *testing.T) {
	c := newCluster(t, cluster.Options{Hosts: 1})
	h := c.Hosts[0]
	c.WaitMachines(1)
	reg := c.Registry()
	ctx := t.Context()
	for _, name := range []string{"x.snapshot", "y.busname", strings.Repeat("l", 246) + ".service"} {
		f, err := unit.Parse(sleeper)
		if err != nil {
			t.Fatal(err)
		}
		content := f.Serialize()
		if err := reg.CreateUnit(ctx, unit.Unit{Name: name, Content: content, Hash: unit.HashOf(content),
			Desired: unit.StateLaunched}); err != nil {
			t.Fatalf("store %s: %v", name, err)
		}
	}
	start(t, h, map[string]string{"good.service": sleeper})
	if active := h.Units("good.service")["good.service"].ActiveState; active != "active" {
		t.Fatalf("good.service: %s, want active", active)
	}
	// Destroying them works too, and the host still applies changes.
	for _, name := range []string{"x.snapshot", "y.busname"} {
		if err := reg.DestroyUnit(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	start(t, h, map[string]string{"later.service": sleeper})
}

// TestSystemdManagerRestart: the host's systemd manager restarts (its
// units die with it); fleetd reconnects, starts the units of its schedule
// again, starts new ones, and list-units tells the truth.
func TestSystemdManagerRestart(t *testing.T) {
	c := newCluster(t, cluster.Options{Hosts: 1})
	h := c.Hosts[0]
	start(t, h, map[string]string{"a.service": sleeper, "b.service": sleeper})
	h.RestartSystemd()
	cluster.Eventually(t, 60*time.Second, "a.service and b.service active again in the new manager", func() bool {
		st := h.Units("a.service", "b.service")
		return st["a.service"].ActiveState == "active" && st["b.service"].ActiveState == "active"
	})
	start(t, h, map[string]string{"c.service": sleeper})
	cluster.Eventually(t, 30*time.Second, "list-units agrees with systemd", func() bool {
		rows := listedStates(t, h)
		for _, n := range []string{"a.service", "b.service", "c.service"} {
			if rows[n]["systemdActiveState"] != "active" {
				return false
			}
		}
		return true
	})
	body := curlUnix(t, h.Socket, "/health")
	if !strings.Contains(body, `"ok"`) {
		t.Errorf("/health after the restart: %s", body)
	}
	if !h.Running() {
		t.Error("fleetd exited")
	}
}

// TestSystemdUnreachableIsUnhealthy: while the manager is gone, /health
// says so (503) and fleetd keeps running; it recovers when systemd is back.
func TestSystemdUnreachableIsUnhealthy(t *testing.T) {
	c := newCluster(t, cluster.Options{Hosts: 1})
	h := c.Hosts[0]
	start(t, h, map[string]string{"a.service": sleeper})
	h.StopSystemd()
	cluster.Eventually(t, 30*time.Second, "/health 503 while systemd is down", func() bool {
		return strings.Contains(curlUnix(t, h.Socket, "/health"), "systemd is unreachable")
	})
	h.StartSystemd()
	cluster.Eventually(t, 60*time.Second, "/health ok and a.service active again", func() bool {
		return strings.Contains(curlUnix(t, h.Socket, "/health"), `"ok"`) &&
			h.Units("a.service")["a.service"].ActiveState == "active"
	})
}

// TestCleanLeaveAtDefaultTTL: with the default agent_ttl (30 s) a unit of
// a host that leaves cleanly (SIGTERM, shutdown_purge) runs elsewhere long
// before the lease could have expired; the machine leaves list-machines at
// once.
func TestCleanLeaveAtDefaultTTL(t *testing.T) {
	ttl := 30 * time.Second
	c := newCluster(t, cluster.Options{Hosts: 2, AgentTTL: ttl})
	c.WaitMachines(2)
	start(t, c.Hosts[0], map[string]string{"mover.service": sleeper})
	before := waitRunning(t, c, 30*time.Second, "mover.service")["mover.service"]
	victim, other := c.Hosts[before.host], c.Hosts[1-before.host]
	stopped := time.Now()
	victim.Stop(syscall.SIGTERM)
	left := time.Since(stopped)
	r := other.Fleetctl("list-machines", "--no-legend", "--full")
	if strings.Contains(r.Stdout, victim.MachineID) {
		t.Errorf("list-machines right after the host left still shows it:\n%s", r.Stdout)
	}
	cluster.Eventually(t, ttl, "mover.service running on the other host", func() bool {
		return other.Units("mover.service")["mover.service"].ActiveState == "active"
	})
	moved := time.Since(stopped)
	t.Logf("fleetd left in %s; mover.service active on the other host %s after SIGTERM (agent_ttl %s)",
		left.Round(time.Millisecond), moved.Round(time.Millisecond), ttl)
	// A machine whose lease merely expired would keep its units for
	// agent_ttl plus the loss grace (45 s); a clean leave must not wait
	// for either.
	if moved >= ttl/2 {
		t.Errorf("moved after %s: the engine waited for the lease or the grace", moved)
	}
}

// TestHostUnitsAreNotTakenOver: a unit named like one a host has of its
// own is refused there (the host's unit untouched) and placed on a host
// that has no such unit; where every host has it, the unit says why it
// cannot be placed. An alias of a host unit is refused the same way.
func TestHostUnitsAreNotTakenOver(t *testing.T) {
	c := newCluster(t, cluster.Options{Hosts: 2})
	c.WaitMachines(2)
	h0, h1 := c.Hosts[0], c.Hosts[1]
	// hostonly.service is host 0's own unit, in its user configuration.
	own := filepath.Join(h0.SD.RuntimeDir(), "config", "systemd", "user")
	if err := os.MkdirAll(own, 0o755); err != nil {
		t.Fatal(err)
	}
	ownFile := filepath.Join(own, "hostonly.service")
	ownContent := "[Service]\nExecStart=/bin/sleep 3600\n# host 0's own\n"
	if err := os.WriteFile(ownFile, []byte(ownContent), 0o644); err != nil {
		t.Fatal(err)
	}
	// Host 1 carries a unit, so the least-loaded choice for hostonly.service
	// is host 0, which must refuse it.
	start(t, h0, map[string]string{"ballast.service": sleeper + "\n[X-Fleet]\nMachineMetadata=host=1\n"})
	dir := t.TempDir()
	unpinned := writeUnit(t, dir, "hostonly.service", sleeper)
	if r := h0.Fleetctl("start", "--no-block", unpinned); r.Exit != 0 {
		t.Fatalf("start hostonly.service: exit %d\n%s", r.Exit, r.Stderr)
	}
	cluster.Eventually(t, 60*time.Second, "hostonly.service running on host 1, the host without its own", func() bool {
		return h1.Units("hostonly.service")["hostonly.service"].ActiveState == "active"
	})
	if st := h0.Units("hostonly.service")["hostonly.service"]; st.ActiveState == "active" {
		t.Errorf("host 0's own hostonly.service was started: %+v", st)
	}
	view := c.Registry().FollowCluster(t.Context())
	cluster.Eventually(t, 10*time.Second, "host 0's refusal of hostonly.service in the store", func() bool {
		snap, ok := view.Snapshot()
		return ok && strings.Contains(snap.Refused["hostonly.service"][h0.MachineID].Reason, ownFile)
	})
	if b, err := os.ReadFile(ownFile); err != nil || string(b) != ownContent {
		t.Errorf("host 0's own unit file changed: %q %v", b, err)
	}

	// gpg-agent.socket is every host's own (the distribution's user unit):
	// nowhere to go, and the reason says so.
	startNoBlock := func(name, content string) {
		if r := h0.Fleetctl("start", "--no-block", writeUnit(t, dir, name, content)); r.Exit != 0 {
			t.Fatalf("start %s: exit %d\n%s", name, r.Exit, r.Stderr)
		}
	}
	startNoBlock("gpg-agent.socket", "[Socket]\nListenStream=%t/fleet-hijack\n")
	startNoBlock("harmless.service", sleeper+"\n[Install]\nAlias=gpg-agent.service\n")
	for _, n := range []string{"gpg-agent.socket", "harmless.service"} {
		cluster.Eventually(t, 60*time.Second, n+" refused by every host, with the reason", func() bool {
			r := h0.Fleetctl("list-unit-files", "--no-legend", "--fields", "unit,reason")
			for _, line := range strings.Split(r.Stdout, "\n") {
				if strings.HasPrefix(line, n) && strings.Contains(line, "a unit of this host") {
					return true
				}
			}
			return false
		})
	}
	for _, h := range c.Hosts {
		link := filepath.Join(h.SD.RuntimeDir(), "systemd", "user", "gpg-agent.socket")
		if _, err := os.Lstat(link); err == nil {
			t.Errorf("host %d: fleet linked over the host's gpg-agent.socket", h.Index)
		}
	}
}
