package bench

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// suiteResults is everything one suite run measured.
type suiteResults struct {
	Machine  machineInfo
	Started  time.Time
	Took     time.Duration
	Control  []controlResult
	Ceiling  *ceilingResult
	Systemd  *systemdResult
	CLI      *cliResult
	Failures []string // scenarios that failed, with their error
}

// machineInfo describes where the suite ran.
type machineInfo struct {
	CPU, Kernel, OS, Systemd, Go, Commit string
	Cores                                int
	Memory                               int64
}

func describeMachine() machineInfo {
	mi := machineInfo{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				mi.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			var kb int64
			if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kb); err == nil {
				mi.Memory = kb << 10
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		mi.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "PRETTY_NAME="); ok {
				mi.OS = strings.Trim(v, `"`)
			}
		}
	}
	if out, err := exec.Command("/usr/lib/systemd/systemd", "--version").Output(); err == nil {
		mi.Systemd, _, _ = strings.Cut(string(out), "\n")
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if modified == "true" {
			rev += " (with local changes)"
		}
		mi.Commit = rev
	}
	if mi.Commit == "" {
		// Built without version control stamping: ask git, if this runs
		// in the checkout.
		if out, err := exec.Command("git", "describe", "--always", "--dirty", "--abbrev=12").Output(); err == nil {
			mi.Commit = strings.TrimSpace(string(out))
		}
	}
	return mi
}

// fleet's cost model (fleet-reference §6.3): requests per second of one
// idle, non-leader fleetd with L launched units and S unit states.
func fleetIdleCost(launched, states float64) float64 { return 2.07 + launched/24 + states/12 }

// Targets of the benchmark issue.
const (
	targetPlacements   = 20000.0
	targetP99          = time.Second
	targetFloorRatio   = 2.0
	targetListUnits    = time.Second
	targetAgentCPU     = 0.01
	targetAgentRSS     = 50 << 20
	targetIdlePerAgent = 1.0 // requests per agent per agent_ttl/3
)

// writeMarkdown writes the results as markdown tables.
func (r suiteResults) writeMarkdown(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	m := r.Machine
	p("## Machine and run")
	p("")
	p("| | |")
	p("|---|---|")
	p("| CPU | %s, %d cores |", m.CPU, m.Cores)
	p("| memory | %s |", mb(m.Memory))
	p("| OS | %s, kernel %s |", m.OS, m.Kernel)
	p("| systemd | %s |", m.Systemd)
	p("| Go | %s |", m.Go)
	p("| commit | %s |", m.Commit)
	p("| started | %s |", r.Started.UTC().Format(time.RFC3339))
	p("| took | %s |", r.Took.Round(time.Second))
	p("")
	r.writeTargets(p)
	for _, c := range r.Control {
		writeControl(p, c)
	}
	if c := r.Ceiling; c != nil {
		p("## etcd ceiling (one member, same settings as the control-plane runs)")
		p("")
		p("| write pattern | puts/s |")
		p("|---|---|")
		p("| single-put requests, one at a time | %s |", num(c.SinglePutsSerial))
		p("| single-put requests, %d goroutines | %s |", c.Concurrency, num(c.SinglePutsConcurrent))
		p("| transactions of %d puts, %d goroutines | %s (%s txn/s) |", ceilingBatch, c.Concurrency, num(c.BatchedPuts), num(c.BatchedTxns))
		p("")
	}
	if s := r.Systemd; s != nil {
		writeSystemd(p, *s)
	}
	if c := r.CLI; c != nil {
		writeCLI(p, *c)
	}
	if len(r.Failures) > 0 {
		p("## Failed scenarios")
		p("")
		for _, f := range r.Failures {
			p("- %s", f)
		}
		p("")
	}
}

