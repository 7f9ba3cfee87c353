package engine

import (
	"cmp"
	"container/heap"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/fleet-next/fleet/unit"
)

// ChangeKind is what a Change does to the schedule.
type ChangeKind int

// The kinds of schedule change.
const (
	Place       ChangeKind = iota + 1 // add a placement
	Update                            // rewrite a placement (new contents or desired state)
	Unplace                           // remove a placement
	SetReason                         // record why a unit cannot be placed
	ClearReason                       // the unit is placed (or no longer wants to be)
)

func (k ChangeKind) String() string {
	switch k {
	case Place:
		return "place"
	case Update:
		return "update"
	case Unplace:
		return "unplace"
	case SetReason:
		return "set-reason"
	case ClearReason:
		return "clear-reason"
	}
	return fmt.Sprintf("ChangeKind(%d)", int(k))
}

// Change is one typed action of a plan.
type Change struct {
	Kind      ChangeKind
	Placement unit.Placement // Place, Update, Unplace
	Unit      string         // SetReason, ClearReason
	Reason    string         // SetReason; for Unplace, why
}

// RequirementsFunc resolves a unit's [X-Fleet] requirements. It returns an
// error for a unit whose contents cannot be parsed.
type RequirementsFunc func(u unit.Unit) (unit.Requirements, error)

// Input is everything one scheduling decision depends on.
type Input struct {
	Cluster unit.Cluster
	// Now and Absent implement the loss grace: a machine that holds
	// placements but is not live is only considered lost once it has been
	// absent for Grace. Until then its placements stay and nothing new goes
	// there, so a store outage or a restart never moves units.
	Now    time.Time
	Absent map[string]time.Time // machine ID -> first seen absent
	Grace  time.Duration
	Reqs   RequirementsFunc
	// MaxMoves bounds how many placements of lost machines are moved in one
	// plan (0 = unbounded); the rest wait for the next round.
	MaxMoves int
}

// Reasons a unit cannot be placed. They are shown to users verbatim.
const (
	ReasonNoMachines    = "no live machines"
	reasonUnparseable   = "unit contents cannot be parsed: %v"
	reasonMachineID     = "MachineID %s is not a live machine"
	reasonMetadata      = "no live machine matches MachineMetadata %s"
	reasonPeerNotPlaced = "MachineOf %s, which is not scheduled"
	reasonConflicts     = "conflicts with %s on every candidate machine"
	reasonNoCandidate   = "no machine can take it (MachineID, MachineMetadata, MachineOf and Conflicts combined)"
	reasonPeerCycle     = "MachineOf requirements form a cycle"
	reasonPeerReplaced  = "MachineOf requirements lead to %s, which it replaces"
	reasonTooLarge      = "unit is %d bytes; a placement carries at most %d"
	reasonRefused       = "machine %s refused it: %s"
)

type candidate struct {
	u     unit.Unit
	reqs  unit.Requirements
	err   error
	unsat bool // err is a contradiction in the requirements, not a parse error
	// refused are the machines that refused this version of the unit, with
	// their reasons.
	refused map[string]string
}

// machineState tracks what the plan puts on one machine.
type machineState struct {
	m     unit.Machine
	units map[string]*candidate // accepted units by name
	// special holds the accepted units with Conflicts or Replaces: the
	// only ones a unit without Conflicts can conflict with.
	special map[string]*candidate
	byLoad  *loadHeap // the heap of all live machines ms is in
	idx     int       // ms's position in byLoad
}

func (ms *machineState) accept(cd *candidate) {
	ms.units[cd.u.Name] = cd
	if len(cd.reqs.Conflicts) > 0 || len(cd.reqs.Replaces) > 0 {
		ms.special[cd.u.Name] = cd
	}
	heap.Fix(ms.byLoad, ms.idx)
}

func (ms *machineState) remove(name string) {
	delete(ms.units, name)
	delete(ms.special, name)
	heap.Fix(ms.byLoad, ms.idx)
}

// loadHeap orders machines by accepted units, then machine ID: the order
// in which the scheduler prefers them.
type loadHeap []*machineState

func (h loadHeap) Len() int { return len(h) }
func (h loadHeap) Less(i, j int) bool {
	if li, lj := len(h[i].units), len(h[j].units); li != lj {
		return li < lj
	}
	return h[i].m.ID < h[j].m.ID
}
func (h loadHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *loadHeap) Push(x any) {
	ms := x.(*machineState)
	ms.idx = len(*h)
	*h = append(*h, ms)
}
func (h *loadHeap) Pop() any {
	old := *h
	ms := old[len(old)-1]
	*h = old[:len(old)-1]
	return ms
}

