package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleet-next/fleet/systemd"
	"github.com/fleet-next/fleet/test/cluster"
)

// TestStatusWithoutOpenPorts runs a global unit on three hosts whose fleetds
// listen on their unix sockets only: status and journal of every copy,
// asked through one host, come back through the store.
func TestStatusWithoutOpenPorts(t *testing.T) {
	c := newCluster(t, cluster.Options{Hosts: 3, UnixOnly: true})
	h0 := c.Hosts[0]
	unitPath := filepath.Join(t.TempDir(), "hello.service")
	if err := os.WriteFile(unitPath, []byte(helloUnit+"\n[X-Fleet]\nGlobal=true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := h0.Fleetctl("start", unitPath); res.Exit != 0 {
		t.Fatalf("start: exit %d\nstdout: %s\nstderr: %s", res.Exit, res.Stdout, res.Stderr)
	}
	for _, h := range c.Hosts {
		cluster.Eventually(t, 30*time.Second, "hello.service running on host "+h.MachineID, func() bool {
			return h.Units("hello.service")["hello.service"].MainPID != 0
		})
	}

	res := h0.Fleetctl("status", "hello.service")
	if res.Exit != 0 {
		t.Fatalf("status: exit %d\nstdout: %s\nstderr: %s", res.Exit, res.Stdout, res.Stderr)
	}
	if n := strings.Count(res.Stdout, "     Active: active (running) since "); n != 3 {
		t.Errorf("status shows %d units active, want 3:\n%s", n, res.Stdout)
	}
	for _, h := range c.Hosts {
		if !strings.Contains(res.Stdout, h.MachineID) {
			t.Errorf("status lacks machine %s:\n%s", h.MachineID, res.Stdout)
		}
	}

	// The journal of a unit on host 2, asked through host 0.
	h2 := c.Hosts[2]
	pinned := filepath.Join(t.TempDir(), "pinned.service")
	if err := os.WriteFile(pinned, []byte(helloUnit+"\n[X-Fleet]\nMachineID="+h2.MachineID+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := h0.Fleetctl("start", pinned); res.Exit != 0 {
		t.Fatalf("start: exit %d\nstdout: %s\nstderr: %s", res.Exit, res.Stdout, res.Stderr)
	}
	cluster.Eventually(t, 30*time.Second, "pinned.service running on host 2", func() bool {
		return h2.Units("pinned.service")["pinned.service"].MainPID != 0
	})
	_, journaldRuns := os.Stat(systemd.DefaultJournalSocket)
	jres := h0.Fleetctl("journal", "pinned.service")
	t.Logf("journal: exit %d\nstdout: %s\nstderr: %s", jres.Exit, jres.Stdout, jres.Stderr)
	if journaldRuns == nil {
		if jres.Exit != 0 {
			t.Errorf("journal with journald running: exit %d\nstderr: %s", jres.Exit, jres.Stderr)
		}
		return
	}
	noJournal := "journal unavailable on machine " + h2.MachineID +
		": journald is not running (no /run/systemd/journal/socket)"
	if jres.Exit == 0 || !strings.Contains(jres.Stderr, noJournal) {
		t.Errorf("journal: exit %d, stderr %q; want a failure saying %q", jres.Exit, jres.Stderr, noJournal)
	}
}
