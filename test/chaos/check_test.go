package chaos

import (
	"errors"
	"testing"
	"time"

	"github.com/fleet-next/fleet/test/cluster"
	"github.com/fleet-next/fleet/unit"
)

// checkEnv is a checker over three hosts fed with made-up observations.
type checkEnv struct {
	ck  *checker
	rec *recorder
	w   *workload
}

func newCheckEnv(t *testing.T) *checkEnv {
	t.Helper()
	c := &cluster.Cluster{}
	for i := range 3 {
		c.Hosts = append(c.Hosts, &cluster.Host{Index: i, MachineID: string(rune('a'+i)) + "0000000"})
	}
	rec := newRecorder(time.Now())
	w := newWorkload(t.TempDir(), rec, func() *cluster.Host { return nil })
	for _, s := range initialUnits() {
		w.units[s.name] = &tracked{spec: s, hash: hashOf(s.content), desired: unit.StateLaunched}
	}
	return &checkEnv{ck: newChecker(c, nil, w, rec, 4*time.Second), rec: rec, w: w}
}

// obs makes one round's observations: host -> unit -> main PID (0: not
// running).
func obs(pids ...map[string]uint32) []hostObs {
	now := time.Now()
	var out []hostObs
	for _, m := range pids {
		o := hostObs{ok: true, from: now, to: now, states: map[string]unit.SystemdState{}}
		for n, pid := range m {
			s := unit.SystemdState{LoadState: "loaded", ActiveState: "inactive", SubState: "dead"}
			if pid != 0 {
				s = unit.SystemdState{LoadState: "loaded", ActiveState: "active", SubState: "running", MainPID: pid}
			}
			o.states[n] = s
		}
		out = append(out, o)
	}
	return out
}

// registryOf is what the registry holds if it matches the workload.
func (e *checkEnv) registryOf() map[string]unit.UnitStatus {
	m := map[string]unit.UnitStatus{}
	for n, t := range e.w.units {
		m[n] = unit.UnitStatus{Unit: unit.Unit{Name: n, Hash: t.hash, Desired: t.desired, Global: t.global}}
	}
	return m
}

func (e *checkEnv) round(o []hostObs, reg map[string]unit.UnitStatus) {
	s := e.w.snapshot()
	e.ck.evaluate(o, s, s, reg, nil)
}

func (e *checkEnv) violations(inv string) []Violation {
	var out []Violation
	for _, v := range e.ck.stats().Violations {
		if v.Invariant == inv {
			out = append(out, v)
		}
	}
	return out
}

func TestCheckerSeesTwoCopiesOutsideThePartitionWindow(t *testing.T) {
	e := newCheckEnv(t)
	reg := e.registryOf()
	two := obs(map[string]uint32{"plain-0.service": 10}, map[string]uint32{"plain-0.service": 20}, nil)
	e.round(two, reg)
	e.round(two, reg)
	vs := e.violations(InvSingle)
	if len(vs) != 1 || vs[0].Rounds != 2 || vs[0].Key != "plain-0.service on hosts [0 1]" {
		t.Fatalf("violations %+v, want one seen in 2 rounds", vs)
	}
	e.round(obs(map[string]uint32{"plain-0.service": 10}, nil, nil), reg)
	e.round(two, reg)
	if vs := e.violations(InvSingle); len(vs) != 2 {
		t.Fatalf("a breach seen again after a clean round: %d violations, want 2", len(vs))
	}
}

// ago moves a fault's start d into the past.
func (e *checkEnv) ago(w *window, d time.Duration) {
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	w.start = time.Now().Add(-d)
}

func TestCheckerExcusesACopyOnACutOffHost(t *testing.T) {
	e := newCheckEnv(t)
	w := e.rec.begin(Partition, 1, "partition host 1")
	e.ago(w, 10*time.Second)
	e.round(obs(map[string]uint32{"plain-0.service": 10}, map[string]uint32{"plain-0.service": 20}, nil), e.registryOf())
	if vs := e.violations(InvSingle); len(vs) != 0 {
		t.Fatalf("copy on a host partitioned for 10s (agent_ttl 4s) reported: %+v", vs)
	}
	// A clean leave is no partition: a second copy then is a breach.
	e.rec.end(w)
	e.rec.mu.Lock()
	w.end = time.Now().Add(-time.Hour)
	e.rec.mu.Unlock()
	e.rec.begin(FleetdLeave, 1, "fleetd-leave host 1")
	e.round(obs(map[string]uint32{"plain-0.service": 10}, map[string]uint32{"plain-0.service": 20}, nil), e.registryOf())
	if vs := e.violations(InvSingle); len(vs) != 1 {
		t.Fatalf("second copy during a clean leave: %d violations, want 1", len(vs))
	}
}

