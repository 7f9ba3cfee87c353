package engine

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleet-next/fleet/unit"
)

// Machine IDs of the table tests: full IDs whose 8-character short forms
// differ, so MachineID can name either.
const (
	mA = "a1a1a1a1000000000000000000000001"
	mB = "b2b2b2b2000000000000000000000002"
	mC = "c3c3c3c3000000000000000000000003"
	mD = "d4d4d4d4000000000000000000000004"
	mX = "e5e5e5e5000000000000000000000005" // never live
)

// planNow is the clock reading of every planned round.
func planNow() time.Time { return time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC) }

// snap builds a cluster snapshot from unit file text.
type snap struct {
	c      unit.Cluster
	absent map[string]time.Time
	seq    int64
}

func newSnap() *snap {
	return &snap{
		c: unit.Cluster{
			Units:      map[string]unit.Unit{},
			Machines:   map[string]unit.Machine{},
			Placements: map[string]map[string]unit.Placement{},
			Reasons:    map[string]string{},
		},
		absent: map[string]time.Time{},
	}
}

// machine adds a live machine with "key=value" metadata.
func (s *snap) machine(id string, md ...string) *snap {
	m := unit.Machine{ID: id, PublicIP: "127.0.0.1", Metadata: map[string]string{}}
	for _, kv := range md {
		k, v, _ := strings.Cut(kv, "=")
		m.Metadata[k] = v
	}
	s.c.Machines[id] = m
	return s
}

// gone records that machine id, not live, was first seen absent ago.
func (s *snap) gone(id string, ago time.Duration) *snap {
	s.absent[id] = planNow().Add(-ago)
	return s
}

// unitText is a service unit with the given [X-Fleet] lines.
func unitText(name string, fleet ...string) string {
	text := "[Unit]\nDescription=" + name + "\n\n[Service]\nExecStart=/bin/sleep infinity\n"
	if len(fleet) > 0 {
		text += "\n[X-Fleet]\n" + strings.Join(fleet, "\n") + "\n"
	}
	return text
}

// unit submits (or, for a known name, rewrites) a unit whose [X-Fleet]
// section holds the given lines.
func (s *snap) unit(name string, desired unit.FleetState, fleet ...string) *snap {
	return s.raw(name, desired, unitText(name, fleet...))
}

// raw submits a unit with arbitrary text, stored in canonical form when it
// parses. A rewritten unit keeps its submission order.
func (s *snap) raw(name string, desired unit.FleetState, text string) *snap {
	content, global := text, false
	if f, err := unit.Parse(text); err == nil {
		content, global = f.Serialize(), f.IsGlobal()
	}
	u, known := s.c.Units[name]
	if !known {
		s.seq++
		u.Seq = s.seq
	}
	u.Name, u.Content, u.Hash, u.Desired, u.Global = name, content, unit.HashOf(content), desired, global
	s.c.Units[name] = u
	return s
}

// on records placements of name on machines with the unit's current
// contents and desired state.
func (s *snap) on(name string, machines ...string) *snap {
	u := s.c.Units[name]
	for _, m := range machines {
		if s.c.Placements[name] == nil {
			s.c.Placements[name] = map[string]unit.Placement{}
		}
		s.c.Placements[name][m] = unit.Placement{Unit: name, Machine: m, Hash: u.Hash, Desired: u.Desired, Content: u.Content}
	}
	return s
}

// reason records a stored reason.
// refused records that machine refused the unit's current version
// (hash: the version it refused; zero means the current one).
func (s *snap) refused(name, machine, why string, hash ...unit.Hash) *snap {
	h := s.c.Units[name].Hash
	if len(hash) > 0 {
		h = hash[0]
	}
	if s.c.Refused == nil {
		s.c.Refused = map[string]map[string]unit.Refusal{}
	}
	if s.c.Refused[name] == nil {
		s.c.Refused[name] = map[string]unit.Refusal{}
	}
	s.c.Refused[name][machine] = unit.Refusal{Hash: h, Reason: why}
	return s
}

func (s *snap) reason(name, why string) *snap {
	s.c.Reasons[name] = why
	return s
}

// input is the planner input for the snapshot with a one-minute grace.
func (s *snap) input() Input {
	return Input{Cluster: s.c, Now: planNow(), Absent: s.absent, Grace: time.Minute, Reqs: newReqCache().get}
}

func cloneCluster(c unit.Cluster) unit.Cluster {
	out := unit.Cluster{
		Units:      maps.Clone(c.Units),
		Machines:   map[string]unit.Machine{},
		Placements: map[string]map[string]unit.Placement{},
		Reasons:    maps.Clone(c.Reasons),
		Revision:   c.Revision,
	}
	if out.Units == nil {
		out.Units = map[string]unit.Unit{}
	}
	if out.Reasons == nil {
		out.Reasons = map[string]string{}
	}
	for id, m := range c.Machines {
		m.Metadata = maps.Clone(m.Metadata)
		out.Machines[id] = m
	}
	for name, pm := range c.Placements {
		out.Placements[name] = maps.Clone(pm)
	}
	return out
}

// applyChanges applies a plan to a copy of c the way the store does, and
// reports changes that do not fit the schedule they were planned against.
func applyChanges(t *testing.T, c unit.Cluster, changes []Change) unit.Cluster {
	t.Helper()
	out := cloneCluster(c)
	for _, ch := range changes {
		p := ch.Placement
		_, had := out.Placements[p.Unit][p.Machine]
		switch ch.Kind {
		case Place:
			if had {
				t.Errorf("place %s on %s: already placed there", p.Unit, p.Machine)
			}
			if out.Placements[p.Unit] == nil {
				out.Placements[p.Unit] = map[string]unit.Placement{}
			}
			out.Placements[p.Unit][p.Machine] = p
		case Update:
			if !had {
				t.Errorf("update %s on %s: not placed there", p.Unit, p.Machine)
			}
			out.Placements[p.Unit][p.Machine] = p
		case Unplace:
			if !had {
				t.Errorf("unplace %s from %s: not placed there", p.Unit, p.Machine)
			}
			delete(out.Placements[p.Unit], p.Machine)
			if len(out.Placements[p.Unit]) == 0 {
				delete(out.Placements, p.Unit)
			}
		case SetReason:
			if ch.Reason == "" {
				t.Errorf("set-reason %s: empty reason", ch.Unit)
			}
			out.Reasons[ch.Unit] = ch.Reason
		case ClearReason:
			if _, ok := out.Reasons[ch.Unit]; !ok {
				t.Errorf("clear-reason %s: no reason stored", ch.Unit)
			}
			delete(out.Reasons, ch.Unit)
		default:
			t.Errorf("change of unknown kind %v", ch.Kind)
		}
	}
	return out
}

