package chaos

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/test/cluster"
	"github.com/fleet-next/fleet/unit"
)

// The invariants, as named in the report.
const (
	InvSingle    = "single-copy" // no non-global unit active on two hosts outside the partition window
	InvConflicts = "conflicts"   // no two conflicting units active on one host (same window)
	InvRestart   = "no-restart"  // no unit restarted or stopped on a host without a fault
	InvRegistry  = "registry"    // nothing submitted lost from (or changed in) the registry
	InvDestroyed = "destroyed"   // a destroyed unit stops running (outside the partition window)
	InvLiveness  = "liveness"    // every launched unit active where it belongs once the faults stop
	InvAgreement = "list-units"  // list-units agrees with every systemd once quiet
	InvOps       = "operations"  // every fleetctl operation succeeds through a healthy host
)

// Invariants lists them in report order.
var Invariants = []string{InvSingle, InvConflicts, InvRestart, InvRegistry, InvDestroyed, InvLiveness,
	InvAgreement, InvOps}

// Violation is one breach of an invariant, seen in one or more consecutive
// check rounds.
type Violation struct {
	Invariant   string
	Key         string // what it is about, e.g. "plain-1.service on hosts [1 3]"
	First, Last time.Time
	Rounds      int    // consecutive rounds it was seen in
	Detail      string // what the first sighting saw
}

// hostObs is what one host's systemd said in one round.
type hostObs struct {
	ok       bool
	err      error
	from, to time.Time
	states   map[string]unit.SystemdState
}

// running reports whether systemd runs the unit or is starting it. A unit
// being stopped (deactivating) is not counted: its copy is on its way out.
func running(s unit.SystemdState) bool {
	switch s.ActiveState {
	case "active", "activating", "reloading":
		return true
	}
	return false
}

// checker evaluates the invariants round after round.
type checker struct {
	c   *cluster.Cluster
	reg *registry.Etcd
	w   *workload
	rec *recorder
	// staleGrace is how long after a host's fault ends its stale copies
	// may still run (and its units may still be stopped or restarted).
	staleGrace time.Duration
	// touchGrace is how long after an operation on a unit its effects may
	// still show (a destroyed unit still running, a replaced one restarting).
	touchGrace time.Duration
	ttl        time.Duration // the cluster's agent_ttl
	// logf receives a line for each unit seen running twice within the
	// partition window, when it is first seen.
	logf func(format string, args ...any)

	mu         sync.Mutex // guards every field below
	prev       []hostObs
	rounds     int
	checks     map[string]int
	excused    map[string]int
	probeErrs  int
	regErrs    int
	open       map[string]*Violation // seen in the last round, by invariant+key
	violations []*Violation
	twice      map[string]bool // units running twice in the partition window last round, by key
	// restartFaults counts the restarts excused by a fault, by each kind
	// of fault the host had.
	restartFaults map[Kind]int
	// Of the copies excused by the partition window: how soon after its
	// host was cut off (or its fleetd went down) one was first seen, and
	// how long after the host came back one was last seen.
	firstSecond time.Duration // -1: none seen
	lastStale   time.Duration
	// lastStaleWhat says which copy was the latest stale one.
	lastStaleWhat string
}

func newChecker(c *cluster.Cluster, reg *registry.Etcd, w *workload, rec *recorder, ttl time.Duration) *checker {
	return &checker{c: c, reg: reg, w: w, rec: rec, ttl: ttl,
		staleGrace: 2*ttl + 5*time.Second, touchGrace: 20 * time.Second,
		prev: make([]hostObs, len(c.Hosts)), checks: map[string]int{}, excused: map[string]int{},
		open: map[string]*Violation{}, twice: map[string]bool{}, restartFaults: map[Kind]int{}, firstSecond: -1,
		logf: func(string, ...any) {}}
}

// loop runs check rounds about every interval until ctx ends.
func (ck *checker) loop(ctx context.Context, interval time.Duration) {
	for ctx.Err() == nil {
		start := time.Now()
		ck.round(ctx)
		sleep(ctx, interval-time.Since(start))
	}
}

// poll asks every host's systemd about names, in parallel.
func (ck *checker) poll(ctx context.Context, names []string) []hostObs {
	obs := make([]hostObs, len(ck.c.Hosts))
	var wg sync.WaitGroup
	for i, h := range ck.c.Hosts {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			o := hostObs{from: time.Now()}
			o.states, o.err = h.UnitsCtx(pctx, names...)
			o.to, o.ok = time.Now(), o.err == nil
			obs[i] = o
		})
	}
	wg.Wait()
	return obs
}