func (r suiteResults) writeTargets(p func(string, ...any)) {
	p("## Targets")
	p("")
	p("| target | measured | |")
	p("|---|---|---|")
	var big *controlResult
	for i := range r.Control {
		if big == nil || r.Control[i].Config.Agents > big.Config.Agents {
			big = &r.Control[i]
		}
	}
	if big != nil {
		n := big.Config.Agents
		ceiling := ""
		if r.Ceiling != nil {
			ceiling = fmt.Sprintf("; etcd ceiling %s batched puts/s", num(r.Ceiling.BatchedPuts))
		}
		p("| ≥ %s placements/s | %s placements/s from winning the election (%s while writing; backlog of %s units, %s agents%s) | %s |",
			num(targetPlacements), num(big.Backlog.PlaceRate), num(big.Backlog.WriteRate), num(float64(big.Backlog.Units)), num(float64(n)), ceiling,
			met(big.Backlog.PlaceRate >= targetPlacements))
		perPeriod := big.Idle.PerAgentPerSecond(n) * (big.Config.TTL / 3).Seconds()
		p("| idle store load ≤ %.0f request per agent per agent_ttl/3 | %.2f (%s agents, agent_ttl %s) | %s |",
			targetIdlePerAgent, perPeriod, num(float64(n)), big.Config.TTL, met(perPeriod <= targetIdlePerAgent*1.05))
		p("| no cluster-wide wake-up on one unit change | %d of %s agents woken, engine woken %d times | %s |",
			big.Single.AgentsWoken, num(float64(n)), big.Single.EngineWakeups, met(big.Single.AgentsWoken <= 1))
		p("| p99 start latency ≤ %s at 1,000 agents | p99 %s (%s agents, burst of %s units) | %s |",
			dur(targetP99), dur(big.Burst.Latency.P99), num(float64(n)), num(float64(big.Config.Units)),
			met(n >= 1000 && big.Burst.Latency.P99 <= targetP99))
	}
	if s := r.Systemd; s != nil {
		r50, r99 := ratio(s.Fleet.P50, s.Floor.P50), ratio(s.Fleet.P99, s.Floor.P99)
		p("| within %.0f× of bare systemd | p50 %s vs %s (%.1f×), p99 %s vs %s (%.1f×) | %s |", targetFloorRatio,
			dur(s.Fleet.P50), dur(s.Floor.P50), r50, dur(s.Fleet.P99), dur(s.Floor.P99), r99,
			met(r50 <= targetFloorRatio && r99 <= targetFloorRatio))
		p("| agent ≤ 1 %% of a core with %s units | %.2f %% | %s |", num(float64(s.Config.HostUnits)),
			100*s.IdleUse.CoreShare(), met(s.IdleUse.CoreShare() <= targetAgentCPU))
		p("| agent ≤ %s RSS with %s units | %s (peak %s) | %s |", mb(targetAgentRSS), num(float64(s.Config.HostUnits)),
			mb(s.IdleUse.RSS), mb(s.IdleUse.HWM), met(s.IdleUse.RSS <= targetAgentRSS))
	}
	if c := r.CLI; c != nil && len(c.Rows) > 0 {
		last := c.Rows[len(c.Rows)-1]
		p("| list-units ≤ %s at %s units | %s | %s |", dur(targetListUnits), num(float64(last.Units)),
			cliDur(last.ListUnits), met(!last.ListUnits.TimedOut && last.ListUnits.Wall <= targetListUnits))
	}
	p("")
}