// schedule is unit name -> sorted machine IDs of its placements.
func schedule(c unit.Cluster) map[string][]string {
	out := map[string][]string{}
	for name, pm := range c.Placements {
		if len(pm) > 0 {
			out[name] = slices.Sorted(maps.Keys(pm))
		}
	}
	return out
}

func kindCounts(changes []Change) map[ChangeKind]int {
	out := map[ChangeKind]int{}
	for _, ch := range changes {
		out[ch.Kind]++
	}
	return out
}

func describe(changes []Change) string {
	var b strings.Builder
	for _, ch := range changes {
		switch ch.Kind {
		case SetReason, ClearReason:
			fmt.Fprintf(&b, "\n  %v %s %q", ch.Kind, ch.Unit, ch.Reason)
		default:
			fmt.Fprintf(&b, "\n  %v %s on %s (%s, %s)", ch.Kind, ch.Placement.Unit, unit.ShortID(ch.Placement.Machine),
				ch.Placement.Desired, ch.Placement.Hash.Short())
		}
	}
	return b.String()
}

// checkCurrent reports placements that do not carry their unit's current
// contents and desired state.
func checkCurrent(t *testing.T, c unit.Cluster) {
	t.Helper()
	for name, pm := range c.Placements {
		u := c.Units[name]
		for mid, p := range pm {
			if p.Unit != name || p.Machine != mid {
				t.Errorf("placement %s on %s is keyed as %s on %s", p.Unit, p.Machine, name, mid)
			}
			if p.Hash != u.Hash || p.Content != u.Content || p.Desired != u.Desired {
				t.Errorf("placement of %s on %s has hash %s desired %s, unit has %s %s",
					name, unit.ShortID(mid), p.Hash.Short(), p.Desired, u.Hash.Short(), u.Desired)
			}
		}
	}
}

