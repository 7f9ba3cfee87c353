package fleetctl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/api/localunits"
	"github.com/fleet-next/fleet/internal/testenv"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/registry/registrytest"
	"github.com/fleet-next/fleet/systemd"
	"github.com/fleet-next/fleet/systemd/launch"
	"github.com/fleet-next/fleet/unit"
)

// hostTimeout bounds starting and stopping a host's systemd and waiting
// for a unit to start.
const hostTimeout = time.Minute

// hostCluster is a cluster of real hosts for the status and journal
// commands: each host is a private systemd --user manager, driven through
// the real systemd adapter, with the real API handler answering unit
// status and journal requests for it (localunits.LocalUnits) and forwarding
// the others to the host that owns them. The registry is real; units are
// placed and started by the test as the engine and the agents would.
type hostCluster struct {
	reg    *registry.Etcd
	leader *registry.Leader
	hosts  []*testHost
}

// testHost is one machine of a hostCluster.
type testHost struct {
	machine  unit.Machine
	lease    registry.LeaseID
	sd       *systemd.Manager
	endpoint string
	// journald is where the host's journal reader looks for journald's
	// socket: journald "runs" while a socket is bound there.
	journald string
}

func requireRoot(t *testing.T) {
	t.Helper()
	testenv.RequireSystemd(t)
}

// newHostCluster starts n hosts.
func newHostCluster(t *testing.T, n int) *hostCluster {
	t.Helper()
	requireRoot(t)
	e := registrytest.StartEtcd(t)
	hc := &hostCluster{reg: registry.FromClient(e.Client(t), "/hosts/", nil)}
	for i := range n {
		hc.hosts = append(hc.hosts, hc.startHost(t, i))
	}
	leader, err := hc.reg.Campaign(t.Context(), hc.hosts[0].machine.ID, hc.hosts[0].lease, registry.MinElectionTTL)
	if err != nil {
		t.Fatalf("campaign: %v", err)
	}
	hc.leader = leader
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), hostTimeout)
		defer cancel()
		if err := leader.Resign(ctx); err != nil {
			t.Errorf("resign: %v", err)
		}
	})
	return hc
}

func (hc *hostCluster) startHost(t *testing.T, i int) *testHost {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), hostTimeout)
	defer cancel()
	lm, err := launch.Start(ctx, launch.Options{})
	if err != nil {
		t.Fatalf("start systemd: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), hostTimeout)
		defer cancel()
		if err := lm.Stop(ctx); err != nil {
			t.Errorf("stop systemd: %v", err)
		}
	})
	sd, err := systemd.New(ctx, systemd.Config{UnitsDir: filepath.Join(t.TempDir(), "units"), PrivateSocket: lm.PrivateSocket()})
	if err != nil {
		t.Fatalf("connect to systemd: %v", err)
	}
	t.Cleanup(func() {
		if err := sd.Close(); err != nil {
			t.Errorf("close systemd connection: %v", err)
		}
	})
	h := &testHost{
		machine:  unit.Machine{ID: fmt.Sprintf("%x%x%x%x5e1f%04d", i+10, i+10, i+10, i+10, i+1), PublicIP: fmt.Sprintf("127.0.0.%d", 11+i)},
		sd:       sd,
		journald: filepath.Join(t.TempDir(), "journal.sock"),
	}
	local := &localunits.LocalUnits{MachineID: h.machine.ID, Systemd: sd,
		Logs: systemd.NewJournal(systemd.JournalConfig{Socket: h.journald, User: true})}
	srv := httptest.NewServer(api.NewHandler(hc.reg, api.Options{Version: "test", MachineID: h.machine.ID, Local: local}))
	t.Cleanup(srv.Close)
	h.endpoint = srv.URL
	h.machine.APIURL = srv.URL
	if h.lease, err = hc.reg.Register(ctx, h.machine, "installation-"+h.machine.ID, machineLease); err != nil {
		t.Fatalf("register machine: %v", err)
	}
	return h
}