// first returns the first machine in heap order that ok accepts, or nil:
// the same machine leastLoaded picks, found by visiting machines in order
// of load only until one is accepted.
func (h loadHeap) first(ok func(*machineState) bool) *machineState {
	if len(h) == 0 {
		return nil
	}
	frontier := &heapPositions{h: h, pos: []int{0}}
	for frontier.Len() > 0 {
		i := heap.Pop(frontier).(int)
		if ok(h[i]) {
			return h[i]
		}
		for _, c := range [2]int{2*i + 1, 2*i + 2} {
			if c < len(h) {
				heap.Push(frontier, c)
			}
		}
	}
	return nil
}

// heapPositions is a heap of positions in a loadHeap, in its order.
type heapPositions struct {
	h   loadHeap
	pos []int
}

func (p *heapPositions) Len() int           { return len(p.pos) }
func (p *heapPositions) Less(i, j int) bool { return p.h.Less(p.pos[i], p.pos[j]) }
func (p *heapPositions) Swap(i, j int)      { p.pos[i], p.pos[j] = p.pos[j], p.pos[i] }
func (p *heapPositions) Push(x any)         { p.pos = append(p.pos, x.(int)) }
func (p *heapPositions) Pop() any {
	x := p.pos[len(p.pos)-1]
	p.pos = p.pos[:len(p.pos)-1]
	return x
}

// planRounds bounds how often Plan re-plans its own result.
const planRounds = 8

// Plan computes the changes that bring the schedule in line with the units'
// desired states and requirements. It is a pure function of its input:
// iteration is always in a fixed order, so the same input gives the same
// plan. Existing valid placements are kept (no churn); only units without a
// valid placement are placed, each on the least-loaded machine that
// satisfies its requirements, ties broken by machine ID.
//
// One round decides units one after another, so a later decision (a
// Replaces eviction, a unit placed after another was refused) can leave an
// earlier one stale. Plan therefore plans its own result again until
// nothing changes, so that planning the applied result yields no changes.
func Plan(in Input) []Change {
	budget := -1 // moves left; -1 is unbounded
	if in.MaxMoves > 0 {
		budget = in.MaxMoves
	}
	cur := in.Cluster
	var desired map[string]map[string]unit.Placement
	var reasons map[string]string
	for range planRounds {
		var moves int
		desired, reasons, moves = planRound(in, cur, budget)
		if budget >= 0 {
			budget = max(0, budget-moves)
		}
		if samePlacements(desired, cur.Placements) && maps.Equal(reasons, cur.Reasons) {
			break
		}
		cur.Placements, cur.Reasons = desired, reasons
	}
	return diff(in.Cluster, desired, reasons)
}

// planRound is one pass over the units against schedule c. budget is how
// many placements may still move (-1 unbounded); it returns the desired
// schedule, the reasons and the number of moves made. Its passes, in
// order: keep what is still valid (units following global units after the
// globals), place global units, place everything else.
func planRound(in Input, c unit.Cluster, budget int) (map[string]map[string]unit.Placement, map[string]string, int) {
	r := newRound(in, c, budget)
	afterGlobals := followersOfGlobals(r.cands)
	for _, cd := range r.cands {
		if r.active(cd) && !cd.u.Global && !afterGlobals[cd.u.Name] {
			r.keepValid(cd)
		}
	}
	r.placeGlobals()
	for _, cd := range r.cands {
		if r.active(cd) && afterGlobals[cd.u.Name] {
			r.keepValid(cd)
		}
	}
	r.placeRest()
	return r.desired, r.reasons, r.moves
}

// round is the state of one planRound.
type round struct {
	c       unit.Cluster
	live    map[string]*machineState             // live machines by ID
	order   []*machineState                      // live machines by ID
	held    map[string]bool                      // absent machines (within grace) whose placements are kept
	cands   []*candidate                         // units in dependency, then submission order
	budget  int                                  // moves allowed (-1 unbounded)
	desired map[string]map[string]unit.Placement // unit -> machine -> placement
	reasons map[string]string
	moves   int
}