func TestPlanTable(t *testing.T) {
	tests := []struct {
		name    string
		snap    *snap
		tweak   func(in *Input)
		want    map[string][]string // schedule once the plan is applied
		reasons map[string]string   // stored reasons once the plan is applied
		kinds   map[ChangeKind]int  // if not nil, the exact number of changes per kind
	}{
		{
			name: "new units spread least-loaded with ties to the lowest machine ID",
			snap: newSnap().machine(mC).machine(mA).machine(mB).
				unit("u1.service", unit.StateLaunched).unit("u2.service", unit.StateLaunched).
				unit("u3.service", unit.StateLoaded).unit("u4.service", unit.StateLaunched),
			want:  map[string][]string{"u1.service": {mA}, "u2.service": {mB}, "u3.service": {mC}, "u4.service": {mA}},
			kinds: map[ChangeKind]int{Place: 4},
		},
		{
			name: "new unit goes to the least-loaded machine",
			snap: newSnap().machine(mA).machine(mB).machine(mC).
				unit("a.service", unit.StateLaunched).on("a.service", mA).
				unit("b.service", unit.StateLaunched).on("b.service", mA).
				unit("c.service", unit.StateLaunched).on("c.service", mB).
				unit("d.service", unit.StateLaunched).on("d.service", mC).
				unit("e.service", unit.StateLaunched).on("e.service", mC).
				unit("new.service", unit.StateLaunched),
			want: map[string][]string{"a.service": {mA}, "b.service": {mA}, "c.service": {mB}, "d.service": {mC},
				"e.service": {mC}, "new.service": {mB}},
			kinds: map[ChangeKind]int{Place: 1},
		},
		{
			name: "a new empty machine causes no churn",
			snap: newSnap().machine(mA).machine(mB).machine(mD).
				unit("a.service", unit.StateLaunched).on("a.service", mA).
				unit("b.service", unit.StateLaunched).on("b.service", mA).
				unit("c.service", unit.StateLoaded).on("c.service", mB),
			want:  map[string][]string{"a.service": {mA}, "b.service": {mA}, "c.service": {mB}},
			kinds: map[ChangeKind]int{},
		},
		{
			name: "a new empty machine takes only the new unit",
			snap: newSnap().machine(mA).machine(mB).machine(mD).
				unit("a.service", unit.StateLaunched).on("a.service", mA).
				unit("b.service", unit.StateLaunched).on("b.service", mB).
				unit("new.service", unit.StateLaunched),
			want:  map[string][]string{"a.service": {mA}, "b.service": {mB}, "new.service": {mD}},
			kinds: map[ChangeKind]int{Place: 1},
		},
		{
			name: "desired inactive is unplaced and its reason cleared",
			snap: newSnap().machine(mA).
				unit("a.service", unit.StateInactive).on("a.service", mA).
				unit("b.service", unit.StateInactive).reason("b.service", "no live machines"),
			want:  map[string][]string{},
			kinds: map[ChangeKind]int{Unplace: 1, ClearReason: 1},
		},
		{
			name: "MachineID pins to the full ID over load",
			snap: newSnap().machine(mA).machine(mB).machine(mC).
				unit("busy.service", unit.StateLaunched).on("busy.service", mC).
				unit("pin.service", unit.StateLaunched, "MachineID="+mC),
			want:  map[string][]string{"busy.service": {mC}, "pin.service": {mC}},
			kinds: map[ChangeKind]int{Place: 1},
		},
		{
			name: "MachineID pins to the short ID",
			snap: newSnap().machine(mA).machine(mB).machine(mC).
				unit("pin.service", unit.StateLaunched, "MachineID="+unit.ShortID(mB)),
			want: map[string][]string{"pin.service": {mB}},
		},
		{
			name: "MachineID of an absent machine leaves the unit unscheduled with a reason",
			snap: newSnap().machine(mA).machine(mB).
				unit("pin.service", unit.StateLaunched, "MachineID="+unit.ShortID(mX)),
			want:    map[string][]string{},
			reasons: map[string]string{"pin.service": "MachineID e5e5e5e5 is not a live machine"},
			kinds:   map[ChangeKind]int{SetReason: 1},
		},
		{
			name: "MachineMetadata values of one key are ORed",
			snap: newSnap().machine(mA, "region=us").machine(mB, "region=eu").machine(mC, "region=ap").
				unit("w1.service", unit.StateLaunched, "MachineMetadata=region=us", "MachineMetadata=region=eu").
				unit("w2.service", unit.StateLaunched, `MachineMetadata="region=us" "region=eu"`),
			want: map[string][]string{"w1.service": {mA}, "w2.service": {mB}},
		},
		{
			name: "MachineMetadata keys are ANDed and a missing key does not match",
			snap: newSnap().machine(mA, "region=us", "disk=hdd").machine(mB, "region=eu", "disk=ssd").machine(mC, "disk=ssd").
				unit("db.service", unit.StateLaunched, "MachineMetadata=region=us", "MachineMetadata=region=eu",
					"MachineMetadata=disk=ssd"),
			want: map[string][]string{"db.service": {mB}},
		},
		{
			name: "no machine matches MachineMetadata",
			snap: newSnap().machine(mA, "region=us").machine(mB, "region=eu").
				unit("m.service", unit.StateLaunched, "MachineMetadata=region=mars"),
			want:    map[string][]string{},
			reasons: map[string]string{"m.service": "no live machine matches MachineMetadata region=mars"},
		},
		{
			name: "a metadata change moves a placed unit",
			snap: newSnap().machine(mA, "region=eu").machine(mB, "region=us").
				unit("m.service", unit.StateLaunched, "MachineMetadata=region=us").on("m.service", mA),
			want:  map[string][]string{"m.service": {mB}},
			kinds: map[ChangeKind]int{Unplace: 1, Place: 1},
		},
		{
			name: "MachineOf follower is placed with its leader, not on the least-loaded machine",
			snap: newSnap().machine(mA).machine(mB).
				unit("leader.service", unit.StateLaunched).
				unit("follower.service", unit.StateLaunched, "MachineOf=leader.service").
				unit("other.service", unit.StateLaunched),
			want: map[string][]string{"leader.service": {mA}, "follower.service": {mA}, "other.service": {mB}},
		},
		{
			name: "MachineOf follower submitted before its leader",
			snap: newSnap().machine(mA).machine(mB).
				unit("follower.service", unit.StateLaunched, "MachineOf=leader.service").
				unit("busy.service", unit.StateLaunched).on("busy.service", mA).
				unit("leader.service", unit.StateLaunched),
			want: map[string][]string{"busy.service": {mA}, "leader.service": {mB}, "follower.service": {mB}},
		},
		{
			name: "MachineOf follower moves with its leader when the leader's machine is lost",
			snap: newSnap().machine(mB).machine(mC).gone(mA, 10*time.Minute).
				unit("busy.service", unit.StateLaunched).on("busy.service", mB).
				unit("leader.service", unit.StateLaunched).on("leader.service", mA).
				unit("follower.service", unit.StateLaunched, "MachineOf=leader.service").on("follower.service", mA),
			want: map[string][]string{"busy.service": {mB}, "leader.service": {mC}, "follower.service": {mC}},
		},
		{
			name: "MachineOf follower on a live machine follows its leader off a lost machine",
			snap: newSnap().machine(mB).machine(mC).gone(mA, 10*time.Minute).
				unit("busy.service", unit.StateLaunched).on("busy.service", mB).
				unit("leader.service", unit.StateLaunched).on("leader.service", mA).
				unit("follower.service", unit.StateLaunched, "MachineOf=leader.service").on("follower.service", mB),
			want: map[string][]string{"busy.service": {mB}, "leader.service": {mC}, "follower.service": {mC}},
		},
		{
			name: "MachineOf a leader that is not scheduled",
			snap: newSnap().machine(mA).
				unit("leader.service", unit.StateInactive).
				unit("follower.service", unit.StateLaunched, "MachineOf=leader.service").
				unit("orphan.service", unit.StateLoaded, "MachineOf=missing.service"),
			want: map[string][]string{},
			reasons: map[string]string{
				"follower.service": "MachineOf leader.service, which is not scheduled",
				"orphan.service":   "MachineOf missing.service, which is not scheduled",
			},
		},
		{
			name: "MachineOf a cycle is never scheduled",
			snap: newSnap().machine(mA).
				unit("x.service", unit.StateLaunched, "MachineOf=y.service").
				unit("y.service", unit.StateLaunched, "MachineOf=x.service"),
			want: map[string][]string{},
			reasons: map[string]string{
				"x.service": "MachineOf requirements form a cycle",
				"y.service": "MachineOf requirements form a cycle",
			},
		},
		{
			name: "Conflicts of the new unit rule out a machine",
			snap: newSnap().machine(mA).machine(mB).
				unit("a.service", unit.StateLaunched).on("a.service", mA).
				unit("b.service", unit.StateLaunched).on("b.service", mB).
				unit("x.service", unit.StateLaunched).on("x.service", mB).
				unit("c.service", unit.StateLaunched, "Conflicts=a.service"),
			want: map[string][]string{"a.service": {mA}, "b.service": {mB}, "x.service": {mB}, "c.service": {mB}},
		},
		{
			name: "Conflicts of a placed unit rule out its machine for the new one",
			snap: newSnap().machine(mA).machine(mB).
				unit("a.service", unit.StateLaunched, "Conflicts=c.*").on("a.service", mA).
				unit("b.service", unit.StateLaunched).on("b.service", mB).
				unit("x.service", unit.StateLaunched).on("x.service", mB).
				unit("c.service", unit.StateLaunched),
			want: map[string][]string{"a.service": {mA}, "b.service": {mB}, "x.service": {mB}, "c.service": {mB}},
		},
		{
			name: "Conflicts on every candidate machine",
			snap: newSnap().machine(mA).machine(mB).
				unit("a.service", unit.StateLaunched).on("a.service", mA).
				unit("b.service", unit.StateLaunched, "Conflicts=c.service").on("b.service", mB).
				unit("c.service", unit.StateLaunched, "Conflicts=a.service"),
			want:    map[string][]string{"a.service": {mA}, "b.service": {mB}},
			reasons: map[string]string{"c.service": "conflicts with a.service, b.service on every candidate machine"},
		},
		{
			name: "Conflicts on the only machines the metadata allows are named as the reason",
			snap: newSnap().machine(mA, "disk=ssd").machine(mB, "disk=hdd").machine(mC, "disk=hdd").
				unit("backup.service", unit.StateLaunched, "MachineMetadata=disk=ssd").on("backup.service", mA).
				unit("batch.service", unit.StateLaunched, "MachineMetadata=disk=ssd", "Conflicts=backup.service"),
			want:    map[string][]string{"backup.service": {mA}},
			reasons: map[string]string{"batch.service": "conflicts with backup.service on every candidate machine"},
		},
		{
			name: "Conflicts on the pinned machine are named as the reason",
			snap: newSnap().machine(mA).machine(mB).
				unit("legacy.service", unit.StateLaunched, "Conflicts=pinned.service").on("legacy.service", mB).
				unit("pinned.service", unit.StateLaunched, "MachineID="+mB),
			want:    map[string][]string{"legacy.service": {mB}},
			reasons: map[string]string{"pinned.service": "conflicts with legacy.service on every candidate machine"},
		},
		{
			name: "mutually conflicting units go to different machines in submission order",
			snap: newSnap().machine(mA).machine(mB).
				unit("z.service", unit.StateLaunched, "Conflicts=*.service").
				unit("y.service", unit.StateLaunched, "Conflicts=*.service").
				unit("x.service", unit.StateLaunched, "Conflicts=*.service"),
			want:    map[string][]string{"z.service": {mA}, "y.service": {mB}},
			reasons: map[string]string{"x.service": "conflicts with y.service, z.service on every candidate machine"},
		},
		{
			name: "Global units run on every machine whose metadata matches and count toward load",
			snap: newSnap().machine(mA, "role=web").machine(mB, "role=web").machine(mC, "role=db").
				unit("web.service", unit.StateLaunched, "Global=true", "MachineMetadata=role=web").
				unit("all.service", unit.StateLoaded, "Global=yes").
				unit("n.service", unit.StateLaunched),
			want: map[string][]string{"web.service": {mA, mB}, "all.service": {mA, mB, mC}, "n.service": {mC}},
		},
		{
			name: "Global unit leaves a machine whose metadata no longer matches",
			snap: newSnap().machine(mA, "role=db").machine(mB, "role=web").
				unit("web.service", unit.StateLaunched, "Global=true", "MachineMetadata=role=web").on("web.service", mA, mB),
			want:  map[string][]string{"web.service": {mB}},
			kinds: map[ChangeKind]int{Unplace: 1},
		},
		{
			name: "conflicting Global units: the first submitted wins, not the first by name",
			snap: newSnap().machine(mA).machine(mB).
				unit("g-b.service", unit.StateLaunched, "Global=true", "Conflicts=g-a.service").
				unit("g-a.service", unit.StateLaunched, "Global=true"),
			want: map[string][]string{"g-b.service": {mA, mB}},
		},
		{
			name: "conflicting Global units in the other submission order",
			snap: newSnap().machine(mA).machine(mB).
				unit("g-a.service", unit.StateLaunched, "Global=true").
				unit("g-b.service", unit.StateLaunched, "Global=true", "Conflicts=g-a.service"),
			want: map[string][]string{"g-a.service": {mA, mB}},
		},
		{
			name: "Replaces moves the replaced unit to another machine",
			snap: newSnap().machine(mA).machine(mB).machine(mC).
				unit("old.service", unit.StateLaunched).on("old.service", mA).
				unit("y.service", unit.StateLaunched).on("y.service", mB).
				unit("z.service", unit.StateLaunched).on("z.service", mC).
				unit("new.service", unit.StateLaunched, "Replaces=old.service"),
			want: map[string][]string{"new.service": {mA}, "old.service": {mB}, "y.service": {mB}, "z.service": {mC}},
		},
		{
			name: "a replaced unit with nowhere else to go stays off its replacer's machine",
			snap: newSnap().machine(mA).
				unit("old.service", unit.StateLaunched).on("old.service", mA).
				unit("new.service", unit.StateLaunched, "Replaces=old.service"),
			want:    map[string][]string{"new.service": {mA}},
			reasons: map[string]string{"old.service": "conflicts with new.service on every candidate machine"},
		},
		{
			name: "a replaced unit is not placed next to its replacer later",
			snap: newSnap().machine(mA).machine(mB).
				unit("new.service", unit.StateLaunched, "Replaces=old*").on("new.service", mA).
				unit("b.service", unit.StateLaunched).on("b.service", mB).
				unit("old.service", unit.StateLaunched),
			want: map[string][]string{"new.service": {mA}, "b.service": {mB}, "old.service": {mB}},
		},
		{
			name: "a unit displaced by its replacer is not moved next to a unit it replaces",
			snap: newSnap().machine(mA).machine(mB).
				unit("low.service", unit.StateLaunched, "Conflicts=mid.service").
				unit("mid.service", unit.StateLoaded, "Replaces=low.service").on("mid.service", mA).
				unit("top.service", unit.StateLaunched, "Replaces=mid.service"),
			// mid must not land beside low (which conflicts with it) when top
			// displaces it; the planner used to put both on mB.
			want: map[string][]string{"low.service": {mA}, "mid.service": {mB}, "top.service": {mA}},
		},
		{
			name: "a unit does not stay on a machine beside a unit it replaces",
			snap: newSnap().machine(mA).machine(mB).
				unit("low.service", unit.StateLaunched).on("low.service", mA).
				unit("mid.service", unit.StateLaunched, "Replaces=low.service").on("mid.service", mA),
			want: map[string][]string{"low.service": {mA}, "mid.service": {mB}},
		},
		{
			name: "mutual Replaces is ignored",
			snap: newSnap().machine(mA).
				unit("x.service", unit.StateLaunched, "Replaces=y.service").on("x.service", mA).
				unit("y.service", unit.StateLaunched, "Replaces=x.service"),
			want: map[string][]string{"x.service": {mA}, "y.service": {mA}},
		},
		{
			name: "a MachineOf chain to a unit it replaces is never scheduled",
			snap: newSnap().machine(mA).machine(mB).
				unit("r.service", unit.StateLaunched, "MachineOf=mid.service", "Replaces=base.service").
				unit("mid.service", unit.StateLaunched, "MachineOf=base.service").
				unit("base.service", unit.StateLoaded),
			want:    map[string][]string{"mid.service": {mA}, "base.service": {mA}},
			reasons: map[string]string{"r.service": "MachineOf requirements lead to base.service, which it replaces"},
		},
		{
			name: "a follower of a Global unit keeps its machine when a machine joins",
			snap: newSnap().machine(mA).machine(mD).machine(mB).
				unit("g.service", unit.StateLaunched, "Global=true").on("g.service", mA, mD).
				unit("x.service", unit.StateLaunched).on("x.service", mA).
				unit("f.service", unit.StateLaunched, "MachineOf=g.service").on("f.service", mD),
			want:  map[string][]string{"g.service": {mA, mB, mD}, "x.service": {mA}, "f.service": {mD}},
			kinds: map[ChangeKind]int{Place: 1},
		},
		{
			name: "absent machine within grace keeps its units and receives nothing new",
			snap: newSnap().machine(mB).gone(mA, 10*time.Second).
				unit("kept.service", unit.StateLaunched).on("kept.service", mA).
				unit("b1.service", unit.StateLaunched).on("b1.service", mB).
				unit("b2.service", unit.StateLaunched).on("b2.service", mB).
				unit("new.service", unit.StateLaunched),
			want: map[string][]string{"kept.service": {mA}, "b1.service": {mB}, "b2.service": {mB},
				"new.service": {mB}},
			kinds: map[ChangeKind]int{Place: 1},
		},
		{
			name: "absent machine within grace still gets new contents of its units",
			snap: newSnap().machine(mB).gone(mA, 10*time.Second).
				unit("kept.service", unit.StateLaunched).on("kept.service", mA).
				unit("kept.service", unit.StateLaunched, "MachineMetadata=role=any"),
			want:  map[string][]string{"kept.service": {mA}},
			kinds: map[ChangeKind]int{Update: 1},
		},
		{
			name: "absent machine past grace loses its units",
			snap: newSnap().machine(mB).machine(mC).gone(mA, 2*time.Minute).
				unit("a1.service", unit.StateLaunched).on("a1.service", mA).
				unit("a2.service", unit.StateLoaded).on("a2.service", mA).
				unit("pin.service", unit.StateLaunched, "MachineID="+mA).on("pin.service", mA),
			want:    map[string][]string{"a1.service": {mB}, "a2.service": {mC}},
			reasons: map[string]string{"pin.service": "MachineID " + mA + " is not a live machine"},
		},
		{
			name: "no live machines",
			snap: newSnap().
				unit("a.service", unit.StateLaunched),
			want:    map[string][]string{},
			reasons: map[string]string{"a.service": "no live machines"},
		},
		{
			name: "new contents update the placement in place",
			snap: newSnap().machine(mA).machine(mB).
				unit("a.service", unit.StateLaunched).on("a.service", mB).
				unit("a.service", unit.StateLaunched, "Conflicts=nothing.service"),
			want:  map[string][]string{"a.service": {mB}},
			kinds: map[ChangeKind]int{Update: 1},
		},
		{
			name: "a new desired state updates the placement in place",
			snap: newSnap().machine(mA).machine(mB).
				unit("a.service", unit.StateLaunched).on("a.service", mB).
				unit("a.service", unit.StateLoaded),
			want:  map[string][]string{"a.service": {mB}},
			kinds: map[ChangeKind]int{Update: 1},
		},
		{
			name: "the reason is cleared once the unit is placed",
			snap: newSnap().machine(mA).
				unit("a.service", unit.StateLaunched).reason("a.service", "no live machines"),
			want:  map[string][]string{"a.service": {mA}},
			kinds: map[ChangeKind]int{Place: 1, ClearReason: 1},
		},
		{
			name: "a changed reason is replaced",
			snap: newSnap().machine(mA).
				unit("a.service", unit.StateLaunched, "MachineID="+mX).reason("a.service", "no live machines"),
			want:    map[string][]string{},
			reasons: map[string]string{"a.service": "MachineID " + mX + " is not a live machine"},
			kinds:   map[ChangeKind]int{SetReason: 1},
		},
		{
			name: "an unchanged reason is not written again",
			snap: newSnap().machine(mA).
				unit("a.service", unit.StateLaunched, "MachineID="+mX).
				reason("a.service", "MachineID "+mX+" is not a live machine"),
			want:    map[string][]string{},
			reasons: map[string]string{"a.service": "MachineID " + mX + " is not a live machine"},
			kinds:   map[ChangeKind]int{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.snap.input()
			if tc.tweak != nil {
				tc.tweak(&in)
			}
			before := cloneCluster(in.Cluster)
			changes := Plan(in)
			if !reflect.DeepEqual(in.Cluster, before) {
				t.Errorf("Plan modified its input cluster")
			}
			after := applyChanges(t, in.Cluster, changes)
			if got := schedule(after); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("schedule = %v, want %v; changes:%s", got, tc.want, describe(changes))
			}
			wantReasons := tc.reasons
			if wantReasons == nil {
				wantReasons = map[string]string{}
			}
			if !reflect.DeepEqual(after.Reasons, wantReasons) {
				t.Errorf("reasons = %q, want %q", after.Reasons, wantReasons)
			}
			if tc.kinds != nil {
				if got := kindCounts(changes); !reflect.DeepEqual(got, tc.kinds) {
					t.Errorf("change kinds = %v, want %v; changes:%s", got, tc.kinds, describe(changes))
				}
			}
			checkCurrent(t, after)
			in.Cluster = after
			if again := Plan(in); len(again) != 0 {
				t.Errorf("planning the applied schedule again gave changes:%s", describe(again))
			}
		})
	}
}

