package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fleet-next/fleet/test/cluster"
	"github.com/fleet-next/fleet/unit"
)

// Config shapes a run.
type Config struct {
	Seed     uint64
	Duration time.Duration // of the fault phase
	Hosts    int           // fleetd hosts; default 5
	Members  int           // etcd members; default 3
	AgentTTL time.Duration // default 4s
	MeanGap  time.Duration // mean time between fault starts; default 1.7s
	ChurnGap time.Duration // mean time between churn steps; default 10s
	// QuietBound bounds how long after the last fault (and a bad unit
	// started then) every launched unit must run where it belongs; default
	// 60s.
	QuietBound time.Duration
	// Logf receives progress lines (the seed first).
	Logf func(format string, args ...any)
	// LogDir, if set, receives every fleetd's log at the end.
	LogDir string
}

func (cfg *Config) defaults() {
	if cfg.Hosts == 0 {
		cfg.Hosts = 5
	}
	if cfg.Members == 0 {
		cfg.Members = 3
	}
	if cfg.AgentTTL == 0 {
		cfg.AgentTTL = 4 * time.Second
	}
	if cfg.MeanGap == 0 {
		cfg.MeanGap = 1700 * time.Millisecond
	}
	if cfg.ChurnGap == 0 {
		cfg.ChurnGap = 10 * time.Second
	}
	if cfg.QuietBound == 0 {
		cfg.QuietBound = 60 * time.Second
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
}

// planConfig is the schedule's shape for a run.
func (cfg Config) planConfig() PlanConfig {
	return PlanConfig{Seed: cfg.Seed, Duration: cfg.Duration, Hosts: cfg.Hosts, Members: cfg.Members,
		AgentTTL: cfg.AgentTTL, MeanGap: cfg.MeanGap, ChurnGap: cfg.ChurnGap, MaxImpaired: 2,
		Instances: initialInstances(), Template: instancePattern}
}

// Result is what a run saw.
type Result struct {
	Config
	Plan       []Event
	FaultPhase time.Duration // as it ran, until the last fault ended
	Total      time.Duration // the whole run, cluster start-up excluded
	Injected   map[Kind]int
	Skipped    map[Kind]int
	Churn      int
	// Settled is how long after the last fault ended every launched unit
	// ran where it belongs (-1: not within QuietBound).
	Settled  time.Duration
	Problems []string // faults the harness failed to inject or undo
	Stats
	t0 time.Time // offsets in the report are from here
}

// Faults is the number of faults injected.
func (r *Result) Faults() int {
	n := 0
	for _, k := range Kinds {
		n += r.Injected[k]
	}
	return n
}

// Run starts a cluster, drives the workload and the schedule drawn from
// cfg.Seed through it while checking the invariants, lets it settle and
// makes the final checks. Setup failures end the test through t.
func Run(t cluster.T, cfg Config) *Result {
	cfg.defaults()
	logf := cfg.Logf
	logf("chaos: seed %d, fault phase %s (replay: CHAOS_SEED=%d CHAOS_DURATION=%s)", cfg.Seed, cfg.Duration,
		cfg.Seed, cfg.Duration)
	plan := Plan(cfg.planConfig())
	byKind := map[Kind]int{}
	for _, ev := range plan {
		byKind[ev.Kind]++
	}
	logf("chaos: %d events planned: %s", len(plan), formatCounts(byKind))

	c := cluster.New(t, cluster.Options{Hosts: cfg.Hosts, EtcdMembers: cfg.Members, AgentTTL: cfg.AgentTTL,
		Metadata: metadata, LogTail: 64 << 10, LogDir: cfg.LogDir})
	reg := c.Registry()
	t0 := time.Now()
	rec := newRecorder(t0)
	logf("chaos: times below are from %s (fleetd logs use UTC)", t0.UTC().Format("15:04:05.000"))
	var pickMu sync.Mutex
	next := 0
	pick := func() *cluster.Host {
		pickMu.Lock()
		defer pickMu.Unlock()
		for range c.Hosts {
			h := c.Hosts[next%len(c.Hosts)]
			next++
			if h.Running() && !h.Proxy.IsCut() && len(rec.hostFaults(h.Index, time.Now(), time.Now(), 0,
				func(Kind) bool { return true })) == 0 {
				return h
			}
		}
		return nil
	}
	w := newWorkload(t.TempDir(), rec, pick)
	ck := newChecker(c, reg, w, rec, cfg.AgentTTL)
	ck.logf = func(f string, a ...any) { logf("%s "+f, append([]any{rec.rel(time.Now())}, a...)...) }
	in := &injector{c: c, reg: reg, rec: rec, w: w, log: func(f string, a ...any) {
		logf("%s "+f, append([]any{rec.rel(time.Now())}, a...)...)
	}}

	ctx := context.Background()
	if err := w.submitTemplate(ctx); err != nil {
		t.Fatalf("chaos setup: %v", err)
	}
	if err := w.start(ctx, false, initialUnits()...); err != nil {
		t.Fatalf("chaos setup: %v", err)
	}
	if err := w.startInstances(ctx, initialInstances()...); err != nil {
		t.Fatalf("chaos setup: %v", err)
	}
	if d, problems := settle(ctx, ck, 2*time.Minute); d < 0 {
		t.Fatalf("chaos setup: the workload did not come up on a quiet cluster within 2m:\n%s",
			strings.Join(problems, "\n"))
	} else {
		logf("chaos: workload up in %s; faults begin", d.Round(10*time.Millisecond))
	}

	bg, stopBG := context.WithCancel(ctx)
	var bgWG sync.WaitGroup
	bgWG.Go(func() { ck.loop(bg, time.Second) })
	bgWG.Go(func() { in.supervise(bg) })
	defer func() { stopBG(); bgWG.Wait() }()

	// The fault phase: every event starts at its offset.
	start := time.Now()
	var faults sync.WaitGroup
	for _, ev := range plan {
		sleep(ctx, time.Until(start.Add(ev.At)))
		in.log("%s", ev)
		faults.Go(func() { in.run(ctx, ev) })
	}
	faults.Wait()
	in.healAll(ctx)
	faultPhase := time.Since(start)
	logf("chaos: faults over after %s; settling", faultPhase.Round(10*time.Millisecond))

	// Quiet: a bad unit and its pal, then everything must run where it
	// belongs and list-units must agree with systemd.
	res := &Result{Config: cfg, Plan: plan, FaultPhase: faultPhase, t0: t0}
	const lastBad = "bad-final.service"
	bad, pal := badPair(lastBad)
	if err := w.start(ctx, false, bad, pal); err != nil {
		logf("chaos: %v", err)
	}
	d, problems := settle(ctx, ck, cfg.QuietBound)
	res.Settled = -1
	for _, p := range problems {
		ck.addFinal(InvLiveness, firstLine(p), p)
	}
	if d >= 0 {
		res.Settled = time.Since(rec.lastEnd())
		logf("chaos: every launched unit runs where it belongs %s after the last fault",
			res.Settled.Round(10*time.Millisecond))
	}
	for _, p := range agree(ctx, ck, w, 30*time.Second) {
		ck.addFinal(InvAgreement, firstLine(p), p)
	}
	if err := in.fix(ctx, FixReplace, lastBad, pal.name); err != nil {
		logf("chaos: %v", err)
	}
	if d, problems := settle(ctx, ck, cfg.QuietBound); d < 0 {
		for _, p := range problems {
			ck.addFinal(InvLiveness, "after fixing "+lastBad+": "+firstLine(p), p)
		}
	}
	// A few more rounds of the continuous checks on the quiet cluster.
	sleep(ctx, 3*time.Second)
	stopBG()
	bgWG.Wait()

	failed, ops := w.failures()
	for _, f := range failed {
		ck.addFinal(InvOps, firstLine(f), f)
	}
	ck.count(InvOps, ops)
	res.Total = time.Since(t0)
	rec.mu.Lock()
	res.Injected, res.Skipped = copyCounts(rec.injected), copyCounts(rec.skipped)
	res.Problems = slices.Clone(rec.problems)
	rec.mu.Unlock()
	res.Churn = byKind[Churn]
	res.Stats = ck.stats()
	return res
}

func copyCounts(m map[Kind]int) map[Kind]int {
	out := make(map[Kind]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// metadata gives hosts 0 and 1 role=edge (global-edge runs there) and the
// others role=core.
func metadata(i int) string {
	role := "core"
	if i < 2 {
		role = "edge"
	}
	return fmt.Sprintf("host=%d,role=%s", i, role)
}

// healAll undoes anything a fault left behind, taking each resource as a
// fault would (it should have undone it itself; anything found here is
// recorded as a harness problem).
func (in *injector) healAll(ctx context.Context) {
	c, rec := in.c, in.rec
	const wait = 2 * time.Minute
	if release, ok := in.acquire(ctx, "etcd", wait); ok {
		for _, m := range c.Members {
			if !m.Running() {
				rec.problem("etcd member %s was left down", m.Name)
				if err := m.Start(); err != nil {
					rec.problem("start etcd member %s: %v", m.Name, err)
				}
			}
		}
		if err := c.FreezeEtcdErr(false); err != nil {
			rec.problem("thaw etcd: %v", err)
		}
		release()
	} else {
		rec.problem("etcd still busy %s after the last fault", wait)
	}
	for _, h := range c.Hosts {
		if release, ok := in.acquire(ctx, resource(Partition, h.Index), wait); ok {
			if h.Proxy.IsCut() {
				rec.problem("host %d was left cut off", h.Index)
				h.Proxy.Heal()
			}
			release()
		}
		if release, ok := in.acquire(ctx, resource(FleetdKill, h.Index), wait); ok {
			if !h.Running() {
				rec.problem("host %d's fleetd was left down", h.Index)
				if err := h.TryStart(); err != nil {
					rec.problem("start host %d: %v", h.Index, err)
				}
			}
			release()
		} else {
			rec.problem("host %d's fleetd still busy %s after the last fault", h.Index, wait)
		}
	}
}

// settle waits up to bound until every launched unit runs where it
// belongs: a non-global one on exactly one host (with its MachineOf peer,
// apart from units it conflicts with), a global one on every host whose
// metadata it matches, a destroyed one nowhere. It returns how long that
// took, or -1 and what was still wrong.
func settle(ctx context.Context, ck *checker, bound time.Duration) (time.Duration, []string) {
	start := time.Now()
	next := 10 * time.Second
	for {
		snap := ck.w.snapshot()
		obs := ck.poll(ctx, snap.names())
		reg, regErr := ck.readRegistry(ctx)
		problems, checked := placementProblems(ck, snap, obs, reg)
		if regErr != nil {
			problems = append(problems, fmt.Sprintf("registry unreadable: %v", regErr))
		}
		if len(problems) == 0 {
			ck.count(InvLiveness, checked)
			return time.Since(start), nil
		}
		if time.Since(start) > bound || ctx.Err() != nil {
			ck.count(InvLiveness, checked)
			return -1, problems
		}
		if time.Since(start) >= next {
			next += 10 * time.Second
			ck.logf("still settling after %s: %d units not where they belong, such as %s",
				time.Since(start).Round(time.Second), len(problems), problems[0])
		}
		sleep(ctx, 500*time.Millisecond)
	}
}

// placementProblems lists what is not where it belongs in one round.
func placementProblems(ck *checker, snap snapshot, obs []hostObs, reg map[string]unit.UnitStatus) ([]string, int) {
	var problems []string
	for h, o := range obs {
		if !o.ok {
			problems = append(problems, fmt.Sprintf("host %d: systemd does not answer: %v", h, o.err))
		}
	}
	if len(problems) > 0 {
		return problems, 0
	}
	checked := 0
	where := map[string][]int{}
	for _, name := range snap.names() {
		for h, o := range obs {
			if o.states[name].ActiveState == "active" {
				where[name] = append(where[name], h)
			}
		}
	}
	for _, name := range snap.names() {
		t := snap.units[name]
		hosts := where[name]
		checked++
		switch {
		case t.destroyed && !t.uncertain:
			if len(hosts) > 0 {
				problems = append(problems, fmt.Sprintf("%s: destroyed, still active on hosts %v: %s", name, hosts,
					ck.describe(name, hosts, obs, reg)))
			}
		case !t.shouldRun():
		case t.global:
			var want []int
			for h := range obs {
				if t.metadata == "" || strings.Contains(metadata(h), t.metadata) {
					want = append(want, h)
				}
			}
			if !slices.Equal(hosts, want) {
				problems = append(problems, fmt.Sprintf("%s: global, active on hosts %v, want %v: %s", name, hosts,
					want, ck.describe(name, hosts, obs, reg)))
			}
		case len(hosts) != 1:
			problems = append(problems, fmt.Sprintf("%s: launched, active on %d hosts %v: %s", name, len(hosts),
				hosts, ck.describe(name, hosts, obs, reg)))
		case t.machineOf != "" && len(where[t.machineOf]) == 1 && where[t.machineOf][0] != hosts[0]:
			problems = append(problems, fmt.Sprintf("%s: on host %d, its MachineOf %s on host %d: %s", name, hosts[0],
				t.machineOf, where[t.machineOf][0], ck.describe(name, hosts, obs, reg)))
		}
	}
	for h, o := range obs {
		var confs []string
		for name, t := range snap.units {
			if t.conflicts && o.states[name].ActiveState == "active" {
				confs = append(confs, name)
			}
		}
		if len(confs) > 1 {
			slices.Sort(confs)
			problems = append(problems, fmt.Sprintf("host %d: conflicting units %v active together", h, confs))
		}
	}
	return problems, checked
}

// listedUnit is one element of `fleetctl list-units -o json`.
type listedUnit struct {
	Name      string `json:"name"`
	MachineID string `json:"machineID"`
	Load      string `json:"systemdLoadState"`
	Active    string `json:"systemdActiveState"`
	Sub       string `json:"systemdSubState"`
}

// agree waits up to bound until fleetctl list-units says what every
// systemd says: each row matches the state of the unit on its machine, and
// every unit a systemd runs has a row. It returns the differences left.
func agree(ctx context.Context, ck *checker, w *workload, bound time.Duration) []string {
	start := time.Now()
	for {
		diffs, checked := disagreements(ctx, ck, w)
		if len(diffs) == 0 || time.Since(start) > bound || ctx.Err() != nil {
			ck.count(InvAgreement, checked)
			return diffs
		}
		sleep(ctx, time.Second)
	}
}

func disagreements(ctx context.Context, ck *checker, w *workload) ([]string, int) {
	h := w.pick()
	if h == nil {
		return []string{"no healthy host to run list-units on"}, 0
	}
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	res, err := h.FleetctlCtx(cctx, "list-units", "-o", "json")
	cancel()
	if err != nil || res.Exit != 0 {
		return []string{fmt.Sprintf("list-units through host %d: %v exit %d: %s", h.Index, err, res.Exit, res.Stderr)}, 0
	}
	var listed []listedUnit
	if err := json.Unmarshal([]byte(res.Stdout), &listed); err != nil {
		return []string{fmt.Sprintf("list-units -o json: %v: %q", err, res.Stdout)}, 0
	}
	snap := w.snapshot()
	names := snap.names()
	obs := ck.poll(ctx, names)
	byMachine := map[string]int{}
	for _, hh := range ck.c.Hosts {
		byMachine[hh.MachineID] = hh.Index
	}
	var diffs []string
	checked := 0
	rows := map[string]bool{}
	for _, l := range listed {
		checked++
		hi, ok := byMachine[l.MachineID]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("%s: listed on unknown machine %s", l.Name, l.MachineID))
			continue
		}
		rows[fmt.Sprintf("%s@%d", l.Name, hi)] = true
		o := obs[hi]
		if !o.ok {
			diffs = append(diffs, fmt.Sprintf("host %d: systemd does not answer: %v", hi, o.err))
			continue
		}
		s, asked := o.states[l.Name]
		if !asked {
			continue // not the workload's
		}
		if s.LoadState != l.Load || s.ActiveState != l.Active || s.SubState != l.Sub {
			diffs = append(diffs, fmt.Sprintf("%s on host %d: list-units says %s/%s/%s, systemd %s/%s/%s", l.Name, hi,
				l.Load, l.Active, l.Sub, s.LoadState, s.ActiveState, s.SubState))
		}
	}
	for hi, o := range obs {
		if !o.ok {
			continue
		}
		for _, name := range names {
			checked++
			if running(o.states[name]) && !rows[fmt.Sprintf("%s@%d", name, hi)] {
				s := o.states[name]
				diffs = append(diffs, fmt.Sprintf("%s on host %d: systemd runs it (%s/%s), list-units has no row",
					name, hi, s.ActiveState, s.SubState))
			}
		}
	}
	sort.Strings(diffs)
	return diffs, checked
}

func firstLine(s string) string {
	if i := strings.Index(s, ": "); i > 0 && i < 80 {
		return s[:i]
	}
	if len(s) > 80 {
		return s[:80]
	}
	return s
}

// formatCounts prints counts by kind in report order.
func formatCounts(m map[Kind]int) string {
	var parts []string
	for _, k := range append(slices.Clone(Kinds), FleetdExit, Churn) {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// Report is the run's summary: seed, durations, faults by kind, checks and
// violations with their detail.
func (r *Result) Report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos report\n")
	fmt.Fprintf(&b, "  seed            %d  (replay: CHAOS_SEED=%d CHAOS_DURATION=%s make chaos)\n", r.Seed, r.Seed, r.Duration)
	fmt.Fprintf(&b, "  cluster         %d hosts, %d etcd members, agent_ttl %s\n", r.Hosts, r.Members, r.AgentTTL)
	fmt.Fprintf(&b, "  fault phase     %s planned, %s as run; whole run %s\n", r.Duration,
		r.FaultPhase.Round(100*time.Millisecond), r.Total.Round(100*time.Millisecond))
	injected := copyCounts(r.Injected)
	delete(injected, FleetdExit)
	fmt.Fprintf(&b, "  faults injected %d: %s\n", r.Faults(), formatCounts(injected))
	if len(r.Skipped) > 0 {
		fmt.Fprintf(&b, "  faults skipped  %s (target busy or unknown)\n", formatCounts(r.Skipped))
	}
	fmt.Fprintf(&b, "  churn steps     %d\n", r.Churn)
	fmt.Fprintf(&b, "  fleetd exits    %d on its own, each started again after %s as Restart= would\n",
		r.Injected[FleetdExit], restartDelay)
	if r.Settled >= 0 {
		fmt.Fprintf(&b, "  settled         %s after the faults stopped\n", r.Settled.Round(10*time.Millisecond))
	} else {
		fmt.Fprintf(&b, "  settled         not within %s\n", r.QuietBound)
	}
	fmt.Fprintf(&b, "  check rounds    %d (host polls unanswered: %d, rounds without the registry: %d)\n",
		r.Rounds, r.ProbeErrors, r.RegistryErrs)
	byInv := map[string]int{}
	for _, v := range r.Violations {
		byInv[v.Invariant]++
	}
	total := 0
	for _, inv := range Invariants {
		fmt.Fprintf(&b, "  %-15s %8d checks, %d violations\n", inv, r.Checks[inv], byInv[inv])
		total += r.Checks[inv]
	}
	fmt.Fprintf(&b, "  checks total    %d\n", total)
	if r.FirstSecond >= 0 {
		fmt.Fprintf(&b, "  partition window: units ran twice from %s after their host was cut off (or its fleetd went down);\n"+
			"                  a stale copy was seen up to %s after the host came back\n",
			r.FirstSecond.Round(100*time.Millisecond), r.LastStale.Round(100*time.Millisecond))
		if r.LastStaleWhat != "" {
			fmt.Fprintf(&b, "                  (that one: %s)\n", r.LastStaleWhat)
		}
	}
	if len(r.Excused) > 0 {
		var ks []string
		for k := range r.Excused {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		b.WriteString("  excused (allowed by a fault):\n")
		for _, k := range ks {
			fmt.Fprintf(&b, "    %6d  %s\n", r.Excused[k], k)
			if k == InvRestart+": on a host with a fault" {
				fmt.Fprintf(&b, "            (by the host's faults: %s)\n", formatCounts(r.RestartFaults))
			}
		}
	}
	fmt.Fprintf(&b, "  violations      %d\n", len(r.Violations))
	for i, v := range r.Violations {
		fmt.Fprintf(&b, "  %d. [%s] %s (first %s, last %s, %d rounds)\n     %s\n", i+1, v.Invariant, v.Key,
			v.First.Sub(r.t0).Round(10*time.Millisecond), v.Last.Sub(r.t0).Round(10*time.Millisecond),
			v.Rounds, v.Detail)
	}
	fmt.Fprintf(&b, "  harness problems %d\n", len(r.Problems))
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "    %s\n", p)
	}
	return b.String()
}