// newRound sets up the machines: live ones take units; absent ones within
// grace keep theirs.
func newRound(in Input, c unit.Cluster, budget int) *round {
	r := &round{c: c, live: make(map[string]*machineState, len(c.Machines)),
		order: make([]*machineState, 0, len(c.Machines)), held: make(map[string]bool), budget: budget,
		desired: make(map[string]map[string]unit.Placement), reasons: make(map[string]string)}
	byLoad := make(loadHeap, 0, len(c.Machines))
	for _, id := range sortedKeys(c.Machines) {
		ms := &machineState{m: c.Machines[id], units: map[string]*candidate{}, special: map[string]*candidate{},
			byLoad: &byLoad, idx: len(byLoad)}
		r.live[id] = ms
		r.order = append(r.order, ms)
		byLoad = append(byLoad, ms) // sorted by ID at equal load: already a heap
	}
	for id, since := range in.Absent {
		if _, ok := r.live[id]; !ok && in.Now.Sub(since) < in.Grace {
			r.held[id] = true
		}
	}
	r.cands = orderCandidates(c.Units, in.Reqs)
	for _, cd := range r.cands {
		for mid, ref := range c.Refused[cd.u.Name] {
			if ref.Hash == cd.u.Hash {
				if cd.refused == nil {
					cd.refused = map[string]string{}
				}
				cd.refused[mid] = ref.Reason
			}
		}
	}
	return r
}

// active reports whether cd is a unit to place: it parses and is not inactive.
func (r *round) active(cd *candidate) bool {
	return cd.err == nil && cd.u.Desired != unit.StateInactive
}

func (r *round) placeOn(cd *candidate, ms *machineState) {
	ms.accept(cd)
	if r.desired[cd.u.Name] == nil {
		r.desired[cd.u.Name] = map[string]unit.Placement{}
	}
	r.desired[cd.u.Name][ms.m.ID] = unit.Placement{Unit: cd.u.Name, Machine: ms.m.ID, Hash: cd.u.Hash,
		Desired: cd.u.Desired, Content: cd.u.Content}
}

// keepHeld keeps a placement on an absent machine within grace, updated to
// the unit's current contents and desired state.
func (r *round) keepHeld(p unit.Placement, cd *candidate) {
	if r.desired[cd.u.Name] == nil {
		r.desired[cd.u.Name] = map[string]unit.Placement{}
	}
	p.Hash, p.Desired, p.Content = cd.u.Hash, cd.u.Desired, cd.u.Content
	r.desired[cd.u.Name][p.Machine] = p
}

// keepValid keeps cd's existing placement if it is still valid.
func (r *round) keepValid(cd *candidate) {
	name := cd.u.Name
	for _, mid := range sortedKeys(r.c.Placements[name]) {
		if r.held[mid] {
			r.keepHeld(r.c.Placements[name][mid], cd)
			break
		}
		ms, ok := r.live[mid]
		if !ok || len(r.desired[name]) > 0 {
			continue
		}
		if ableToRun(cd, ms, r.live) == "" && replacedOn(cd, ms) == "" {
			r.placeOn(cd, ms)
		}
	}
}

// placeGlobals places global units on every live machine they fit, in
// submission order, and keeps them on held machines.
func (r *round) placeGlobals() {
	for _, cd := range r.cands {
		if !r.active(cd) || !cd.u.Global {
			continue
		}
		for _, ms := range r.order {
			if cd.reqs.MatchesMetadata(ms.m.Metadata) && cd.refused[ms.m.ID] == "" && conflictOn(cd, ms) == "" {
				r.placeOn(cd, ms)
			}
		}
		for mid, p := range r.c.Placements[cd.u.Name] {
			if r.held[mid] {
				r.keepHeld(p, cd)
			}
		}
	}
}

// placeRest places every non-global unit that has no valid placement, in
// dependency then submission order, or records why it cannot be placed.
func (r *round) placeRest() {
	for _, cd := range r.cands {
		name := cd.u.Name
		switch {
		case cd.u.Desired == unit.StateInactive || cd.u.Global:
			continue
		case cd.unsat:
			r.reasons[name] = cd.err.Error()
			continue
		case cd.err != nil:
			r.reasons[name] = fmt.Sprintf(reasonUnparseable, cd.err)
			continue
		case len(r.desired[name]) > 0:
			continue
		}
		wasPlaced := len(r.c.Placements[name]) > 0
		if wasPlaced && r.budget >= 0 && r.moves >= r.budget {
			// Keep the old placement record until a later round moves it.
			for mid, p := range r.c.Placements[name] {
				if r.desired[name] == nil {
					r.desired[name] = map[string]unit.Placement{}
				}
				r.desired[name][mid] = p
			}
			continue
		}
		best, why := pickMachine(cd, r.live, r.order)
		if best == nil {
			r.reasons[name] = why
			continue
		}
		if wasPlaced {
			r.moves++
		}
		r.placeOn(cd, best)
		r.displaceReplaced(cd, best)
	}
}

