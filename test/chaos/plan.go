package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Kind is a kind of event in a schedule: a fault, or a step of the
// workload.
type Kind string

// The faults, and the workload's churn.
const (
	// FleetdKill kills a host's fleetd with SIGKILL and starts it again
	// after Hold.
	FleetdKill Kind = "fleetd-kill"
	// LeaderKill is FleetdKill on the host of the engine leader.
	LeaderKill Kind = "engine-leader-kill"
	// FleetdLeave stops a host's fleetd with SIGTERM (a clean leave) and
	// starts it again after Hold.
	FleetdLeave Kind = "fleetd-leave"
	// EtcdKill kills an etcd member with SIGKILL and starts it again on
	// its data after Hold.
	EtcdKill Kind = "etcd-kill"
	// EtcdLeaderKill is EtcdKill on the etcd leader.
	EtcdLeaderKill Kind = "etcd-leader-kill"
	// EtcdFreeze stops every etcd member (SIGSTOP) for Hold.
	EtcdFreeze Kind = "etcd-freeze"
	// Partition cuts a host from every etcd member for Hold.
	Partition Kind = "partition"
	// SystemdRestart stops a host's systemd manager and starts it again.
	SystemdRestart Kind = "systemd-restart"
	// BadUnit starts a unit that systemd refuses (Type=simple, no
	// ExecStart=) and a good unit bound to its machine, and fixes the bad
	// one after Hold (Fix says how).
	BadUnit Kind = "bad-unit"
	// Churn starts a new instance of the template and destroys an old one.
	// It is workload, not a fault.
	Churn Kind = "churn"
)

// Kinds lists every fault kind, in report order.
var Kinds = []Kind{FleetdKill, LeaderKill, FleetdLeave, EtcdKill, EtcdLeaderKill, EtcdFreeze, Partition,
	SystemdRestart, BadUnit}

// Fault reports whether k is a fault (rather than workload).
func (k Kind) Fault() bool { return k != Churn }

// hostBound reports whether a fault of kind k targets one host picked by
// the plan.
func (k Kind) hostBound() bool {
	switch k {
	case FleetdKill, FleetdLeave, Partition, SystemdRestart:
		return true
	}
	return false
}

// impairs reports whether a fault of kind k takes a host out of the
// cluster (its fleetd down or cut from etcd) while it lasts.
func (k Kind) impairs() bool {
	switch k {
	case FleetdKill, LeaderKill, FleetdLeave, Partition:
		return true
	}
	return false
}

// Fix is how a bad unit is repaired.
type Fix string

// The two ways a user fixes a bad unit.
const (
	FixReplace Fix = "replace" // fleetctl start --replace with the fixed file
	FixDestroy Fix = "destroy" // fleetctl destroy, then start the fixed file
)

// Event is one step of a schedule.
type Event struct {
	Seq  int           // position in the schedule
	At   time.Duration // offset from the start of the fault phase
	Kind Kind
	// Host is the target host of a host-bound fault, else -1 (the engine
	// leader's host is found when the fault starts).
	Host int
	// Member is the target etcd member of EtcdKill, else -1 (the etcd
	// leader is found when the fault starts).
	Member int
	Hold   time.Duration // how long the fault lasts
	Fix    Fix           // BadUnit only
	Unit   string        // BadUnit: the bad unit; Churn: the instance started
	Victim string        // Churn: the instance destroyed
}

func (e Event) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d +%s %s", e.Seq, e.At.Round(100*time.Millisecond), e.Kind)
	if e.Host >= 0 {
		fmt.Fprintf(&b, " host=%d", e.Host)
	}
	if e.Member >= 0 {
		fmt.Fprintf(&b, " member=m%d", e.Member)
	}
	if e.Hold > 0 {
		fmt.Fprintf(&b, " hold=%s", e.Hold.Round(100*time.Millisecond))
	}
	if e.Unit != "" {
		fmt.Fprintf(&b, " unit=%s", e.Unit)
	}
	if e.Fix != "" {
		fmt.Fprintf(&b, " fix=%s", e.Fix)
	}
	if e.Victim != "" {
		fmt.Fprintf(&b, " destroy=%s", e.Victim)
	}
	return b.String()
}