// readRegistry returns the registry's units by name.
func (ck *checker) readRegistry(ctx context.Context) (map[string]unit.UnitStatus, error) {
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	us, err := ck.reg.Units(rctx)
	if err != nil {
		return nil, err
	}
	m := make(map[string]unit.UnitStatus, len(us))
	for _, u := range us {
		m[u.Name] = u
	}
	return m, nil
}

// round makes one pass over every continuous invariant.
func (ck *checker) round(ctx context.Context) {
	before := ck.w.snapshot()
	obs := ck.poll(ctx, before.names())
	reg, regErr := ck.readRegistry(ctx)
	after := ck.w.snapshot()
	if ctx.Err() != nil {
		return
	}
	ck.evaluate(obs, before, after, reg, regErr)
}

// evaluate checks one round's observations: obs of every host's systemd
// and reg of the registry, read between the workload snapshots before and
// after.
func (ck *checker) evaluate(obs []hostObs, before, after snapshot, reg map[string]unit.UnitStatus, regErr error) {
	ck.mu.Lock()
	defer ck.mu.Unlock()
	ck.rounds++
	seen := map[string]bool{}
	for _, o := range obs {
		if !o.ok {
			ck.probeErrs++
		}
	}
	ck.checkSingle(obs, after, reg, seen)
	ck.checkRestarts(obs, after, seen)
	ck.checkDestroyed(obs, after, seen)
	if regErr != nil {
		ck.regErrs++
	} else {
		ck.checkRegistry(before, after, reg, seen)
	}
	for k := range ck.open {
		if !seen[k] {
			delete(ck.open, k)
		}
	}
	ck.prev = obs
}

// violate records a breach seen in this round.
func (ck *checker) violate(seen map[string]bool, inv, key string, detail func() string) {
	k := inv + "\x00" + key
	seen[k] = true
	now := time.Now()
	if v := ck.open[k]; v != nil {
		v.Last = now
		v.Rounds++
		return
	}
	v := &Violation{Invariant: inv, Key: key, First: now, Last: now, Rounds: 1, Detail: detail()}
	ck.open[k] = v
	ck.violations = append(ck.violations, v)
}

// cutOff lists the hosts among hosts that had a fault cutting them off
// during their poll of this round (or up to staleGrace before it) that
// began at least minAge before the poll ended.
func (ck *checker) cutOff(hosts []int, obs []hostObs, minAge time.Duration) []int {
	var out []int
	for _, h := range hosts {
		start, _, ok := ck.rec.cutSpan(h, obs[h].from, obs[h].to, ck.staleGrace)
		if ok && obs[h].to.Sub(start) >= minAge {
			out = append(out, h)
		}
	}
	return out
}

// checkSingle: a non-global unit runs on at most one host that was not cut
// off for at least agent_ttl; conflicting units never share a host that
// was not cut off.
func (ck *checker) checkSingle(obs []hostObs, snap snapshot, reg map[string]unit.UnitStatus, seen map[string]bool) {
	twice := map[string]bool{}
	defer func() { ck.twice = twice }()
	for _, name := range snap.names() {
		t := snap.units[name]
		if t.global {
			continue
		}
		var hosts []int
		for h, o := range obs {
			if o.ok && running(o.states[name]) {
				hosts = append(hosts, h)
			}
		}
		ck.checks[InvSingle]++
		if len(hosts) < 2 {
			continue
		}
		// The engine moves a unit only once its host's lease has expired:
		// a copy on a host cut off for less than agent_ttl is no stale one.
		cut := ck.cutOff(hosts, obs, ck.ttl)
		if len(hosts)-len(cut) < 2 {
			ck.excused[InvSingle+": second copy on a host in the partition window"]++
			ck.measureWindow(name, cut, obs)
			key := fmt.Sprintf("%s on hosts %v", name, hosts)
			twice[key] = true
			if !ck.twice[key] {
				ck.logf("%s runs on hosts %v, within the partition window of hosts %v: %s", name, hosts, cut,
					ck.describe(name, hosts, obs, reg))
			}
			continue
		}
		ck.violate(seen, InvSingle, fmt.Sprintf("%s on hosts %v", name, hosts), func() string {
			return ck.describe(name, hosts, obs, reg)
		})
	}
	for h, o := range obs {
		if !o.ok {
			continue
		}
		ck.checks[InvConflicts]++
		var confs []string
		for name, t := range snap.units {
			if t.conflicts && running(o.states[name]) {
				confs = append(confs, name)
			}
		}
		if len(confs) < 2 {
			continue
		}
		if len(ck.cutOff([]int{h}, obs, 0)) > 0 {
			ck.excused[InvConflicts+": on a host in the partition window"]++
			continue
		}
		slices.Sort(confs)
		ck.violate(seen, InvConflicts, fmt.Sprintf("%v on host %d", confs, h), func() string {
			return ck.describe(confs[0], []int{h}, obs, reg)
		})
	}
}

