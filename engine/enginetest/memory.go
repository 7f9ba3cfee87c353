package enginetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/fleet-next/fleet/engine"
	"github.com/fleet-next/fleet/unit"
)

// errNotLeader is Apply's error once leadership has ended.
var errNotLeader = errors.New("enginetest: not the engine leader")

// Memory is a cluster held in memory: an engine.Store for each machine,
// with the writes of presence and the API. Its views reflect every change
// at once. It uses only mutexes and channels, so a test can run an engine
// on it inside a testing/synctest bubble (create it inside the bubble).
// It is safe for concurrent use.
type Memory struct {
	mu       sync.Mutex // guards the fields below
	rev      int64
	units    map[string]unit.Unit
	machines map[string]unit.Machine
	places   map[string]map[string]unit.Placement
	reasons  map[string]string
	leader   *memLeader            // nil when no engine leads
	views    map[*memView]struct{} // the views that follow the cluster
	changed  chan struct{}         // closed and replaced at every change
}

var _ Cluster = (*Memory)(nil)

// NewMemory returns an empty cluster.
func NewMemory() *Memory {
	return &Memory{
		units:    make(map[string]unit.Unit),
		machines: make(map[string]unit.Machine),
		places:   make(map[string]map[string]unit.Placement),
		reasons:  make(map[string]string),
		views:    make(map[*memView]struct{}),
		changed:  make(chan struct{}),
	}
}

// Store returns the store of the engine on machine id.
func (m *Memory) Store(id string) engine.Store { return memStore{m: m, machine: id} }

// Join makes machine id live.
func (m *Memory) Join(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.machines[id] = unit.Machine{ID: id}
	m.commit()
	return nil
}

// Leave ends machine id's presence and any leadership it holds.
func (m *Memory) Leave(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.machines[id]; !ok {
		return fmt.Errorf("machine %s is not joined", id)
	}
	delete(m.machines, id)
	if m.leader != nil && m.leader.machine == id {
		m.depose()
	}
	m.commit()
	return nil
}

// CreateUnit stores u, replacing a unit of the same name (which keeps its
// place in submission order).
func (m *Memory) CreateUnit(_ context.Context, u unit.Unit) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if u.Desired == "" {
		u.Desired = unit.StateInactive
	}
	m.rev++
	u.Seq = m.rev
	if old, ok := m.units[u.Name]; ok {
		u.Seq = old.Seq
	}
	m.units[u.Name] = u
	m.notify()
	return nil
}

// SetDesiredState changes the desired state of a stored unit.
func (m *Memory) SetDesiredState(_ context.Context, name string, s unit.FleetState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.units[name]
	if !ok {
		return fmt.Errorf("unit %q not found", name)
	}
	if u.Desired == s {
		return nil
	}
	u.Desired = s
	m.units[name] = u
	m.commit()
	return nil
}

// commit records a change of the cluster: a new revision, seen by every
// view and waiter. It must be called with mu held.
func (m *Memory) commit() {
	m.rev++
	m.notify()
}

// notify wakes the views and the waiters. It must be called with mu held.
func (m *Memory) notify() {
	m.wake()
	for v := range m.views {
		v.signal()
	}
}

// wake wakes the waiters (Campaign, WaitRevision). It must be called with
// mu held.
func (m *Memory) wake() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// depose ends the current leadership and wakes the campaigns waiting for
// it. It must be called with mu held.
func (m *Memory) depose() {
	close(m.leader.done)
	m.leader = nil
	m.wake()
}

// snapshot copies the cluster. It must be called with mu held.
func (m *Memory) snapshot() unit.Cluster {
	c := unit.Cluster{
		Units:      maps.Clone(m.units),
		Machines:   maps.Clone(m.machines),
		Placements: make(map[string]map[string]unit.Placement, len(m.places)),
		Reasons:    maps.Clone(m.reasons),
		Revision:   m.rev,
	}
	for u, pm := range m.places {
		c.Placements[u] = maps.Clone(pm)
	}
	return c
}

// wait blocks until ready (called with mu held) reports true, or ctx ends.
func (m *Memory) wait(ctx context.Context, ready func() bool) error {
	for {
		m.mu.Lock()
		ok, ch := ready(), m.changed
		m.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

type memStore struct {
	m       *Memory
	machine string
}

// Campaign waits until the machine is joined and no engine leads.
func (s memStore) Campaign(ctx context.Context, _ string) (engine.Leader, error) {
	m := s.m
	var l *memLeader
	err := m.wait(ctx, func() bool {
		if _, live := m.machines[s.machine]; !live || m.leader != nil {
			return false
		}
		l = &memLeader{m: m, machine: s.machine, done: make(chan struct{})}
		m.leader = l
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("campaign for engine leadership: %w", err)
	}
	return l, nil
}

// Follow returns a view that follows the cluster until ctx ends.
func (s memStore) Follow(ctx context.Context) engine.View {
	v := &memView{m: s.m, changed: make(chan struct{}, 1)}
	s.m.mu.Lock()
	s.m.views[v] = struct{}{}
	s.m.mu.Unlock()
	v.signal() // the first snapshot is there at once
	context.AfterFunc(ctx, func() {
		s.m.mu.Lock()
		delete(s.m.views, v)
		s.m.mu.Unlock()
	})
	return v
}

type memView struct {
	m       *Memory
	changed chan struct{} // 1-buffered: changes coalesce
}

func (v *memView) signal() {
	select {
	case v.changed <- struct{}{}:
	default:
	}
}

func (v *memView) Changed() <-chan struct{} { return v.changed }

func (v *memView) Snapshot() (unit.Cluster, bool) {
	v.m.mu.Lock()
	defer v.m.mu.Unlock()
	return v.m.snapshot(), true
}

func (v *memView) Revision() int64 {
	v.m.mu.Lock()
	defer v.m.mu.Unlock()
	return v.m.rev
}

func (v *memView) WaitRevision(ctx context.Context, rev int64) error {
	if err := v.m.wait(ctx, func() bool { return v.m.rev >= rev }); err != nil {
		return fmt.Errorf("wait for cluster revision %d: %w", rev, err)
	}
	return nil
}

type memLeader struct {
	m       *Memory
	machine string
	done    chan struct{} // closed when this leadership ends
}

func (l *memLeader) Done() <-chan struct{} { return l.done }

// Apply writes changes at one new revision while l leads.
func (l *memLeader) Apply(_ context.Context, changes []engine.Change) (int64, error) {
	m := l.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.leader != l {
		return 0, errNotLeader
	}
	for _, c := range changes {
		p := c.Placement
		switch c.Kind {
		case engine.Place, engine.Update:
			if m.places[p.Unit] == nil {
				m.places[p.Unit] = make(map[string]unit.Placement)
			}
			m.places[p.Unit][p.Machine] = p
		case engine.Unplace:
			delete(m.places[p.Unit], p.Machine)
			if len(m.places[p.Unit]) == 0 {
				delete(m.places, p.Unit)
			}
		case engine.SetReason:
			m.reasons[c.Unit] = c.Reason
		case engine.ClearReason:
			delete(m.reasons, c.Unit)
		default:
			return 0, fmt.Errorf("unknown change kind %v", c.Kind)
		}
	}
	m.commit()
	return m.rev, nil
}

// Resign ends l's leadership, if it still leads.
func (l *memLeader) Resign(context.Context) error {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	if l.m.leader == l {
		l.m.depose()
	}
	return nil
}