// runJournald makes journald look alive on h until the test ends: its
// socket exists. journalctl itself is the real one and reads the journal
// files this machine has.
func (h *testHost) runJournald(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("unix", h.journald)
	if err != nil {
		t.Fatalf("bind journald socket: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
}

// run starts a unit on hosts as fleet would: stored in the registry,
// placed by the engine, started by each host's systemd, and its state
// published by each host's agent. A launched unit is started and awaited;
// a loaded one is only loaded.
func (hc *hostCluster) run(t *testing.T, name, text string, desired unit.FleetState, hosts ...*testHost) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), hostTimeout)
	defer cancel()
	f := mustParse(t, text)
	content := f.Serialize()
	if err := hc.reg.CreateUnit(ctx, unit.Unit{Name: name, Content: content, Hash: f.Hash(), Desired: desired,
		Global: f.IsGlobal()}); err != nil {
		t.Fatalf("create unit: %v", err)
	}
	var changes []registry.ScheduleChange
	for _, h := range hosts {
		changes = append(changes, registry.Place(unit.Placement{Unit: name, Machine: h.machine.ID,
			Hash: f.Hash(), Desired: desired, Content: content}))
	}
	if _, err := hc.leader.Apply(ctx, changes); err != nil {
		t.Fatalf("place unit: %v", err)
	}
	for _, h := range hosts {
		if err := h.sd.WriteUnitFile(ctx, name, content); err != nil {
			t.Fatalf("write unit file: %v", err)
		}
		if err := h.sd.Link(ctx, []string{name}); err != nil {
			t.Fatalf("link unit: %v", err)
		}
		if err := h.sd.Reload(ctx); err != nil {
			t.Fatalf("daemon-reload: %v", err)
		}
		if desired == unit.StateLaunched {
			if err := h.sd.Start(ctx, name); err != nil {
				t.Fatalf("start unit: %v", err)
			}
		}
		st := h.waitState(ctx, t, name, desired)
		if err := hc.reg.PublishState(ctx, h.lease, unit.State{Name: name, MachineID: h.machine.ID, Hash: f.Hash(),
			SystemdState: st, Current: desired}); err != nil {
			t.Fatalf("publish state: %v", err)
		}
	}
}