// displaceReplaced moves the units on best that cd replaces elsewhere.
func (r *round) displaceReplaced(cd *candidate, best *machineState) {
	if len(cd.reqs.Replaces) == 0 {
		return
	}
	name := cd.u.Name
	for _, other := range sortedKeys(best.units) {
		oc := best.units[other]
		if other == name || !cd.reqs.ReplacesUnit(other) || oc.reqs.ReplacesUnit(name) {
			continue
		}
		best.remove(other)
		delete(r.desired[other], best.m.ID)
		dest := leastLoaded(r.order, func(ms *machineState) bool {
			return ms != best && ableToRun(oc, ms, r.live) == "" && replacedOn(oc, ms) == ""
		})
		if dest != nil {
			r.placeOn(oc, dest)
		} else {
			r.reasons[other] = fmt.Sprintf("replaced by %s and no other machine can take it", name)
		}
	}
}

// samePlacements compares schedules, ignoring units with no placement.
func samePlacements(a, b map[string]map[string]unit.Placement) bool {
	for name, pm := range a {
		if !maps.Equal(pm, b[name]) {
			return false
		}
	}
	for name, pm := range b {
		if _, ok := a[name]; !ok && len(pm) > 0 {
			return false
		}
	}
	return true
}

// orderCandidates sorts units so that MachineOf peers come before their
// followers and otherwise by submission order, then name.
func orderCandidates(units map[string]unit.Unit, reqs RequirementsFunc) []*candidate {
	all := make([]*candidate, 0, len(units))
	for _, u := range units {
		cd := &candidate{u: u}
		if reqs != nil {
			cd.reqs, cd.err = reqs(u)
		}
		if len(u.Content) > unit.MaxContentBytes {
			// Refused at submission; one stored by other means must never
			// make a schedule write etcd refuses.
			cd.err, cd.unsat = fmt.Errorf(reasonTooLarge, len(u.Content), unit.MaxContentBytes), true
		}
		all = append(all, cd)
	}
	slices.SortFunc(all, func(a, b *candidate) int {
		return cmp.Or(cmp.Compare(a.u.Seq, b.u.Seq), strings.Compare(a.u.Name, b.u.Name))
	})
	byName := make(map[string]*candidate, len(all))
	for _, cd := range all {
		byName[cd.u.Name] = cd
	}
	out := make([]*candidate, 0, len(all))
	state := make(map[string]int) // 0 new, 1 visiting, 2 done
	var visit func(cd *candidate)
	visit = func(cd *candidate) {
		switch state[cd.u.Name] {
		case 1:
			cd.err, cd.unsat = fmt.Errorf("%s", reasonPeerCycle), true
			return
		case 2:
			return
		}
		state[cd.u.Name] = 1
		for _, peer := range cd.reqs.MachineOf {
			if p, ok := byName[peer]; ok {
				visit(p)
				if p.unsat {
					cd.err, cd.unsat = p.err, true
				}
			}
		}
		state[cd.u.Name] = 2
		out = append(out, cd)
	}
	for _, cd := range all {
		visit(cd)
	}
	// A unit that must share a machine with a unit it replaces would evict
	// its own peer: it can never be placed.
	for _, cd := range out {
		if cd.err != nil || len(cd.reqs.Replaces) == 0 {
			continue
		}
		for _, peer := range peerClosure(cd, byName) {
			if cd.reqs.ReplacesUnit(peer) {
				cd.err, cd.unsat = fmt.Errorf(reasonPeerReplaced, peer), true
				break
			}
		}
	}
	return out
}

// peerClosure lists, sorted, the units cd must share a machine with:
// its MachineOf peers, theirs, and so on.
func peerClosure(cd *candidate, byName map[string]*candidate) []string {
	seen := make(map[string]bool)
	queue := slices.Clone(cd.reqs.MachineOf)
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if seen[name] || name == cd.u.Name {
			continue
		}
		seen[name] = true
		if p, ok := byName[name]; ok {
			queue = append(queue, p.reqs.MachineOf...)
		}
	}
	return sortedKeys(seen)
}