func TestPlanUnparseable(t *testing.T) {
	tests := []struct {
		name string
		text string
	}{
		{name: "plain text", text: "this is not a unit file\n"},
		{name: "blank", text: "  \n"},
		{name: "value ending in a backslash", text: "[Service]\nExecStart=/bin/true \\"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, perr := unit.Parse(tc.text)
			if perr == nil {
				t.Fatalf("unit.Parse(%q) succeeded; the case needs contents that do not parse", tc.text)
			}
			s := newSnap().machine(mA).raw("bad.service", unit.StateLaunched, tc.text).on("bad.service", mA)
			changes := Plan(s.input())
			after := applyChanges(t, s.c, changes)
			if got := schedule(after); len(got) != 0 {
				t.Errorf("schedule = %v, want the unit unplaced", got)
			}
			want := "unit contents cannot be parsed: " + perr.Error()
			if got := after.Reasons["bad.service"]; got != want {
				t.Errorf("reason = %q, want %q", got, want)
			}
		})
	}
}

// TestPlanUnitTooLarge: a unit larger than a placement may carry (stored
// by other means than the API, which refuses it) gets a reason and no
// placement, and is removed from where it was; the others are placed.
func TestPlanUnitTooLarge(t *testing.T) {
	big := "[Service]\nExecStart=/bin/true\n# " + strings.Repeat("x", unit.MaxContentBytes) + "\n"
	s := newSnap().machine(mA).raw("big.service", unit.StateLaunched, big).on("big.service", mA).
		raw("ok.service", unit.StateLaunched, "[Service]\nExecStart=/bin/true\n")
	after := applyChanges(t, s.c, Plan(s.input()))
	got := schedule(after)
	if _, placed := got["big.service"]; placed {
		t.Errorf("big.service placed: %v", got)
	}
	if _, placed := got["ok.service"]; !placed {
		t.Errorf("ok.service not placed beside a unit too large: %v", got)
	}
	want := fmt.Sprintf("unit is %d bytes; a placement carries at most %d", len(big), unit.MaxContentBytes)
	if r := after.Reasons["big.service"]; r != want {
		t.Errorf("reason = %q, want %q", r, want)
	}
}