func writeControl(p func(string, ...any), c controlResult) {
	n := c.Config.Agents
	units := c.Config.Units
	p("## Control plane: %s simulated agents, %s units", num(float64(n)), num(float64(units)))
	p("")
	p("One etcd, one engine and %s agents (agent.Agent with the in-memory systemd, each with its own machine "+
		"registration, lease and etcd connection), each group in its own process; agent_ttl %s. "+
		"etcd requests are etcd's own count (`%s`); the agents' share is etcd's count minus what the engine "+
		"and the benchmark driver sent.", num(float64(n)), c.Config.TTL, requestMetric)
	p("")
	p("| measure | value |")
	p("|---|---|")
	p("| registering %s machines | %s |", num(float64(n)), dur(c.Register))
	idle := func(label string, w window, launched float64) {
		perSec := w.PerAgentPerSecond(n)
		fleet := fleetIdleCost(launched, launched)
		p("| %s: etcd requests/s per agent | %.4f (%.2f per agent_ttl/3; fleet's model: %.2f/s, %.0f× more) |",
			label, perSec, perSec*(c.Config.TTL/3).Seconds(), fleet, ratioF(fleet, perSec))
		p("| %s: etcd requests over %s | %s (agents' own count: %s) |", label, dur(w.Wall), w.Etcd, w.AgentsOwn)
		p("| %s: CPU engine / agents / etcd | %s / %s / %s of a core |", label,
			pct(w.EngineUse.CoreShare()), pct(w.AgentsUse.CoreShare()), pct(w.EtcdUse.CoreShare()))
	}
	idle("idle, no units", c.Idle, 0)
	b := c.Burst
	p("| burst: submitting %s units (%d goroutines, one put each) | %s (%s units/s) |", num(float64(units)),
		c.Config.Submitters, dur(b.Submit), num(float64(units)/b.Submit.Seconds()))
	p("| burst: placements/s (first accepted to last placed) | %s |", num(b.PlaceRate))
	p("| burst: accepted → launched p50 / p90 / p99 / max | %s / %s / %s / %s |",
		dur(b.Latency.P50), dur(b.Latency.P90), dur(b.Latency.P99), dur(b.Latency.Max))
	p("| burst: etcd requests/s per agent | %.2f |", b.Window.PerAgentPerSecond(n))
	p("| burst: etcd requests over %s | %s |", dur(b.Window.Wall), b.Window.Etcd)
	p("| burst: CPU seconds engine / agents (per agent) / etcd | %.2f / %.2f (%.1f ms) / %.2f |",
		b.Window.EngineUse.CPU.Seconds(), b.Window.AgentsUse.CPU.Seconds(),
		1000*b.Window.AgentsUse.CPU.Seconds()/float64(n), b.Window.EtcdUse.CPU.Seconds())
	s := c.Single
	p("| one more unit: agents woken / engine wake-ups | %d / %d |", s.AgentsWoken, s.EngineWakeups)
	p("| one more unit: etcd requests (keep-alives aside) | %s |", s.Requests)
	p("| one more unit: accepted → launched | %s |", dur(s.Latency))
	idle(fmt.Sprintf("idle, %s units running", num(float64(units+1))), c.IdleLoaded, float64(units+1)/float64(n))
	bl := c.Backlog
	p("| backlog: new leader reads the cluster / plans %s units | %s / %s |", num(float64(bl.Units)), dur(bl.Read), dur(bl.Plan))
	p("| backlog: placements/s (won election to last placement, agents paused) | %s (%s in %s) |",
		num(bl.PlaceRate), num(float64(bl.Placements)), dur(bl.PlaceTime))
	p("| backlog: placements/s while writing (first to last fenced write) | %s |", num(bl.WriteRate))
	p("| backlog: agents resumed → all %s launched | %s |", num(float64(bl.Units)), dur(bl.AllLaunched))
	p("| RSS engine / agents (per agent) / etcd | %s / %s (%s) / %s |", mb(bl.Window.EngineUse.RSS),
		mb(bl.Window.AgentsUse.RSS), kb(bl.Window.AgentsUse.RSS/int64(max(1, n))), mb(bl.Window.EtcdUse.RSS))
	p("| machine registrations / failed state writes | %s / %d |", num(float64(c.Registrations)), c.PublishErrors)
	p("")
}