// followersOfGlobals names the non-global units with a MachineOf peer that
// is global or itself such a follower. cands is in dependency order.
func followersOfGlobals(cands []*candidate) map[string]bool {
	global := make(map[string]bool)
	for _, cd := range cands {
		if cd.u.Global {
			global[cd.u.Name] = true
		}
	}
	out := make(map[string]bool)
	for _, cd := range cands {
		if cd.u.Global {
			continue
		}
		for _, peer := range cd.reqs.MachineOf {
			if global[peer] || out[peer] {
				out[cd.u.Name] = true
			}
		}
	}
	return out
}

// ableToRun returns "" if cd may run on ms, else why not.
func ableToRun(cd *candidate, ms *machineState, live map[string]*machineState) string {
	r := cd.reqs
	if r.MachineID != "" && !unit.MatchMachineID(r.MachineID, ms.m.ID) {
		return fmt.Sprintf(reasonMachineID, r.MachineID)
	}
	if !r.MatchesMetadata(ms.m.Metadata) {
		return fmt.Sprintf(reasonMetadata, formatMetadata(r.Metadata))
	}
	for _, peer := range r.MachineOf {
		if _, ok := ms.units[peer]; !ok {
			return fmt.Sprintf(reasonPeerNotPlaced, peer)
		}
	}
	if why := cd.refused[ms.m.ID]; why != "" {
		return fmt.Sprintf(reasonRefused, ms.m.ID, why)
	}
	return conflictOn(cd, ms)
}

// conflictOn returns "" if cd conflicts with nothing accepted on ms, else
// names the first conflicting unit in name order. Without Conflicts of its
// own, cd can only conflict with units that have Conflicts or Replaces.
func conflictOn(cd *candidate, ms *machineState) string {
	scan := ms.special
	if len(cd.reqs.Conflicts) > 0 {
		scan = ms.units
	}
	first := ""
	for name, other := range scan {
		if name == cd.u.Name || (first != "" && name > first) || cd.reqs.ReplacesUnit(name) {
			continue
		}
		// A unit never joins a machine whose unit replaces it; mutual
		// replacement is ignored (the check above lets it through).
		if other.reqs.ReplacesUnit(cd.u.Name) || unit.ConflictsWith(cd.u.Name, cd.reqs, name, other.reqs) {
			first = name
		}
	}
	if first == "" {
		return ""
	}
	return fmt.Sprintf(reasonConflicts, first)
}

// replacedOn returns "" unless ms holds a unit that cd replaces (and that
// does not replace cd in turn), else names the first in name order.
// conflictOn lets cd onto such a machine because placing it there evicts
// the replaced unit (displaceReplaced); where cd stays or is moved without
// evicting anything (keepValid, displaceReplaced's own relocations), the two
// must not share the machine.
func replacedOn(cd *candidate, ms *machineState) string {
	if len(cd.reqs.Replaces) == 0 {
		return ""
	}
	first := ""
	for name, other := range ms.units {
		if name == cd.u.Name || (first != "" && name > first) {
			continue
		}
		if cd.reqs.ReplacesUnit(name) && !other.reqs.ReplacesUnit(cd.u.Name) {
			first = name
		}
	}
	if first == "" {
		return ""
	}
	return fmt.Sprintf(reasonConflicts, first)
}