// TestPlanRefusals: a machine that refused a version of a unit (it would
// replace one of the host's own) gets neither it nor its global copy; the
// unit goes elsewhere, or says why it cannot go anywhere. A refusal of
// another version does not count.
func TestPlanRefusals(t *testing.T) {
	const why = "a.service is a unit of this host (/usr/lib/systemd/user/a.service)"
	tests := []struct {
		name       string
		snap       *snap
		want       map[string][]string // unit -> machines
		wantReason string              // of a.service
	}{
		{name: "placed on the machine that did not refuse",
			snap: newSnap().machine(mA).machine(mB).unit("a.service", unit.StateLaunched).refused("a.service", mA, why),
			want: map[string][]string{"a.service": {mB}}},
		{name: "moved off the machine that refused it",
			snap: newSnap().machine(mA).machine(mB).unit("a.service", unit.StateLaunched).on("a.service", mA).
				refused("a.service", mA, why),
			want: map[string][]string{"a.service": {mB}}},
		{name: "every machine refused",
			snap: newSnap().machine(mA).machine(mB).unit("a.service", unit.StateLaunched).
				refused("a.service", mA, why).refused("a.service", mB, why),
			want: map[string][]string{}, wantReason: "machine " + mA + " refused it: " + why},
		{name: "a refusal of another version does not count",
			snap: newSnap().machine(mA).unit("a.service", unit.StateLaunched).refused("a.service", mA, why, unit.HashOf("old")),
			want: map[string][]string{"a.service": {mA}}},
		{name: "a global unit skips the machine that refused it",
			snap: newSnap().machine(mA).machine(mB).unit("a.service", unit.StateLaunched, "Global=true").
				refused("a.service", mA, why),
			want: map[string][]string{"a.service": {mB}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			after := applyChanges(t, tc.snap.c, Plan(tc.snap.input()))
			got := schedule(after)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("schedule = %v, want %v", got, tc.want)
			}
			if r := after.Reasons["a.service"]; r != tc.wantReason {
				t.Errorf("reason = %q, want %q", r, tc.wantReason)
			}
		})
	}
}

