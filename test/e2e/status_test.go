package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/systemd"
	"github.com/fleet-next/fleet/test/cluster"
)

// TestStatusThroughAnotherMachine asks host 0 about a unit running on
// host 1: host 0 forwards to host 1's fleetd, which reads its own systemd.
func TestStatusThroughAnotherMachine(t *testing.T) {
	c := newCluster(t, cluster.Options{Hosts: 2})
	h0, h1 := c.Hosts[0], c.Hosts[1]
	// Relayed through the store, the request reaches h1 as its caller
	// (root on h0's socket): no grant is needed.
	unitPath := filepath.Join(t.TempDir(), "hello.service")
	content := helloUnit + "\n[X-Fleet]\nMachineID=" + h1.MachineID + "\n"
	if err := os.WriteFile(unitPath, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := h0.Fleetctl("start", unitPath); res.Exit != 0 {
		t.Fatalf("start: exit %d\nstdout: %s\nstderr: %s", res.Exit, res.Stdout, res.Stderr)
	}
	var pid uint32
	cluster.Eventually(t, 30*time.Second, "hello.service running on host 1", func() bool {
		pid = h1.Units("hello.service")["hello.service"].MainPID
		return pid != 0
	})

	_, journaldRuns := os.Stat(systemd.DefaultJournalSocket)
	noJournal := "journal unavailable on machine " + h1.MachineID +
		": journald is not running (no /run/systemd/journal/socket)"

	t.Run("status", func(t *testing.T) {
		res := h0.Fleetctl("status", "hello.service")
		if res.Exit != 0 {
			t.Fatalf("status: exit %d\nstdout: %s\nstderr: %s", res.Exit, res.Stdout, res.Stderr)
		}
		want := []string{
			"● hello.service - Hello\n",
			"     Loaded: loaded (",
			"     Active: active (running) since ",
			fmt.Sprintf("   Main PID: %d (sleep)\n", pid),
		}
		if journaldRuns != nil {
			want = append(want, noJournal)
		}
		for _, w := range want {
			if !strings.Contains(res.Stdout, w) {
				t.Errorf("status output lacks %q:\n%s", w, res.Stdout)
			}
		}
	})

	t.Run("status json", func(t *testing.T) {
		res := h0.Fleetctl("status", "-o", "json", "hello.service")
		if res.Exit != 0 {
			t.Fatalf("status -o json: exit %d\nstdout: %s\nstderr: %s", res.Exit, res.Stdout, res.Stderr)
		}
		var reps []api.UnitStatusReport
		if err := json.Unmarshal([]byte(res.Stdout), &reps); err != nil {
			t.Fatalf("decode %q: %v", res.Stdout, err)
		}
		if len(reps) != 1 || reps[0].MachineID != h1.MachineID || reps[0].MainPID != pid ||
			reps[0].SystemdActiveState != "active" || reps[0].SystemdSubState != "running" {
			t.Errorf("reports = %+v, want one from %s, active/running, main PID %d", reps, h1.MachineID, pid)
		}
	})

	t.Run("journal", func(t *testing.T) {
		res := h0.Fleetctl("journal", "hello.service")
		if journaldRuns == nil {
			if res.Exit != 0 {
				t.Errorf("journal with journald running: exit %d\nstderr: %s", res.Exit, res.Stderr)
			}
			return
		}
		if res.Exit == 0 || !strings.Contains(res.Stderr, noJournal) {
			t.Errorf("journal: exit %d, stderr %q; want a failure saying %q", res.Exit, res.Stderr, noJournal)
		}
	})
}