func writeSystemd(p func(string, ...any), s systemdResult) {
	c := s.Config
	p("## Real systemd: %d hosts, each a fleetd with its own systemd --user", c.Hosts)
	p("")
	p("A unit counts as active when its manager's signals (coalesced over 50 ms) report it changed and "+
		"it then reads ActiveState=active; units still pending are also read every %s.", dur(recheck))
	p("")
	p("| measure | p50 | p90 | p99 | max |")
	p("|---|---|---|---|---|")
	p("| bare systemd: StartUnit ×%d, one after another → active | %s | %s | %s | %s |", c.Units,
		dur(s.Floor.P50), dur(s.Floor.P90), dur(s.Floor.P99), dur(s.Floor.Max))
	p("| bare systemd: the same from writing the unit files (write, link, daemon-reload, StartUnit) → active | %s | %s | %s | %s |",
		dur(s.FloorLoad.P50), dur(s.FloorLoad.P90), dur(s.FloorLoad.P99), dur(s.FloorLoad.Max))
	p("| bare systemd: the same spread over %d managers, started in parallel → active | %s | %s | %s | %s |", c.Hosts,
		dur(s.FloorSpread.P50), dur(s.FloorSpread.P90), dur(s.FloorSpread.P99), dur(s.FloorSpread.Max))
	p("| fleet: `fleetctl start` of %d unit files → active | %s | %s | %s | %s |", c.Units,
		dur(s.Fleet.P50), dur(s.Fleet.P90), dur(s.Fleet.P99), dur(s.Fleet.Max))
	p("| fleet: the same command → placed in a host's schedule | %s | %s | %s | %s |",
		dur(s.Placed.P50), dur(s.Placed.P90), dur(s.Placed.P99), dur(s.Placed.Max))
	p("| ratio fleet / bare, one manager | %.1f× | %.1f× | %.1f× | %.1f× |", ratio(s.Fleet.P50, s.Floor.P50),
		ratio(s.Fleet.P90, s.Floor.P90), ratio(s.Fleet.P99, s.Floor.P99), ratio(s.Fleet.Max, s.Floor.Max))
	p("| ratio fleet / bare, one manager, from the unit files | %.1f× | %.1f× | %.1f× | %.1f× |", ratio(s.Fleet.P50, s.FloorLoad.P50),
		ratio(s.Fleet.P90, s.FloorLoad.P90), ratio(s.Fleet.P99, s.FloorLoad.P99), ratio(s.Fleet.Max, s.FloorLoad.Max))
	p("| ratio fleet / bare, %d managers | %.1f× | %.1f× | %.1f× | %.1f× |", c.Hosts, ratio(s.Fleet.P50, s.FloorSpread.P50),
		ratio(s.Fleet.P90, s.FloorSpread.P90), ratio(s.Fleet.P99, s.FloorSpread.P99), ratio(s.Fleet.Max, s.FloorSpread.Max))
	p("")
	p("| measure | value |")
	p("|---|---|")
	p("| bare systemd: writing, linking and loading %d units | %s |", c.Units, dur(s.FloorPrepare))
	p("| `fleetctl start` command (waits until every unit is active) | %s |", dur(s.Command))
	p("| %s units pinned to one host: submitted → all active | %s |", num(float64(c.HostUnits)), dur(s.HostLoad))
	p("| that host's fleetd while loading: CPU | %.2f s (%s of a core) |", s.LoadUse.CPU.Seconds(), pct(s.LoadUse.CoreShare()))
	p("| that host's fleetd with %s units running, over %s: CPU | %.2f s (%s of a core) |",
		num(float64(c.HostUnits)), dur(s.IdleUse.Wall), s.IdleUse.CPU.Seconds(), pct(s.IdleUse.CoreShare()))
	p("| that host's fleetd: RSS (peak) | %s (%s) |", mb(s.IdleUse.RSS), mb(s.IdleUse.HWM))
	p("")
}

func writeCLI(p func(string, ...any), c cliResult) {
	p("## CLI at scale: the real fleetctl against a fleetd API, units spread over %d machines", c.Config.Machines)
	p("")
	p("| units | list-units | list-unit-files |")
	p("|---|---|---|")
	for _, r := range c.Rows {
		p("| %s | %s (%s lines) | %s (%s lines) |", num(float64(r.Units)), cliDur(r.ListUnits), num(float64(r.ListUnits.Lines)),
			cliDur(r.ListUnitFiles), num(float64(r.ListUnitFiles.Lines)))
	}
	p("")
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func cliDur(r cliRun) string {
	if r.TimedOut {
		return "> " + dur(r.Wall) + " (stopped)"
	}
	return dur(r.Wall)
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func ratioF(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// dur formats d with three significant figures or so.
func dur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
}

// num formats v with thousands separators.
func num(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func pct(share float64) string { return fmt.Sprintf("%.2f %%", 100*share) }

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }

func kb(b int64) string { return fmt.Sprintf("%.0f KB", float64(b)/(1<<10)) }