func TestPlanMaxMoves(t *testing.T) {
	tests := []struct {
		name     string
		maxMoves int
		rounds   []int // units moved off the lost machine per round
	}{
		{name: "unbounded", maxMoves: 0, rounds: []int{5}},
		{name: "two per round", maxMoves: 2, rounds: []int{2, 2, 1}},
		{name: "bound above need", maxMoves: 9, rounds: []int{5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSnap().machine(mB).machine(mC).gone(mA, time.Hour)
			for i := range 5 {
				name := fmt.Sprintf("u%d.service", i)
				s.unit(name, unit.StateLaunched).on(name, mA)
			}
			c := s.c
			for round, want := range tc.rounds {
				in := s.input()
				in.Cluster, in.MaxMoves = c, tc.maxMoves
				changes := Plan(in)
				kinds := kindCounts(changes)
				if kinds[Unplace] != want || kinds[Place] != want || len(changes) != 2*want {
					t.Fatalf("round %d: changes %v, want %d unplace and %d place:%s", round, kinds, want, want, describe(changes))
				}
				c = applyChanges(t, c, changes)
			}
			in := s.input()
			in.Cluster, in.MaxMoves = c, tc.maxMoves
			if again := Plan(in); len(again) != 0 {
				t.Errorf("after %d rounds still changes:%s", len(tc.rounds), describe(again))
			}
			counts := map[string]int{}
			for name, ms := range schedule(c) {
				if len(ms) != 1 {
					t.Errorf("%s placed on %v", name, ms)
				}
				counts[ms[0]]++
			}
			if counts[mA] != 0 || counts[mB]+counts[mC] != 5 || max(counts[mB], counts[mC])-min(counts[mB], counts[mC]) > 1 {
				t.Errorf("final spread %v, want 5 units over B and C, differing by at most one", counts)
			}
		})
	}
}