// PlanConfig shapes a schedule.
type PlanConfig struct {
	Seed     uint64
	Duration time.Duration // of the fault phase
	Hosts    int
	Members  int           // etcd members
	AgentTTL time.Duration // of the cluster: holds are scaled to it
	// MeanGap is the mean time between the starts of two faults.
	MeanGap time.Duration
	// ChurnGap is the mean time between two churn steps (0: no churn).
	ChurnGap time.Duration
	// MaxImpaired bounds the hosts out of the cluster at once (fleetd
	// down or cut from etcd), so that units with Conflicts stay placeable.
	MaxImpaired int
	// Instances are the template instances running when the phase starts
	// (the first churn steps destroy them, oldest first).
	Instances []string
	// Template is the instance name pattern of churn, e.g. "tmpl@%d.service";
	// churn numbers new instances from len(Instances).
	Template string
}

// weights are the relative frequencies of the fault kinds.
var weights = map[Kind]int{
	FleetdKill: 4, LeaderKill: 3, FleetdLeave: 3, EtcdKill: 2, EtcdLeaderKill: 2, EtcdFreeze: 1,
	Partition: 4, SystemdRestart: 1, BadUnit: 1,
}

// maxBad bounds the bad units waiting for their fix at once.
const maxBad = 2

// overhead estimates how long a fault keeps its target busy beyond its
// hold (stopping, restarting, rejoining).
var overhead = map[Kind]time.Duration{
	FleetdKill: 2 * time.Second, LeaderKill: 2 * time.Second, FleetdLeave: 6 * time.Second,
	EtcdKill: 4 * time.Second, EtcdLeaderKill: 4 * time.Second, EtcdFreeze: time.Second,
	Partition: time.Second, SystemdRestart: 3 * time.Second, BadUnit: 2 * time.Second,
}

