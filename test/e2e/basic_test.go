package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleet-next/fleet/test/cluster"
)

const helloUnit = `[Unit]
Description=Hello

[Service]
ExecStart=/bin/sleep 3600
`

func TestStartListStopDestroy(t *testing.T) {
	c := newCluster(t, cluster.Options{Hosts: 1})
	h := c.Hosts[0]
	dir := t.TempDir()
	unitPath := filepath.Join(dir, "hello.service")
	if err := os.WriteFile(unitPath, []byte(helloUnit), 0o644); err != nil {
		t.Fatal(err)
	}

	res := h.Fleetctl("start", unitPath)
	if res.Exit != 0 {
		t.Fatalf("start: exit %d\nstdout: %s\nstderr: %s", res.Exit, res.Stdout, res.Stderr)
	}
	if !strings.Contains(res.Stdout, "Unit hello.service launched on "+h.MachineID[:8]+".../"+h.IP) {
		t.Errorf("start output = %q, want the launched line", res.Stdout)
	}
	cluster.Eventually(t, 30*time.Second, "list-units shows hello.service active running", func() bool {
		r := h.Fleetctl("list-units", "--no-legend", "--fields", "unit,load,active,sub")
		return r.Exit == 0 && strings.Join(strings.Fields(r.Stdout), " ") == "hello.service loaded active running"
	})
	if s := h.Units("hello.service")["hello.service"]; s.LoadState != "loaded" || s.ActiveState != "active" || s.SubState != "running" {
		t.Errorf("systemd says %s %s %s, want loaded active running", s.LoadState, s.ActiveState, s.SubState)
	}
	// The unit file is linked from the runtime units directory.
	link := filepath.Join(h.SD.RuntimeDir(), "systemd", "user", "hello.service")
	if target, err := os.Readlink(link); err != nil || !strings.HasSuffix(target, "/fleet/units/hello.service") {
		t.Errorf("runtime link %s -> %q (%v), want a link into the fleet units directory", link, target, err)
	}

	if r := h.Fleetctl("stop", "hello.service"); r.Exit != 0 {
		t.Fatalf("stop: exit %d: %s", r.Exit, r.Stderr)
	}
	cluster.Eventually(t, 30*time.Second, "systemd stopped hello.service", func() bool {
		return h.Units("hello.service")["hello.service"].ActiveState == "inactive"
	})

	if r := h.Fleetctl("destroy", "hello.service"); r.Exit != 0 || !strings.Contains(r.Stdout, "Destroyed hello.service") {
		t.Fatalf("destroy: exit %d stdout %q stderr %q", r.Exit, r.Stdout, r.Stderr)
	}
	cluster.Eventually(t, 30*time.Second, "systemd no longer has hello.service", func() bool {
		return h.Units("hello.service")["hello.service"].LoadState == "not-found"
	})
	if r := h.Fleetctl("list-unit-files", "--no-legend"); r.Exit != 0 || strings.TrimSpace(r.Stdout) != "" {
		t.Errorf("list-unit-files after destroy: exit %d %q", r.Exit, r.Stdout)
	}
}

func TestBadInputStoresNothing(t *testing.T) {
	c := newCluster(t, cluster.Options{Hosts: 1})
	h := c.Hosts[0]
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.service")
	if err := os.WriteFile(bad, []byte("this is not a unit file\n[Service\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"start", bad}, {"start", "@x.service"}, {"submit", "@x.service"}} {
		r := h.Fleetctl(args...)
		if r.Exit == 0 || strings.TrimSpace(r.Stderr) == "" {
			t.Errorf("fleetctl %v: exit %d stderr %q, want a non-zero exit and a message", args, r.Exit, r.Stderr)
		}
	}
	if r := h.Fleetctl("list-unit-files", "--no-legend"); r.Exit != 0 || strings.TrimSpace(r.Stdout) != "" {
		t.Errorf("something was stored: exit %d %q", r.Exit, r.Stdout)
	}
}