// randomCluster generates a cluster of a few machines with random
// metadata, some lost or absent ones holding placements, and units with
// random requirements that pass File.Validate, randomly placed.
func randomCluster(r *rand.Rand) *snap {
	s := newSnap()
	regions := []string{"us", "eu", "ap"}
	var live, all []string
	for range 1 + r.IntN(4) {
		id := fmt.Sprintf("%016x%016x", r.Uint64(), r.Uint64())
		var md []string
		if r.IntN(4) > 0 {
			md = append(md, "region="+regions[r.IntN(len(regions))])
		}
		if r.IntN(2) == 0 {
			md = append(md, "disk="+[]string{"ssd", "hdd"}[r.IntN(2)])
		}
		s.machine(id, md...)
		live = append(live, id)
	}
	all = append(all, live...)
	for range r.IntN(3) {
		id := fmt.Sprintf("%016x%016x", r.Uint64(), r.Uint64())
		all = append(all, id)
		switch r.IntN(3) {
		case 0:
			s.gone(id, 10*time.Second) // within grace
		case 1:
			s.gone(id, time.Hour) // lost
		}
	}
	n := r.IntN(12)
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("u%d.service", i)
	}
	states := []unit.FleetState{unit.StateInactive, unit.StateLoaded, unit.StateLaunched, unit.StateLaunched}
	for _, name := range names {
		desired := states[r.IntN(len(states))]
		if r.IntN(30) == 0 {
			s.raw(name, desired, "not a unit file\n")
			continue
		}
		var text string
		for {
			text = unitText(name, randomRequirements(r, names, live)...)
			f, err := unit.Parse(text)
			if err == nil && f.Validate() == nil {
				break
			}
		}
		s.raw(name, desired, text)
	}
	// Submission order unrelated to names.
	for i, p := range r.Perm(n) {
		u := s.c.Units[names[i]]
		u.Seq = int64(p + 1)
		s.c.Units[names[i]] = u
	}
	for _, name := range names {
		u := s.c.Units[name]
		if u.Global {
			for _, m := range all {
				if r.IntN(2) == 0 {
					s.on(name, m)
				}
			}
		} else if r.IntN(2) == 0 && len(all) > 0 {
			s.on(name, all[r.IntN(len(all))])
		}
		if r.IntN(5) == 0 {
			s.reason(name, "a stale reason")
		}
	}
	return s
}

func randomRequirements(r *rand.Rand, names, live []string) []string {
	pick := func() string {
		if len(names) == 0 || r.IntN(8) == 0 {
			return "missing.service"
		}
		return names[r.IntN(len(names))]
	}
	var lines []string
	if r.IntN(10) == 0 {
		switch id := live[r.IntN(len(live))]; r.IntN(3) {
		case 0:
			lines = append(lines, "MachineID="+id)
		case 1:
			lines = append(lines, "MachineID="+unit.ShortID(id))
		default:
			lines = append(lines, "MachineID=0123456789abcdef0123456789abcdef")
		}
	}
	if r.IntN(3) == 0 {
		lines = append(lines, "MachineMetadata=region="+[]string{"us", "eu", "ap"}[r.IntN(3)])
		if r.IntN(2) == 0 {
			lines = append(lines, "MachineMetadata=region="+[]string{"us", "eu", "ap"}[r.IntN(3)])
		}
		if r.IntN(3) == 0 {
			lines = append(lines, "MachineMetadata=disk=ssd")
		}
	}
	if r.IntN(5) == 0 {
		lines = append(lines, "MachineOf="+pick())
	}
	if r.IntN(5) == 0 {
		if r.IntN(3) == 0 {
			lines = append(lines, "Conflicts=u1*")
		} else {
			lines = append(lines, "Conflicts="+pick())
		}
	}
	if r.IntN(8) == 0 {
		lines = append(lines, "Global=true")
	}
	if r.IntN(8) == 0 {
		lines = append(lines, "Replaces="+pick())
	}
	return lines
}

// checkSchedule reports placements on live machines that break a
// requirement, placements of units that must have none, placements on lost
// machines, and non-global units on several machines.
func checkSchedule(t *testing.T, in Input, c unit.Cluster) {
	t.Helper()
	reqs := map[string]unit.Requirements{}
	for name, u := range c.Units {
		r, err := in.Reqs(u)
		if err != nil {
			if len(c.Placements[name]) > 0 {
				t.Errorf("%s: unparseable unit placed on %d machines", name, len(c.Placements[name]))
			}
			continue
		}
		reqs[name] = r
	}
	for name, pm := range c.Placements {
		u, ok := c.Units[name]
		if !ok || u.Desired == unit.StateInactive {
			if len(pm) > 0 {
				t.Errorf("%s: placed but unknown or desired inactive", name)
			}
			continue
		}
		if !u.Global && len(pm) > 1 {
			t.Errorf("%s: non-global unit placed on %d machines", name, len(pm))
		}
		r := reqs[name]
		for mid := range pm {
			m, live := c.Machines[mid]
			if !live {
				since, absent := in.Absent[mid]
				if !absent || in.Now.Sub(since) >= in.Grace {
					t.Errorf("%s: placed on lost machine %s", name, unit.ShortID(mid))
				}
				continue
			}
			if r.MachineID != "" && !unit.MatchMachineID(r.MachineID, mid) {
				t.Errorf("%s: on %s despite MachineID=%s", name, unit.ShortID(mid), r.MachineID)
			}
			if !r.MatchesMetadata(m.Metadata) {
				t.Errorf("%s: on %s whose metadata %v does not match %v", name, unit.ShortID(mid), m.Metadata, r.Metadata)
			}
			for _, peer := range r.MachineOf {
				if _, ok := c.Placements[peer][mid]; !ok {
					t.Errorf("%s: on %s without its MachineOf peer %s", name, unit.ShortID(mid), peer)
				}
			}
			for other, opm := range c.Placements {
				if _, ok := opm[mid]; !ok || other == name {
					continue
				}
				if unit.ConflictsWith(name, r, other, reqs[other]) {
					t.Errorf("%s: shares %s with conflicting %s", name, unit.ShortID(mid), other)
				}
			}
		}
	}
}