// Plan draws a schedule from cfg.Seed: the same configuration always gives
// the same schedule. Faults that would act on the same thing (a host's
// fleetd, its link to etcd, its systemd, the etcd cluster) never overlap in
// the plan, and at most cfg.MaxImpaired hosts are planned out of the
// cluster at once (a leader kill counts as one, whichever host leads).
func Plan(cfg PlanConfig) []Event {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15))
	var kinds []Kind
	total := 0
	for _, k := range Kinds {
		kinds = append(kinds, k)
		total += weights[k]
	}
	ttl := cfg.AgentTTL
	between := func(lo, hi time.Duration) time.Duration {
		return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
	}
	hold := func(k Kind) time.Duration {
		switch k {
		case FleetdKill, LeaderKill:
			// From a quick restart (the lease is adopted) to long enough
			// for the engine to move the host's units.
			return between(100*time.Millisecond, 3*ttl)
		case FleetdLeave:
			return between(500*time.Millisecond, 2*ttl)
		case EtcdKill, EtcdLeaderKill:
			return between(500*time.Millisecond, 8*time.Second)
		case EtcdFreeze:
			return between(500*time.Millisecond, ttl+ttl/2)
		case Partition:
			return between(time.Second, 4*ttl)
		case BadUnit:
			return between(2*time.Second, 15*time.Second)
		}
		return 0
	}

	busy := map[string]time.Duration{} // resource -> busy until
	var impairedUntil []impairment
	impairedAt := func(at time.Duration) (n int, hosts map[int]bool) {
		hosts = map[int]bool{}
		for _, s := range impairedUntil {
			if s.until > at {
				n++
				hosts[s.host] = true
			}
		}
		return n, hosts
	}
	var events []Event
	bad := 0
	var badUntil []time.Duration
	// place fills in the target of a fault of kind k at at, or reports
	// that none is free.
	place := func(k Kind, at time.Duration) (Event, bool) {
		ev := Event{At: at, Kind: k, Host: -1, Member: -1, Hold: hold(k)}
		if rest := cfg.Duration - at; ev.Hold > rest {
			ev.Hold = max(rest, 100*time.Millisecond)
		}
		until := at + ev.Hold + overhead[k]
		nImp, impHosts := impairedAt(at)
		if k.impairs() && nImp >= cfg.MaxImpaired {
			return ev, false
		}
		switch {
		case k.hostBound():
			var free []int
			for h := range cfg.Hosts {
				if busy[resource(k, h)] <= at && !(k.impairs() && impHosts[h]) {
					free = append(free, h)
				}
			}
			if len(free) == 0 {
				return ev, false
			}
			ev.Host = free[rng.IntN(len(free))]
			busy[resource(k, ev.Host)] = until
		case k == LeaderKill:
			if busy["leader"] > at {
				return ev, false
			}
			busy["leader"] = until
		case k == EtcdKill || k == EtcdLeaderKill || k == EtcdFreeze:
			if busy["etcd"] > at {
				return ev, false
			}
			busy["etcd"] = until
			if k == EtcdKill {
				ev.Member = rng.IntN(cfg.Members)
			}
		case k == BadUnit:
			open := 0
			for _, u := range badUntil {
				if u > at {
					open++
				}
			}
			if open >= maxBad {
				return ev, false
			}
			badUntil = append(badUntil, until)
			ev.Unit = fmt.Sprintf("bad-%d.service", bad)
			bad++
			ev.Fix = FixReplace
			if rng.IntN(2) == 1 {
				ev.Fix = FixDestroy
			}
		}
		if k.impairs() {
			impairedUntil = append(impairedUntil, impairment{until: until, host: ev.Host})
		}
		return ev, true
	}
	draw := func() Kind {
		n := rng.IntN(total)
		for _, k := range kinds {
			if n < weights[k] {
				return k
			}
			n -= weights[k]
		}
		return kinds[len(kinds)-1]
	}
	// Every kind comes once, in a shuffled order, before the weighted
	// draws take over: even a short run sees each kind.
	pending := slices.Clone(kinds)
	rng.Shuffle(len(pending), func(i, j int) { pending[i], pending[j] = pending[j], pending[i] })
	const start = 2 * time.Second
	for at := start; at < cfg.Duration; at += gap(rng, cfg.MeanGap) {
		if len(pending) > 0 {
			if ev, ok := place(pending[0], at); ok {
				pending = pending[1:]
				events = append(events, ev)
				continue
			}
		}
		for range 8 { // a few draws before giving up this slot
			if ev, ok := place(draw(), at); ok {
				events = append(events, ev)
				break
			}
		}
	}
	if cfg.ChurnGap > 0 && cfg.Template != "" {
		live := slices.Clone(cfg.Instances)
		next := len(cfg.Instances)
		for at := start + cfg.ChurnGap/2; at < cfg.Duration; at += gap(rng, cfg.ChurnGap) {
			ev := Event{At: at, Kind: Churn, Host: -1, Member: -1, Unit: fmt.Sprintf(cfg.Template, next)}
			next++
			if len(live) > 0 {
				ev.Victim, live = live[0], live[1:]
			}
			live = append(live, ev.Unit)
			events = append(events, ev)
		}
	}
	slices.SortStableFunc(events, func(a, b Event) int { return int(a.At - b.At) })
	for i := range events {
		events[i].Seq = i
	}
	return events
}

// impairment is a host planned out of the cluster until a time.
type impairment struct {
	until time.Duration
	host  int // -1: the engine leader's host
}

// resource names what a host-bound fault of kind k acts on.
func resource(k Kind, host int) string {
	switch k {
	case FleetdKill, LeaderKill, FleetdLeave:
		return fmt.Sprintf("fleetd/%d", host)
	case Partition:
		return fmt.Sprintf("link/%d", host)
	case SystemdRestart:
		return fmt.Sprintf("systemd/%d", host)
	}
	return string(k)
}

// gap draws an exponentially distributed gap of the given mean, at least
// 200 ms.
func gap(rng *rand.Rand, mean time.Duration) time.Duration {
	return max(time.Duration(rng.ExpFloat64()*float64(mean)), 200*time.Millisecond)
}