// pickMachine returns the least-loaded live machine cd can run on, or the
// most telling reason none can. order is live sorted by machine ID.
func pickMachine(cd *candidate, live map[string]*machineState, order []*machineState) (*machineState, string) {
	if len(live) == 0 {
		return nil, ReasonNoMachines
	}
	var best *machineState
	if r := cd.reqs; r.MachineID == "" && len(r.Metadata) == 0 && len(r.MachineOf) == 0 && len(r.Conflicts) == 0 {
		// Only a conflict can rule a machine out: try machines in order of
		// load until one takes it.
		best = order[0].byLoad.first(func(ms *machineState) bool { return cd.refused[ms.m.ID] == "" && conflictOn(cd, ms) == "" })
	} else {
		best = leastLoaded(order, func(ms *machineState) bool { return ableToRun(cd, ms, live) == "" })
	}
	if best != nil {
		return best, ""
	}
	// Explain: the first requirement that rules out every machine.
	r := cd.reqs
	anyMatch := func(f func(ms *machineState) bool) bool {
		for _, ms := range live {
			if f(ms) {
				return true
			}
		}
		return false
	}
	switch {
	case r.MachineID != "" && !anyMatch(func(ms *machineState) bool { return unit.MatchMachineID(r.MachineID, ms.m.ID) }):
		return nil, fmt.Sprintf(reasonMachineID, r.MachineID)
	case !anyMatch(func(ms *machineState) bool { return r.MatchesMetadata(ms.m.Metadata) }):
		return nil, fmt.Sprintf(reasonMetadata, formatMetadata(r.Metadata))
	}
	for _, peer := range r.MachineOf {
		if !anyMatch(func(ms *machineState) bool { _, ok := ms.units[peer]; return ok }) {
			return nil, fmt.Sprintf(reasonPeerNotPlaced, peer)
		}
	}
	// Conflicts explain it when every machine that meets the other
	// requirements is ruled out by a conflict.
	var conflicting, refusals []string
	candidates := 0
	for _, ms := range order {
		if r.MachineID != "" && !unit.MatchMachineID(r.MachineID, ms.m.ID) || !r.MatchesMetadata(ms.m.Metadata) {
			continue
		}
		peersHere := true
		for _, peer := range r.MachineOf {
			if _, ok := ms.units[peer]; !ok {
				peersHere = false
				break
			}
		}
		if !peersHere {
			continue
		}
		candidates++
		if why := cd.refused[ms.m.ID]; why != "" {
			refusals = append(refusals, fmt.Sprintf(reasonRefused, ms.m.ID, why))
		} else if why := conflictOn(cd, ms); why != "" {
			conflicting = append(conflicting, strings.TrimPrefix(why, "conflicts with "))
		}
	}
	if candidates > 0 && len(refusals) == candidates {
		return nil, refusals[0]
	}
	if candidates > 0 && len(conflicting) == candidates {
		names := map[string]bool{}
		for _, s := range conflicting {
			names[strings.TrimSuffix(s, " on every candidate machine")] = true
		}
		return nil, fmt.Sprintf(reasonConflicts, strings.Join(sortedKeys(names), ", "))
	}
	return nil, reasonNoCandidate
}

// leastLoaded returns the machine with the fewest accepted units among those
// ok accepts, ties broken by machine ID (order is sorted by ID); nil if none.
func leastLoaded(order []*machineState, ok func(*machineState) bool) *machineState {
	var best *machineState
	for _, ms := range order {
		if !ok(ms) {
			continue
		}
		if best == nil || len(ms.units) < len(best.units) {
			best = ms
		}
	}
	return best
}

// diff turns the desired schedule into changes against the current one.
func diff(c unit.Cluster, desired map[string]map[string]unit.Placement, reasons map[string]string) []Change {
	var out []Change
	for _, name := range sortedKeys(c.Placements) {
		for _, mid := range sortedKeys(c.Placements[name]) {
			if _, keep := desired[name][mid]; !keep {
				out = append(out, Change{Kind: Unplace, Placement: c.Placements[name][mid]})
			}
		}
	}
	for _, name := range sortedKeys(desired) {
		for _, mid := range sortedKeys(desired[name]) {
			p := desired[name][mid]
			old, had := c.Placements[name][mid]
			switch {
			case !had:
				out = append(out, Change{Kind: Place, Placement: p})
			case old.Hash != p.Hash || old.Desired != p.Desired:
				out = append(out, Change{Kind: Update, Placement: p})
			}
		}
	}
	for _, name := range sortedKeys(reasons) {
		if c.Reasons[name] != reasons[name] {
			out = append(out, Change{Kind: SetReason, Unit: name, Reason: reasons[name]})
		}
	}
	for _, name := range sortedKeys(c.Reasons) {
		if _, still := reasons[name]; !still {
			out = append(out, Change{Kind: ClearReason, Unit: name})
		}
	}
	return out
}

func formatMetadata(md map[string][]string) string {
	var parts []string
	for _, k := range sortedKeys(md) {
		for _, v := range md[k] {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, ",")
}

// sortedKeys is sortedKeys(m) with the slice allocated once
// at its final size: the planner calls it for every unit of every round,
// where the growing slice of the iterator form costs four times the
// allocations.
func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