// testSeed is the seed of a property test: FLEET_TEST_SEED if set (to
// replay a failure), else the clock. It is logged either way.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("FLEET_TEST_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("FLEET_TEST_SEED=%q: %v", v, err)
		}
		seed = s
	}
	t.Logf("seed %d (replay with FLEET_TEST_SEED=%d)", seed, seed)
	return seed
}

// dumpCluster describes a snapshot for a failure message.
func dumpCluster(in Input) string {
	var b strings.Builder
	c := in.Cluster
	for _, id := range slices.Sorted(maps.Keys(c.Machines)) {
		fmt.Fprintf(&b, "\n  machine %s %v", unit.ShortID(id), c.Machines[id].Metadata)
	}
	for id, since := range in.Absent {
		fmt.Fprintf(&b, "\n  absent %s for %v", unit.ShortID(id), in.Now.Sub(since))
	}
	for _, name := range slices.Sorted(maps.Keys(c.Units)) {
		u := c.Units[name]
		r, err := in.Reqs(u)
		var on []string
		for mid := range c.Placements[name] {
			on = append(on, unit.ShortID(mid))
		}
		slices.Sort(on)
		fmt.Fprintf(&b, "\n  unit %s seq=%d %s global=%v on=%v reason=%q reqs=%+v err=%v",
			name, u.Seq, u.Desired, u.Global, on, c.Reasons[name], r, err)
	}
	return b.String()
}

func TestPlanProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 0x5eed))
	for i := range 200 {
		s := randomCluster(r)
		in := s.input()
		changes := Plan(in)
		after := applyChanges(t, in.Cluster, changes)
		t.Run(fmt.Sprintf("cluster %d", i), func(t *testing.T) {
			t.Run("requirements hold", func(t *testing.T) {
				checkSchedule(t, in, after)
				if t.Failed() {
					t.Logf("first plan:%s\ncluster:%s", describe(changes), dumpCluster(in))
				}
			})
			t.Run("deterministic", func(t *testing.T) {
				for range 3 {
					if again := Plan(in); !reflect.DeepEqual(again, changes) {
						t.Fatalf("second plan differs:%s\nfirst:%s", describe(again), describe(changes))
					}
				}
			})
			t.Run("applied plan is stable", func(t *testing.T) {
				next := in
				next.Cluster = after
				if again := Plan(next); len(again) != 0 {
					t.Errorf("replanning gave changes:%s\nfirst plan:%s\ncluster:%s", describe(again), describe(changes), dumpCluster(in))
				}
			})
			t.Run("an empty machine joining moves nothing", func(t *testing.T) {
				next := in
				next.Cluster = cloneCluster(after)
				id := fmt.Sprintf("%016x%016x", r.Uint64(), r.Uint64())
				next.Cluster.Machines[id] = unit.Machine{ID: id, Metadata: map[string]string{}}
				for _, ch := range Plan(next) {
					if ch.Kind == Unplace {
						t.Errorf("unplace %s from %s after machine %s joined\ncluster:%s",
							ch.Placement.Unit, unit.ShortID(ch.Placement.Machine), unit.ShortID(id), dumpCluster(next))
					}
				}
			})
			t.Run("placements are current", func(t *testing.T) {
				for _, ch := range changes {
					if ch.Kind != Place && ch.Kind != Update {
						continue
					}
					u := in.Cluster.Units[ch.Placement.Unit]
					if ch.Placement.Hash != u.Hash || ch.Placement.Desired != u.Desired || ch.Placement.Content != u.Content {
						t.Errorf("%v %s carries stale contents or desired state", ch.Kind, ch.Placement.Unit)
					}
				}
			})
		})
	}
}

func TestPlanSpreadsUnconstrainedUnits(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 0xbeef))
	states := []unit.FleetState{unit.StateInactive, unit.StateLoaded, unit.StateLaunched}
	for i := range 200 {
		s := newSnap()
		machines := 1 + r.IntN(6)
		for range machines {
			s.machine(fmt.Sprintf("%016x%016x", r.Uint64(), r.Uint64()))
		}
		units := r.IntN(30)
		for j := range units {
			s.unit(fmt.Sprintf("svc-%d.service", j), states[r.IntN(len(states))])
		}
		changes := Plan(s.input())
		after := applyChanges(t, s.c, changes)
		counts := map[string]int{}
		for id := range s.c.Machines {
			counts[id] = 0
		}
		placed := 0
		for name, ms := range schedule(after) {
			if len(ms) != 1 {
				t.Errorf("cluster %d: %s placed on %d machines", i, name, len(ms))
			}
			for _, m := range ms {
				counts[m]++
				placed++
			}
		}
		wantPlaced := 0
		for _, u := range s.c.Units {
			if u.Desired != unit.StateInactive {
				wantPlaced++
			}
		}
		lo, hi := slices.Min(slices.Collect(maps.Values(counts))), slices.Max(slices.Collect(maps.Values(counts)))
		if placed != wantPlaced || hi-lo > 1 {
			t.Errorf("cluster %d: %d of %d units placed, per-machine counts %v", i, placed, wantPlaced, counts)
		}
	}
}
