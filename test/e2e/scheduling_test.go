package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/test/cluster"
)

// The scheduling tests run every example unit of docs/unit-files.md on one
// four-machine cluster. The machines carry the metadata the document
// describes; the fourth has a real-looking machine ID so that MachineID
// examples can name it in full and by its 8-character prefix.

const (
	unitFilesDoc     = "../../docs/unit-files.md"
	examplesDir      = "../../docs/examples"
	schedPinnedID    = "4c5e7f2a9b0d41e3a6c8d2f1e0b9a7c5"
	schedPinnedShort = "4c5e7f2a"
	schedHosts       = 4
	schedWait        = 30 * time.Second
	reasonWait       = 15 * time.Second // the engine sets a reason in its next round
)

// schedMetadata is the metadata of host i: node0 eu/ssd, node1 eu/hdd,
// node2 us/ssd, node3 us/hdd.
func schedMetadata(i int) string {
	region, disk := "eu", "ssd"
	if i >= 2 {
		region = "us"
	}
	if i%2 == 1 {
		disk = "hdd"
	}
	return fmt.Sprintf("hostname=node%d,region=%s,disk=%s", i, region, disk)
}

// schedEnv is the shared cluster plus a record of the example files used.
type schedEnv struct {
	c   *cluster.Cluster
	dir string // absolute path of docs/examples

	mu   sync.Mutex
	used map[string]bool
}

// example returns the path of an example file and records that a test
// used it.
func (e *schedEnv) example(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(e.dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("example %s: %v", name, err)
	}
	e.mu.Lock()
	e.used[name] = true
	e.mu.Unlock()
	return p
}

// instance returns the path of an instance next to its example template,
// which fleetctl reads because no file of the instance's name exists.
func (e *schedEnv) instance(t *testing.T, template, instance string) string {
	t.Helper()
	e.example(t, template)
	at := strings.IndexByte(template, '@')
	return filepath.Join(e.dir, template[:at+1]+instance+template[at+1:])
}