// measureWindow records how far into, or past, the partition window a
// unit was seen running twice. Of the hosts cut off, the one cut off first
// holds the stale copy.
func (ck *checker) measureWindow(name string, cut []int, obs []hostObs) {
	var start, end, at time.Time
	host, found := 0, false
	for _, h := range cut {
		s, e, ok := ck.rec.cutSpan(h, obs[h].from, obs[h].to, ck.staleGrace)
		if ok && (!found || s.Before(start)) {
			start, end, at, host, found = s, e, obs[h].to, h, true
		}
	}
	if !found {
		return
	}
	if end.IsZero() || at.Before(end) {
		if d := at.Sub(start); ck.firstSecond < 0 || d < ck.firstSecond {
			ck.firstSecond = d
		}
	} else if at.Sub(end) > ck.lastStale {
		ck.lastStale = at.Sub(end)
		ck.lastStaleWhat = fmt.Sprintf("%s on host %d at %s; faults around: %s", name, host, ck.rec.rel(at),
			ck.rec.around([]int{host}, start, at, 0))
	}
}

// checkRestarts: a unit active on a host in the previous round is active
// with the same main PID now, unless the host had a fault or the workload
// acted on the unit in between.
func (ck *checker) checkRestarts(obs []hostObs, snap snapshot, seen map[string]bool) {
	for h, o := range obs {
		p := ck.prev[h]
		if !o.ok || !p.ok {
			continue
		}
		for name, ps := range p.states {
			if ps.ActiveState != "active" {
				continue
			}
			ck.checks[InvRestart]++
			cs := o.states[name]
			if cs.ActiveState == "active" && cs.MainPID == ps.MainPID {
				continue
			}
			if kinds := ck.rec.hostFaults(h, p.from, o.to, ck.staleGrace, func(Kind) bool { return true }); len(kinds) > 0 {
				ck.excused[InvRestart+": on a host with a fault"]++
				for _, k := range kinds {
					ck.restartFaults[k]++
				}
				continue
			}
			if t, ok := snap.units[name]; ok && t.touched(p.from, o.to, ck.touchGrace) {
				ck.excused[InvRestart+": unit acted on by the workload"]++
				continue
			}
			what := "restarted"
			if cs.ActiveState != "active" {
				what = "stopped"
			}
			ck.violate(seen, InvRestart, fmt.Sprintf("%s %s on host %d", name, what, h), func() string {
				return fmt.Sprintf("host %d: %s was %s/%s pid %d at %s, is %s/%s pid %d at %s; faults around: %s",
					h, name, ps.ActiveState, ps.SubState, ps.MainPID, ck.rec.rel(p.from),
					cs.ActiveState, cs.SubState, cs.MainPID, ck.rec.rel(o.from),
					ck.rec.around([]int{h}, p.from, o.to, 30*time.Second))
			})
		}
	}
}

// checkDestroyed: a destroyed unit runs nowhere outside the partition
// window once touchGrace has passed since it was destroyed.
func (ck *checker) checkDestroyed(obs []hostObs, snap snapshot, seen map[string]bool) {
	for name, t := range snap.units {
		if !t.destroyed || t.uncertain || t.busy > 0 {
			continue
		}
		for h, o := range obs {
			if !o.ok || o.from.Before(t.destroyedAt.Add(ck.touchGrace)) {
				continue
			}
			ck.checks[InvDestroyed]++
			if !running(o.states[name]) {
				continue
			}
			if len(ck.cutOff([]int{h}, obs, 0)) > 0 {
				ck.excused[InvDestroyed+": on a host in the partition window"]++
				continue
			}
			ck.violate(seen, InvDestroyed, fmt.Sprintf("%s on host %d", name, h), func() string {
				s := o.states[name]
				return fmt.Sprintf("destroyed at %s, host %d still runs it (%s/%s pid %d) at %s; faults around: %s",
					ck.rec.rel(t.destroyedAt), h, s.ActiveState, s.SubState, s.MainPID, ck.rec.rel(o.from),
					ck.rec.around([]int{h}, t.destroyedAt, o.to, 0))
			})
		}
	}
}