func TestCheckerSeesASecondCopyBeforeTheLeaseCouldExpire(t *testing.T) {
	e := newCheckEnv(t)
	w := e.rec.begin(Partition, 1, "partition host 1")
	e.ago(w, time.Second)
	e.round(obs(map[string]uint32{"plain-0.service": 10}, map[string]uint32{"plain-0.service": 20}, nil), e.registryOf())
	if vs := e.violations(InvSingle); len(vs) != 1 {
		t.Fatalf("a second copy 1s into a partition (agent_ttl 4s): %d violations, want 1", len(vs))
	}
}

func TestCheckerSeesConflictingUnitsTogether(t *testing.T) {
	e := newCheckEnv(t)
	e.round(obs(map[string]uint32{"conf-0.service": 1, "conf-2.service": 2}, nil, nil), e.registryOf())
	if vs := e.violations(InvConflicts); len(vs) != 1 {
		t.Fatalf("%d conflict violations, want 1", len(vs))
	}
}

func TestCheckerSeesARestartOnlyWithoutAFault(t *testing.T) {
	e := newCheckEnv(t)
	reg := e.registryOf()
	e.round(obs(map[string]uint32{"plain-1.service": 10, "plain-2.service": 11}, nil, nil), reg)
	e.round(obs(map[string]uint32{"plain-1.service": 12, "plain-2.service": 0}, nil, nil), reg)
	vs := e.violations(InvRestart)
	if len(vs) != 2 {
		t.Fatalf("violations %+v, want a restart and a stop", vs)
	}
	e2 := newCheckEnv(t)
	e2.rec.begin(SystemdRestart, 0, "systemd-restart host 0")
	e2.round(obs(map[string]uint32{"plain-1.service": 10}, nil, nil), reg)
	e2.round(obs(map[string]uint32{"plain-1.service": 12}, nil, nil), reg)
	if vs := e2.violations(InvRestart); len(vs) != 0 {
		t.Fatalf("restart on a host with a fault reported: %+v", vs)
	}
	e3 := newCheckEnv(t)
	e3.round(obs(map[string]uint32{"plain-1.service": 10}, nil, nil), reg)
	from := e3.w.begin("plain-1.service")
	e3.w.finish(from, nil, func(*tracked) {}, "plain-1.service")
	e3.round(obs(map[string]uint32{"plain-1.service": 12}, nil, nil), reg)
	if vs := e3.violations(InvRestart); len(vs) != 0 {
		t.Fatalf("restart of a unit the workload acted on reported: %+v", vs)
	}
}

func TestCheckerSeesWhatTheRegistryLost(t *testing.T) {
	e := newCheckEnv(t)
	reg := e.registryOf()
	delete(reg, "plain-3.service")
	c := reg["conf-1.service"]
	c.Hash = hashOf("[Service]\nExecStart=/bin/true\n")
	reg["conf-1.service"] = c
	e.round(obs(nil, nil, nil), reg)
	vs := e.violations(InvRegistry)
	if len(vs) != 2 {
		t.Fatalf("violations %+v, want the lost unit and the changed one", vs)
	}
	// A registry that cannot be read is counted, not a breach.
	s := e.w.snapshot()
	e.ck.evaluate(obs(nil, nil, nil), s, s, nil, errors.New("frozen"))
	if st := e.ck.stats(); st.RegistryErrs != 1 || len(e.violations(InvRegistry)) != 2 {
		t.Fatalf("unreadable registry: %d errors, %d violations", st.RegistryErrs, len(e.violations(InvRegistry)))
	}
	// A unit whose operation ended between the two snapshots is skipped.
	e4 := newCheckEnv(t)
	before := e4.w.snapshot()
	from := e4.w.begin("plain-3.service")
	e4.w.finish(from, nil, func(*tracked) {}, "plain-3.service")
	e4.ck.evaluate(obs(nil, nil, nil), before, e4.w.snapshot(), reg, nil)
	for _, v := range e4.violations(InvRegistry) {
		if v.Key == "plain-3.service lost from the registry" {
			t.Fatalf("unit operated on during the read reported: %+v", v)
		}
	}
}