// waitState waits until systemd has the unit loaded, and active if it was
// started.
func (h *testHost) waitState(ctx context.Context, t *testing.T, name string, desired unit.FleetState) unit.SystemdState {
	t.Helper()
	for {
		states, err := h.sd.States(ctx, []string{name})
		if err != nil {
			t.Fatalf("read state of %s: %v", name, err)
		}
		st := states[name]
		if st.LoadState == "loaded" && (desired != unit.StateLaunched || st.ActiveState == "active") {
			return st
		}
		select {
		case <-ctx.Done():
			t.Fatalf("unit %s on %s never reached %s: %+v", name, h.machine.ID, desired, st)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// fleetctl runs a command line against the API of the first host.
func (hc *hostCluster) fleetctl(t *testing.T, args ...string) result {
	t.Helper()
	return runFleetctl(t, nil, run{env: map[string]string{"FLEETCTL_ENDPOINT": hc.hosts[0].endpoint}, args: args})
}

const sleepUnit = "[Unit]\nDescription=Sleeper\n\n[Service]\nExecStart=/bin/sleep 1000\n"

const globalSleepUnit = "[Unit]\nDescription=Sleeper everywhere\n\n[Service]\nExecStart=/bin/sleep 1000\n\n[X-Fleet]\nGlobal=true\n"

// statusPattern is what systemctl status prints for a running sleeper.
func statusPattern(name string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^● ` + regexp.QuoteMeta(name) + ` - Sleeper.*\n` +
		`\s+Loaded: loaded \(.*` + regexp.QuoteMeta(name) + `.*\)\n` +
		`\s+Active: active \(running\) since .*\n` +
		`(?:.*\n)*?\s+Main PID: \d+ \(sleep\)\n`)
}

func TestStatusAndJournal(t *testing.T) {
	hc := newHostCluster(t, 2)
	h1, h2 := hc.hosts[0], hc.hosts[1]
	hc.run(t, "here.service", sleepUnit, unit.StateLaunched, h1)
	hc.run(t, "there.service", sleepUnit, unit.StateLaunched, h2)
	hc.run(t, "stopped.service", sleepUnit, unit.StateLoaded, h2)
	hc.run(t, "everywhere.service", globalSleepUnit, unit.StateLaunched, h1, h2)
	legend := func(h *testHost) string { return machineLegend(h.machine.ID, h.machine.PublicIP, false) }
	noJournald := "journal unavailable on machine %s: journald is not running (no " + "%s)"

	t.Run("status of a unit on the machine asked", func(t *testing.T) {
		res := hc.fleetctl(t, "status", "here")
		wantRun(t, res, ExitOK, "")
		if !statusPattern("here.service").MatchString(res.stdout) {
			t.Errorf("stdout does not read like systemctl status:\n%s", res.stdout)
		}
		if want := "Warning: no log lines: " + fmt.Sprintf(noJournald, h1.machine.ID, h1.journald) + "\n"; !strings.HasSuffix(res.stdout, want) {
			t.Errorf("stdout does not end with %q:\n%s", want, res.stdout)
		}
	})
	t.Run("status of a unit on another machine is forwarded", func(t *testing.T) {
		res := hc.fleetctl(t, "status", "there")
		wantRun(t, res, ExitOK, "")
		if !statusPattern("there.service").MatchString(res.stdout) {
			t.Errorf("stdout does not read like systemctl status:\n%s", res.stdout)
		}
	})
	t.Run("status of several units separated by a blank line", func(t *testing.T) {
		res := hc.fleetctl(t, "status", "here", "there.service")
		wantRun(t, res, ExitOK, "")
		parts := strings.Split(res.stdout, "\n\n")
		if len(parts) != 2 || !statusPattern("here.service").MatchString(parts[0]) ||
			!statusPattern("there.service").MatchString(parts[1]) {
			t.Errorf("want two statuses separated by one blank line, got:\n%s", res.stdout)
		}
	})
	t.Run("status of a stopped unit exits 3", func(t *testing.T) {
		res := hc.fleetctl(t, "status", "stopped")
		wantRun(t, res, ExitNotRunning, "")
		if !regexp.MustCompile(`(?m)^\s+Active: inactive \(dead\)`).MatchString(res.stdout) {
			t.Errorf("stdout does not say the unit is inactive:\n%s", res.stdout)
		}
	})
	t.Run("status of a global unit on every machine", func(t *testing.T) {
		res := hc.fleetctl(t, "status", "everywhere")
		wantRun(t, res, ExitOK, "")
		re := regexp.MustCompile(`^==> machine ` + regexp.QuoteMeta(legend(h1)) + ` <==\n● everywhere.service(?:.*\n)+\n` +
			`==> machine ` + regexp.QuoteMeta(legend(h2)) + ` <==\n● everywhere.service(?:.*\n)+$`)
		if !re.MatchString(res.stdout) {
			t.Errorf("want one status per machine under headers, got:\n%s", res.stdout)
		}
	})
	t.Run("status as json", func(t *testing.T) {
		res := hc.fleetctl(t, "status", "-o", "json", "here", "everywhere")
		wantRun(t, res, ExitOK, "")
		var reps []api.UnitStatusReport
		if err := json.Unmarshal([]byte(res.stdout), &reps); err != nil {
			t.Fatalf("stdout is not a JSON list of reports: %v\n%s", err, res.stdout)
		}
		var got []string
		for _, r := range reps {
			got = append(got, fmt.Sprintf("%s@%s %s/%s/%s pid>0=%v", r.Name, r.MachineID, r.SystemdLoadState,
				r.SystemdActiveState, r.SystemdSubState, r.MainPID > 0))
		}
		want := []string{
			"here.service@" + h1.machine.ID + " loaded/active/running pid>0=true",
			"everywhere.service@" + h1.machine.ID + " loaded/active/running pid>0=true",
			"everywhere.service@" + h2.machine.ID + " loaded/active/running pid>0=true",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("reports:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
	t.Run("status as yaml of a stopped unit exits 0", func(t *testing.T) {
		res := hc.fleetctl(t, "status", "-o", "yaml", "stopped")
		wantRun(t, res, ExitOK, "")
		for _, line := range []string{"name: stopped.service\n", "machineID: " + h2.machine.ID + "\n", "systemdActiveState: inactive\n"} {
			if !strings.Contains(res.stdout, line) {
				t.Errorf("stdout has no %q:\n%s", line, res.stdout)
			}
		}
	})
	t.Run("journal without journald says why", func(t *testing.T) {
		res := hc.fleetctl(t, "journal", "there")
		wantRun(t, res, ExitError, "Unable to retrieve journal of unit there.service: "+
			fmt.Sprintf(noJournald, h2.machine.ID, h2.journald)+"\n")
	})
	t.Run("journal from journald", func(t *testing.T) {
		h2.runJournald(t)
		res := hc.fleetctl(t, "journal", "--lines=3", "--output=short-iso", "there")
		wantRun(t, res, ExitOK, "")
		if res.stdout != "-- No entries --\n" {
			t.Errorf("stdout = %q, want journalctl's answer for a unit without entries", res.stdout)
		}
	})
	t.Run("journal of a global unit under machine headers", func(t *testing.T) {
		h1.runJournald(t)
		h2.runJournald(t)
		res := hc.fleetctl(t, "journal", "everywhere")
		wantRun(t, res, ExitOK, "")
		want := "==> machine " + legend(h1) + " <==\n-- No entries --\n\n==> machine " + legend(h2) + " <==\n-- No entries --\n"
		if res.stdout != want {
			t.Errorf("stdout = %q, want %q", res.stdout, want)
		}
	})
	t.Run("journal follow of a global unit stops when one machine fails", func(t *testing.T) {
		h1.runJournald(t) // h2 has none
		res := hc.fleetctl(t, "journal", "-f", "everywhere")
		wantRun(t, res, ExitError, "Unable to retrieve journal of unit everywhere.service on machine "+h2.machine.ID+": "+
			fmt.Sprintf(noJournald, h2.machine.ID, h2.journald)+"\n")
		if res.stdout != "" {
			t.Errorf("stdout = %q, want nothing: no machine sent a line", res.stdout)
		}
		waitNoJournalctl(t, "everywhere.service")
	})
	t.Run("journal follow runs until interrupted", func(t *testing.T) {
		h1.runJournald(t)
		h2.runJournald(t)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var stdout, stderr syncBuffer
		done := make(chan int)
		go func() {
			done <- Main(ctx, []string{"journal", "--follow", "everywhere"}, Deps{Stdout: &stdout, Stderr: &stderr,
				Stdin: strings.NewReader(""), Getenv: func(k string) string {
					if k == "FLEETCTL_ENDPOINT" {
						return h1.endpoint
					}
					return ""
				}})
		}()
		// Both machines run journalctl --follow for the unit; then the user
		// interrupts.
		waitJournalctl(t, "everywhere.service", 2)
		cancel()
		if code := <-done; code != ExitOK {
			t.Errorf("exit status %d, stderr %q", code, stderr.String())
		}
		waitNoJournalctl(t, "everywhere.service")
	})
}

// wantRun checks the exit status and the exact stderr of a run.
func wantRun(t *testing.T, res result, code int, stderr string) {
	t.Helper()
	if res.code != code || res.stderr != stderr {
		t.Fatalf("exit status %d, stderr %q; want %d, %q (stdout %q)", res.code, res.stderr, code, stderr, res.stdout)
	}
}

// journalctls counts the journalctl --follow processes reading a unit.
func journalctls(t *testing.T, name string) int {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone
		}
		args := strings.Split(string(b), "\x00")
		if strings.HasSuffix(args[0], "journalctl") && slicesContain(args, "--user-unit="+name) && slicesContain(args, "--follow") {
			n++
		}
	}
	return n
}

func slicesContain(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// waitJournalctl waits until n journalctl --follow processes read the unit.
func waitJournalctl(t *testing.T, name string, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d journalctl following %s", n, name), func() bool { return journalctls(t, name) == n })
}

// waitNoJournalctl waits until no journalctl reads the unit any more.
func waitNoJournalctl(t *testing.T, name string) {
	t.Helper()
	waitFor(t, "no journalctl following "+name, func() bool { return journalctls(t, name) == 0 })
}

// waitFor polls cond until it holds, failing the test after hostTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hostTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