// checkRegistry: every unit the workload stored is there as stored, every
// one it destroyed stays gone. Units with an operation in progress or
// ended between the two snapshots are skipped.
func (ck *checker) checkRegistry(before, after snapshot, reg map[string]unit.UnitStatus, seen map[string]bool) {
	for name, ta := range after.units {
		tb, ok := before.units[name]
		if !ok || tb.gen != ta.gen || ta.busy > 0 || ta.uncertain || ta.hash.IsZero() && !ta.destroyed {
			continue
		}
		ck.checks[InvRegistry]++
		got, found := reg[name]
		var problem string
		switch {
		case ta.destroyed && found:
			problem = "destroyed, but back in the registry"
		case ta.destroyed:
		case !found:
			problem = "lost from the registry"
		case got.Hash != ta.hash:
			problem = fmt.Sprintf("holds hash %s, submitted %s", got.Hash.Short(), ta.hash.Short())
		case got.Desired != ta.desired:
			problem = fmt.Sprintf("desired state %s, set %s", got.Desired, ta.desired)
		}
		if problem == "" {
			continue
		}
		ck.violate(seen, InvRegistry, name+" "+problem, func() string {
			return fmt.Sprintf("%s %s at %s; faults around: %s", name, problem, ck.rec.rel(time.Now()),
				ck.rec.around(nil, time.Now(), time.Now(), 30*time.Second))
		})
	}
}

// describe says where a unit runs, what the registry holds for it and
// which faults surround the round.
func (ck *checker) describe(name string, hosts []int, obs []hostObs, reg map[string]unit.UnitStatus) string {
	var b strings.Builder
	from, to := time.Now(), time.Time{}
	for h, o := range obs {
		if !o.ok {
			fmt.Fprintf(&b, "host %d: (no answer: %v); ", h, o.err)
			continue
		}
		if o.from.Before(from) {
			from = o.from
		}
		if o.to.After(to) {
			to = o.to
		}
		s := o.states[name]
		if running(s) || (s.ActiveState != "" && s.LoadState != "not-found") {
			fmt.Fprintf(&b, "host %d: %s %s/%s pid %d; ", h, s.LoadState, s.ActiveState, s.SubState, s.MainPID)
		}
	}
	if u, ok := reg[name]; ok {
		fmt.Fprintf(&b, "registry: desired %s, target %s, reason %q; ", u.Desired, ck.hostOf(u.Target), u.Reason)
	} else if reg != nil {
		b.WriteString("registry: no such unit; ")
	} else {
		b.WriteString("registry: unreadable; ")
	}
	fmt.Fprintf(&b, "seen at %s; faults around: %s", ck.rec.rel(from), ck.rec.around(hosts, from, to, 30*time.Second))
	return b.String()
}

// hostOf names the host of a machine ID.
func (ck *checker) hostOf(machineID string) string {
	if machineID == "" {
		return "none"
	}
	for _, h := range ck.c.Hosts {
		if h.MachineID == machineID {
			return fmt.Sprintf("host %d", h.Index)
		}
	}
	return machineID
}

// addFinal records a violation found by a final check.
func (ck *checker) addFinal(inv, key, detail string) {
	ck.mu.Lock()
	defer ck.mu.Unlock()
	now := time.Now()
	ck.violations = append(ck.violations, &Violation{Invariant: inv, Key: key, First: now, Last: now, Rounds: 1,
		Detail: detail})
}

// count adds n checks of an invariant made outside the rounds.
func (ck *checker) count(inv string, n int) {
	ck.mu.Lock()
	defer ck.mu.Unlock()
	ck.checks[inv] += n
}

// Stats are the checker's figures.
type Stats struct {
	Rounds       int
	Checks       map[string]int
	Excused      map[string]int
	ProbeErrors  int // host polls that got no answer (systemd restarting)
	RegistryErrs int // rounds the registry could not be read in (etcd frozen)
	Violations   []Violation
	// FirstSecond is how soon after a host was cut off (or its fleetd
	// went down) a unit of it was first seen running twice (-1: never);
	// LastStale how long after the host came back a stale copy was last
	// seen.
	FirstSecond, LastStale time.Duration
	LastStaleWhat          string
	// RestartFaults counts the restarts and stops excused by a fault, by
	// each kind of fault their host had.
	RestartFaults map[Kind]int
}

func (ck *checker) stats() Stats {
	ck.mu.Lock()
	defer ck.mu.Unlock()
	s := Stats{Rounds: ck.rounds, Checks: map[string]int{}, Excused: map[string]int{}, ProbeErrors: ck.probeErrs,
		RegistryErrs: ck.regErrs}
	for k, v := range ck.checks {
		s.Checks[k] = v
	}
	for k, v := range ck.excused {
		s.Excused[k] = v
	}
	s.FirstSecond, s.LastStale, s.LastStaleWhat = ck.firstSecond, ck.lastStale, ck.lastStaleWhat
	s.RestartFaults = copyCounts(ck.restartFaults)
	for _, v := range ck.violations {
		s.Violations = append(s.Violations, *v)
	}
	sort.SliceStable(s.Violations, func(i, j int) bool { return s.Violations[i].First.Before(s.Violations[j].First) })
	return s
}