// client returns an API client on host h.
func (e *schedEnv) client(t *testing.T, h *cluster.Host) *api.Client {
	t.Helper()
	cl, err := api.NewClient(h.Endpoint, api.ClientOptions{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// fleetctlOK runs fleetctl through h and fails the test unless it exits 0.
func fleetctlOK(t *testing.T, h *cluster.Host, args ...string) cluster.Result {
	t.Helper()
	r := h.Fleetctl(args...)
	if r.Exit != 0 {
		t.Fatalf("fleetctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Exit, r.Stdout, r.Stderr)
	}
	return r
}

// activeHosts returns, per unit, the sorted indexes of the hosts whose
// systemd has it active, with the main PIDs in the same order.
func activeHosts(c *cluster.Cluster, names ...string) (hosts map[string][]int, pids map[string][]uint32) {
	hosts, pids = map[string][]int{}, map[string][]uint32{}
	for name, ps := range runningQuiet(c, names...) {
		slices.SortFunc(ps, func(a, b placement) int { return a.host - b.host })
		for _, p := range ps {
			hosts[name] = append(hosts[name], p.host)
			pids[name] = append(pids[name], p.pid)
		}
	}
	return hosts, pids
}

// waitActiveOn waits until each unit is active on exactly the given hosts
// and returns the main PID per unit and host.
func waitActiveOn(t *testing.T, c *cluster.Cluster, want map[string][]int) map[string][]uint32 {
	t.Helper()
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	var got map[string][]int
	var pids map[string][]uint32
	ok := waitFor(schedWait, func() bool {
		got, pids = activeHosts(c, names...)
		for n, hs := range want {
			if !slices.Equal(got[n], hs) {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("want units active on hosts %v, have %v", want, got)
	}
	return pids
}

// waitActiveOnce waits until each unit is active on exactly one host and
// returns that host per unit.
func waitActiveOnce(t *testing.T, c *cluster.Cluster, names ...string) map[string]int {
	t.Helper()
	var got map[string][]int
	ok := waitFor(schedWait, func() bool {
		got, _ = activeHosts(c, names...)
		for _, n := range names {
			if len(got[n]) != 1 {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("want %v each active on one host, have %v", names, got)
	}
	out := make(map[string]int, len(names))
	for _, n := range names {
		out[n] = got[n][0]
	}
	return out
}

// waitFor polls cond every 100ms until it holds (true) or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// liveHost returns a host whose fleetd runs.
func (e *schedEnv) liveHost(t *testing.T) *cluster.Host {
	t.Helper()
	for _, h := range e.c.Hosts {
		if h.Running() {
			return h
		}
	}
	t.Fatal("no fleetd runs")
	return nil
}

// destroyUnits destroys units and waits until no host runs them and no
// machine reports them.
func (e *schedEnv) destroyUnits(t *testing.T, names ...string) {
	t.Helper()
	h := e.liveHost(t)
	fleetctlOK(t, h, append([]string{"destroy"}, names...)...)
	cl := e.client(t, h)
	ok := waitFor(schedWait, func() bool {
		active, _ := activeHosts(e.c, names...)
		if len(active) > 0 {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		states, err := cl.UnitStates(ctx, "", "")
		if err != nil {
			return false
		}
		for _, s := range states {
			if slices.Contains(names, s.Name) {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Errorf("units %v still running or reported after destroy", names)
	}
}

// destroyAtEnd destroys units when the (sub)test ends, so that the next
// one starts on an idle cluster whatever happened.
func (e *schedEnv) destroyAtEnd(t *testing.T, names ...string) {
	t.Helper()
	t.Cleanup(func() { e.destroyUnits(t, names...) })
}

// machineMetadata returns a machine's merged metadata as sorted k=v pairs
// joined by commas.
func machineMetadata(t *testing.T, cl *api.Client, id string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ms, err := cl.Machines(ctx)
	if err != nil {
		t.Fatalf("list machines: %v", err)
	}
	for _, m := range ms {
		if m.ID == id {
			var kv []string
			for k, v := range m.Metadata {
				kv = append(kv, k+"="+v)
			}
			slices.Sort(kv)
			return strings.Join(kv, ",")
		}
	}
	t.Fatalf("machine %s not listed", id)
	return ""
}

// waitReason waits until the API reports reason for a unit with no machine.
func waitReason(t *testing.T, cl *api.Client, name, reason string) {
	t.Helper()
	var u *api.Unit
	ok := waitFor(reasonWait, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		u, err = cl.Unit(ctx, name)
		return err == nil && u != nil && u.Reason == reason && u.MachineID == ""
	})
	if !ok {
		t.Fatalf("unit %s: want no machine and reason %q, have %+v", name, reason, u)
	}
}

// startUnplaceable runs a blocking start of a unit no machine can take and
// checks that it fails within its block budget and names the reason.
func startUnplaceable(t *testing.T, h *cluster.Host, arg, name, reason string) {
	t.Helper()
	began := time.Now()
	r := h.Fleetctl("start", "--block-attempts=3", arg)
	t.Logf("fleetctl start --block-attempts=3 %s: exit %d after %s", name, r.Exit, time.Since(began).Round(10*time.Millisecond))
	if r.Exit == 0 {
		t.Fatalf("start of unplaceable %s exited 0\nstdout: %s\nstderr: %s", name, r.Stdout, r.Stderr)
	}
	if want := fmt.Sprintf("Unit %s cannot be placed: %s\n", name, reason); !strings.Contains(r.Stderr, want) {
		t.Errorf("start of %s: stderr %q, want it to contain %q", name, r.Stderr, want)
	}
}

// unitFileHashes returns the full hash of each unit from list-unit-files.
func unitFileHashes(t *testing.T, h *cluster.Host) map[string]string {
	t.Helper()
	r := fleetctlOK(t, h, "list-unit-files", "--full", "--no-legend", "--fields", "unit,hash")
	out := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(r.Stdout), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			out[f[0]] = f[1]
		}
	}
	return out
}

func TestSchedExamples(t *testing.T) {
	dir, err := filepath.Abs(examplesDir)
	if err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, cluster.Options{Hosts: schedHosts - 1, Metadata: schedMetadata})
	c.AddHost(schedPinnedID)
	c.WaitMachines(schedHosts)
	e := &schedEnv{c: c, dir: dir, used: map[string]bool{}}
	h0 := c.Hosts[0]

	t.Run("CanonicalFormAndHash", func(t *testing.T) {
		e.destroyAtEnd(t, "hello.service")
		p := e.example(t, "hello.service")
		// On an idle cluster the machine with the smallest ID gets it.
		if got, want := fleetctlOK(t, h0, "start", p).Stdout, docOutput(t, "fleetctl start hello.service"); got != want {
			t.Errorf("fleetctl start hello.service printed %q, the document shows %q", got, want)
		}
		waitActiveOnce(t, c, "hello.service")
		cat := fleetctlOK(t, h0, "cat", "hello.service").Stdout
		if want := docOutput(t, "fleetctl cat hello.service"); cat != want {
			t.Errorf("fleetctl cat hello.service = %q, the document shows %q", cat, want)
		}
		sum := sha1.Sum([]byte(cat))
		full := hex.EncodeToString(sum[:])
		if got := unitFileHashes(t, h0)["hello.service"]; got != full {
			t.Errorf("list-unit-files hash %s, want SHA1 of the canonical form %s", got, full)
		}
		r := fleetctlOK(t, h0, "list-unit-files", "--fields", "unit,hash")
		if got, want := strings.Fields(r.Stdout), strings.Fields(docOutput(t, "fleetctl list-unit-files --fields unit,hash")); !slices.Equal(got, want) {
			t.Errorf("list-unit-files = %q, the document shows %q", got, want)
		}
	})

	t.Run("MachineID", func(t *testing.T) {
		full, short, absent := "pinned.service", "pin@"+schedPinnedShort+".service", "pin@deadbeef.service"
		e.destroyAtEnd(t, full, short, absent, "legacy-pinned.service")
		fleetctlOK(t, h0, "start", e.example(t, full), e.instance(t, "pin@.service", schedPinnedShort),
			e.example(t, "legacy-pinned.service"))
		waitActiveOn(t, c, map[string][]int{full: {3}, short: {3}, "legacy-pinned.service": {3}})
		startUnplaceable(t, h0, e.instance(t, "pin@.service", "deadbeef"), absent, "MachineID deadbeef is not a live machine")
		waitReason(t, e.client(t, h0), absent, "MachineID deadbeef is not a live machine")
	})

	t.Run("MachineMetadata", func(t *testing.T) {
		want := map[string][]int{"reporting.service": {0}, "legacy.service": {3}, "legacy-peer.service": {3}}
		args := []string{"start", e.example(t, "reporting.service"), e.example(t, "legacy.service"),
			e.example(t, "legacy-peer.service")}
		for i := range schedHosts {
			node := fmt.Sprintf("node%d", i)
			args = append(args, e.instance(t, "site@.service", node))
			want["site@"+node+".service"] = []int{i}
		}
		e.destroyAtEnd(t, append(slices.Collect(maps.Keys(want)), "pinned.service")...)
		fleetctlOK(t, h0, args...)
		waitActiveOn(t, c, want)
		// X-Conflicts of legacy.service keeps pinned.service off node3,
		// the only machine pinned.service may run on.
		fleetctlOK(t, h0, "start", "--no-block", e.example(t, "pinned.service"))
		waitReason(t, e.client(t, h0), "pinned.service", "conflicts with legacy.service on every candidate machine")
	})

	t.Run("TemplateInstances", func(t *testing.T) {
		var names []string
		for i := 1; i <= 6; i++ {
			names = append(names, fmt.Sprintf("worker@%d.service", i))
		}
		e.destroyAtEnd(t, append(names, "worker@.service")...)
		e.example(t, "worker@.service")
		r := fleetctlInDir(t, h0, e.dir, "fleetctl start worker@{1..5}.service")
		for _, n := range names[:5] {
			if !strings.Contains(r.Stdout, "Unit "+n+" launched on ") {
				t.Errorf("start output %q lacks the launched line of %s", r.Stdout, n)
			}
		}
		hosts := waitActiveOnce(t, c, names[:5]...)
		perHost := map[int]int{}
		for _, h := range hosts {
			perHost[h]++
		}
		if len(perHost) != schedHosts {
			t.Errorf("5 unconstrained instances on an idle cluster of %d machines went to %v", schedHosts, hosts)
		}
		if r := h0.Fleetctl("start", "worker@.service"); r.Exit == 0 || !strings.Contains(r.Stderr, `cannot activate template "worker@.service"`) {
			t.Errorf("start of a template: exit %d stderr %q, want an error", r.Exit, r.Stderr)
		}
		// Once the template is in the cluster, an instance needs no file.
		fleetctlOK(t, h0, "submit", e.example(t, "worker@.service"))
		fleetctlOK(t, h0, "start", "worker@6.service")
		waitActiveOnce(t, c, "worker@6.service")
		hashes := unitFileHashes(t, h0)
		for _, n := range names {
			if hashes[n] != hashes["worker@.service"] || hashes[n] == "" {
				t.Errorf("hash of %s = %q, want the template's %q", n, hashes[n], hashes["worker@.service"])
			}
		}
	})

	t.Run("ConflictsBothWays", func(t *testing.T) {
		e.destroyAtEnd(t, "backup.service", "batch.service")
		// The new unit's Conflicts names a unit already on the machine.
		fleetctlOK(t, h0, "start", e.example(t, "backup.service"))
		waitActiveOn(t, c, map[string][]int{"backup.service": {1}})
		startUnplaceable(t, h0, e.example(t, "batch.service"), "batch.service",
			"conflicts with backup.service on every candidate machine")
		e.destroyUnits(t, "backup.service", "batch.service")
		// The other way round: a unit already on the machine names the new one.
		fleetctlOK(t, h0, "start", e.example(t, "batch.service"))
		waitActiveOn(t, c, map[string][]int{"batch.service": {1}})
		fleetctlOK(t, h0, "start", "--no-block", e.example(t, "backup.service"))
		waitReason(t, e.client(t, h0), "backup.service", "conflicts with batch.service on every candidate machine")
	})

	t.Run("ConflictsSpreadInstances", func(t *testing.T) {
		var webs []string
		args := []string{"start"}
		for i := 1; i <= schedHosts; i++ {
			webs = append(webs, fmt.Sprintf("web@%d.service", i))
			args = append(args, e.instance(t, "web@.service", fmt.Sprint(i)))
		}
		e.destroyAtEnd(t, append(webs, "web@5.service")...)
		fleetctlOK(t, h0, args...)
		seen := map[int]string{}
		for n, h := range waitActiveOnce(t, c, webs...) {
			if other, ok := seen[h]; ok {
				t.Errorf("%s and %s share host %d", n, other, h)
			}
			seen[h] = n
		}
		fleetctlOK(t, h0, "start", "--no-block", e.instance(t, "web@.service", "5"))
		waitReason(t, e.client(t, h0), "web@5.service", "conflicts with "+strings.Join(webs, ", ")+" on every candidate machine")
	})

	t.Run("MachineOfUnplaceable", func(t *testing.T) {
		e.destroyAtEnd(t, "web-announce@9.service", "ring-a.service", "ring-b.service")
		cl := e.client(t, h0)
		fleetctlOK(t, h0, "start", "--no-block", e.instance(t, "web-announce@.service", "9"),
			e.example(t, "ring-a.service"), e.example(t, "ring-b.service"))
		waitReason(t, cl, "web-announce@9.service", "MachineOf web@9.service, which is not scheduled")
		waitReason(t, cl, "ring-a.service", "MachineOf requirements form a cycle")
		waitReason(t, cl, "ring-b.service", "MachineOf requirements form a cycle")
	})

	t.Run("Global", func(t *testing.T) {
		e.destroyAtEnd(t, "metrics.service")
		r := fleetctlOK(t, h0, "start", e.example(t, "metrics.service"))
		if !strings.Contains(r.Stdout, "Triggered global unit metrics.service start") {
			t.Errorf("start output %q, want the global trigger line", r.Stdout)
		}
		waitActiveOn(t, c, map[string][]int{"metrics.service": {0, 2}})
		r = fleetctlOK(t, h0, "list-unit-files", "--no-legend", "--fields", "unit,global,target")
		if !slices.Contains(strings.Split(r.Stdout, "\n"), "metrics.service\ttrue\tglobal") {
			t.Errorf("list-unit-files = %q, want the row metrics.service true global", r.Stdout)
		}
	})

	t.Run("MetadataChangedThroughAPI", func(t *testing.T) {
		names := []string{"reporting.service", "metrics.service", "gpu.service", "site@node2.service"}
		e.destroyAtEnd(t, names...)
		cl := e.client(t, h0)
		patch := func(i int, set map[string]string, remove ...string) {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := cl.PatchMachineMetadata(ctx, c.Hosts[i].MachineID, set, remove); err != nil {
				t.Fatalf("patch metadata of host %d: %v", i, err)
			}
		}
		// Whatever happens, leave the configured metadata in force.
		t.Cleanup(func() {
			patch(0, map[string]string{"disk": "ssd"})
			patch(1, map[string]string{"disk": "hdd"})
			patch(3, nil, "gpu")
		})
		fleetctlOK(t, h0, "start", e.example(t, "reporting.service"), e.example(t, "metrics.service"),
			e.instance(t, "site@.service", "node2"))
		before := waitActiveOn(t, c, map[string][]int{"reporting.service": {0}, "metrics.service": {0, 2},
			"site@node2.service": {2}})

		// node1 gets an SSD and node0 loses its own: both units follow.
		patch(1, map[string]string{"disk": "ssd"})
		patch(0, map[string]string{"disk": "hdd"})
		waitActiveOn(t, c, map[string][]int{"reporting.service": {1}, "metrics.service": {1, 2}})
		// Removing node1's disk hides the key, configured value included
		// (as in fleet): no machine is left for reporting.service.
		patch(1, nil, "disk")
		waitActiveOn(t, c, map[string][]int{"reporting.service": nil, "metrics.service": {2}})
		if md := machineMetadata(t, cl, c.Hosts[1].MachineID); md != "hostname=node1,region=eu" {
			t.Errorf("node1 metadata after removing disk = %q, want hostname=node1,region=eu", md)
		}
		waitReason(t, cl, "reporting.service", "no live machine matches MachineMetadata disk=ssd,region=eu")

		// A unit no machine can take waits, and starts as soon as one can.
		gpuReason := "no live machine matches MachineMetadata gpu=true"
		startUnplaceable(t, h0, e.example(t, "gpu.service"), "gpu.service", gpuReason)
		if got, want := h0.Fleetctl("status", "gpu.service"), docOutput(t, "fleetctl status gpu.service"); got.Exit != 1 || got.Stderr != want {
			t.Errorf("fleetctl status gpu.service: exit %d stderr %q, want exit 1 and the document's %q", got.Exit, got.Stderr, want)
		}
		r := fleetctlOK(t, h0, "list-unit-files", "--no-legend", "--fields", "unit,dstate,state,reason")
		if !slices.ContainsFunc(strings.Split(r.Stdout, "\n"), func(l string) bool {
			return strings.Join(strings.Fields(l), " ") == "gpu.service launched inactive "+gpuReason
		}) {
			t.Errorf("list-unit-files = %q, want gpu.service launched inactive with reason %q", r.Stdout, gpuReason)
		}
		patch(3, map[string]string{"gpu": "true"})
		waitActiveOn(t, c, map[string][]int{"gpu.service": {3}})

		// node0 gets its SSD back; node3 loses the GPU.
		patch(0, map[string]string{"disk": "ssd"})
		patch(3, nil, "gpu")
		after := waitActiveOn(t, c, map[string][]int{"reporting.service": {0}, "metrics.service": {0, 2},
			"gpu.service": nil, "site@node2.service": {2}})
		// Units whose machine kept matching were never restarted.
		if !slices.Equal(before["site@node2.service"], after["site@node2.service"]) {
			t.Errorf("site@node2.service restarted: PID %v -> %v", before["site@node2.service"], after["site@node2.service"])
		}
		if before["metrics.service"][1] != after["metrics.service"][1] {
			t.Errorf("metrics.service restarted on node2: PID %d -> %d", before["metrics.service"][1], after["metrics.service"][1])
		}
		for _, h := range c.Hosts {
			if !h.Running() {
				t.Errorf("fleetd of host %d is not running", h.Index)
			}
		}
	})

	t.Run("Replaces", func(t *testing.T) {
		e.destroyAtEnd(t, "app-v1.service", "app-v2.service")
		cl := e.client(t, h0)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Keep node3 out of reach while version 1 starts, so that it lands
		// on node2 whatever the load.
		node3 := c.Hosts[3].MachineID
		if err := cl.PatchMachineMetadata(ctx, node3, map[string]string{"hostname": "away"}, nil); err != nil {
			t.Fatal(err)
		}
		fleetctlOK(t, h0, "start", e.example(t, "app-v1.service"))
		waitActiveOn(t, c, map[string][]int{"app-v1.service": {2}})
		if err := cl.PatchMachineMetadata(ctx, node3, map[string]string{"hostname": "node3"}, nil); err != nil {
			t.Fatal(err)
		}
		fleetctlOK(t, h0, "start", e.example(t, "app-v2.service"))
		waitActiveOn(t, c, map[string][]int{"app-v2.service": {2}, "app-v1.service": {3}})
	})

	t.Run("InstallWantedByWithBindsTo", func(t *testing.T) {
		e.destroyAtEnd(t, "app.target", "app-worker.service", "app-extra.service")
		fleetctlOK(t, h0, "load", e.example(t, "app.target"), e.example(t, "app-worker.service"))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		target, err := e.client(t, h0).Unit(ctx, "app.target")
		if err != nil || target == nil || target.MachineID == "" {
			t.Fatalf("app.target not loaded on a machine: %+v %v", target, err)
		}
		host := -1
		for _, h := range c.Hosts {
			if h.MachineID == target.MachineID {
				host = h.Index
			}
		}
		if active, _ := activeHosts(c, "app-worker.service"); len(active) > 0 {
			t.Errorf("app-worker.service active while only loaded: %v", active)
		}
		// Starting the target pulls the worker in through WantedBy.
		fleetctlOK(t, h0, "start", "app.target")
		pids := waitActiveOn(t, c, map[string][]int{"app.target": {host}, "app-worker.service": {host}})
		// Make the agent of that machine reconcile again: a worker pulled in
		// by its target keeps running although fleet only loaded it.
		extra := filepath.Join(t.TempDir(), "app-extra.service")
		if err := os.WriteFile(extra, []byte(sleeper+"\n[X-Fleet]\nMachineOf=app.target\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		fleetctlOK(t, h0, "start", extra)
		after := waitActiveOn(t, c, map[string][]int{"app-extra.service": {host}, "app-worker.service": {host}})
		if !slices.Equal(pids["app-worker.service"], after["app-worker.service"]) {
			t.Errorf("app-worker.service restarted: PID %v -> %v", pids["app-worker.service"], after["app-worker.service"])
		}
		// Stopping the target stops the worker through BindsTo.
		fleetctlOK(t, h0, "stop", "app.target")
		waitActiveOn(t, c, map[string][]int{"app.target": nil, "app-worker.service": nil})
	})

	t.Run("UnknownOptionWarns", func(t *testing.T) {
		e.destroyAtEnd(t, "typo.service")
		r := fleetctlOK(t, h0, "start", e.example(t, "typo.service"))
		if want := docOutput(t, "fleetctl start typo.service"); !strings.Contains(r.Stderr, want) {
			t.Errorf("stderr %q, want the warning the document shows, %q", r.Stderr, want)
		}
		waitActiveOnce(t, c, "typo.service")
	})

	t.Run("ForbiddenCombinations", func(t *testing.T) {
		cl := e.client(t, h0)
		rows := docInvalidExamples(t)
		if len(rows) == 0 {
			t.Fatal("the document lists no invalid examples")
		}
		entries, err := os.ReadDir(filepath.Join(e.dir, "invalid"))
		if err != nil {
			t.Fatal(err)
		}
		for _, ent := range entries {
			if _, ok := rows[ent.Name()]; !ok {
				t.Errorf("invalid/%s is not listed in the document", ent.Name())
			}
		}
		for _, file := range slices.Sorted(maps.Keys(rows)) {
			msg := rows[file]
			t.Run(file, func(t *testing.T) {
				r := h0.Fleetctl("start", e.example(t, "invalid/"+file))
				want := fmt.Sprintf("Error creating units: unit %s: %s", file, msg)
				if r.Exit != 1 || !strings.Contains(r.Stderr, want) {
					t.Errorf("start invalid/%s: exit %d stderr %q, want exit 1 and %q", file, r.Exit, r.Stderr, want)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if u, err := cl.Unit(ctx, file); err != nil || u != nil {
					t.Errorf("invalid/%s: registry has %+v (%v), want nothing stored", file, u, err)
				}
			})
		}
	})

	// Last: this one takes a machine away.
	t.Run("MachineOfMovesWithLeader", func(t *testing.T) {
		var names []string
		args := []string{"start"}
		for i := 1; i < schedHosts; i++ {
			names = append(names, fmt.Sprintf("web@%d.service", i), fmt.Sprintf("web-announce@%d.service", i))
			args = append(args, e.instance(t, "web@.service", fmt.Sprint(i)),
				e.instance(t, "web-announce@.service", fmt.Sprint(i)))
		}
		e.destroyAtEnd(t, names...)
		fleetctlOK(t, h0, args...)
		before := waitActiveOnce(t, c, names...)
		_, beforePIDs := activeHosts(c, names...)
		for i := 1; i < schedHosts; i++ {
			web, ann := fmt.Sprintf("web@%d.service", i), fmt.Sprintf("web-announce@%d.service", i)
			if before[web] != before[ann] {
				t.Fatalf("%s on host %d, %s on host %d", web, before[web], ann, before[ann])
			}
		}
		victim := c.Hosts[before["web@1.service"]]
		victim.Stop(syscall.SIGTERM)
		after := waitActiveOnce(t, c, names...)
		_, afterPIDs := activeHosts(c, names...)
		if after["web@1.service"] == victim.Index || after["web@1.service"] != after["web-announce@1.service"] {
			t.Errorf("after host %d left: web@1 on host %d, web-announce@1 on host %d; want them together elsewhere",
				victim.Index, after["web@1.service"], after["web-announce@1.service"])
		}
		for _, n := range names {
			if strings.HasSuffix(n, "@1.service") {
				continue
			}
			if after[n] != before[n] || !slices.Equal(afterPIDs[n], beforePIDs[n]) {
				t.Errorf("%s disturbed: host %d PID %v -> host %d PID %v", n, before[n], beforePIDs[n], after[n], afterPIDs[n])
			}
		}
	})

	if !t.Failed() {
		all, err := exampleFiles(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range all {
			if !e.used[f] {
				t.Errorf("example %s is not started by any test", f)
			}
		}
	}
}

// fleetctlInDir runs a fleetctl command line with bash in dir, so that the
// shell expands it as a user's shell would. "fleetctl" stands for the
// built binary talking to h.
func fleetctlInDir(t *testing.T, h *cluster.Host, dir, line string) cluster.Result {
	t.Helper()
	bin := filepath.Join(cluster.Binaries(t), "fleetctl")
	cmd := exec.Command("bash", "-c", `fleetctl() { "$FLEETCTL" --endpoint "$ENDPOINT" "$@"; }; `+line)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "FLEETCTL=" + bin, "ENDPOINT=" + h.Endpoint}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", line, err, out.String(), errb.String())
	}
	return cluster.Result{Stdout: out.String(), Stderr: errb.String()}
}

// exampleFiles lists the files under dir as slash-separated relative paths.
func exampleFiles(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list examples: %w", err)
	}
	slices.Sort(out)
	return out, nil
}

// docBlock is one fenced block of the document.
type docBlock struct {
	lang    string
	label   string // the paragraph right before the fence
	content string
	line    int // line number of the opening fence
}

// readDocBlocks returns the fenced blocks of docs/unit-files.md.
func readDocBlocks(t *testing.T) []docBlock {
	t.Helper()
	data, err := os.ReadFile(unitFilesDoc)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []docBlock
	var cur *docBlock
	var body strings.Builder
	var para []string // lines of the paragraph being read or, after a blank line, the last one
	inPara := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &docBlock{lang: strings.TrimPrefix(line, "```"), label: strings.Join(para, "\n"), line: n}
			body.Reset()
		case cur != nil && line == "```":
			cur.content = body.String()
			blocks = append(blocks, *cur)
			cur, para, inPara = nil, nil, false
		case cur != nil:
			body.WriteString(line + "\n")
		case strings.TrimSpace(line) == "":
			inPara = false
		default:
			if !inPara {
				para, inPara = nil, true
			}
			para = append(para, line)
		}
	}
	if cur != nil {
		t.Fatalf("%s: block opened on line %d is not closed", unitFilesDoc, cur.line)
	}
	return blocks
}

// docOutput returns what the document shows a command printing: the rest
// of the console block whose first line is "$ " + command.
func docOutput(t *testing.T, command string) string {
	t.Helper()
	for _, b := range readDocBlocks(t) {
		if rest, ok := strings.CutPrefix(b.content, "$ "+command+"\n"); ok && b.lang == "console" {
			return rest
		}
	}
	t.Fatalf("%s shows no output of %q", unitFilesDoc, command)
	return ""
}

// exampleLink matches a link to an example file, "](examples/NAME)"; the
// paragraph before an ini block links the file the block shows.
var exampleLink = regexp.MustCompile(`\]\(examples/([^)\s]+)\)`)

// invalidRow is a table row "| [`invalid/F`](examples/invalid/F) | `message` |".
var invalidRow = regexp.MustCompile("^\\|\\s*\\[`invalid/([^`]+)`\\]\\(examples/invalid/[^)]+\\)\\s*\\|\\s*`([^`]+)`\\s*\\|")

// docInvalidExamples maps each invalid example file the document lists to
// the error message it says fleetctl prints.
func docInvalidExamples(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(unitFilesDoc)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(string(data), "\n") {
		if m := invalidRow.FindStringSubmatch(line); m != nil {
			out[m[1]] = m[2]
		}
	}
	return out
}

func TestDocExampleBlocksMatchFiles(t *testing.T) {
	blocks := readDocBlocks(t)
	shown := map[string]bool{}
	for _, b := range blocks {
		if b.lang != "ini" {
			continue
		}
		links := exampleLink.FindAllStringSubmatch(b.label, -1)
		if len(links) != 1 {
			t.Errorf("%s:%d: the paragraph before an ini block must link exactly one example file, it links %d: %q",
				unitFilesDoc, b.line, len(links), b.label)
			continue
		}
		name := links[0][1]
		shown[name] = true
		data, err := os.ReadFile(filepath.Join(examplesDir, filepath.FromSlash(name)))
		if err != nil {
			t.Errorf("%s:%d: %v", unitFilesDoc, b.line, err)
			continue
		}
		if string(data) != b.content {
			t.Errorf("%s:%d: block differs from examples/%s\ndocument:\n%s\nfile:\n%s", unitFilesDoc, b.line, name, b.content, data)
		}
	}
	if len(shown) == 0 {
		t.Fatal("no ini examples found in the document")
	}
}

func TestDocNamesEveryExample(t *testing.T) {
	data, err := os.ReadFile(unitFilesDoc)
	if err != nil {
		t.Fatal(err)
	}
	linked := map[string]bool{}
	for _, m := range exampleLink.FindAllStringSubmatch(string(data), -1) {
		linked[m[1]] = true
	}
	files, err := exampleFiles(examplesDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !linked[f] {
			t.Errorf("examples/%s is not linked from %s", f, unitFilesDoc)
		}
	}
	for l := range linked {
		if !slices.Contains(files, l) {
			t.Errorf("%s links examples/%s, which does not exist", unitFilesDoc, l)
		}
	}
}
