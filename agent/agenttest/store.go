// Package agenttest holds an in-memory implementation of the agent's
// Schedule and StatePublisher for one machine, and the contract suite that
// it and the registry-backed implementation (agent/agentstore) both pass.
package agenttest

import (
	"context"
	"maps"
	"sync"

	"github.com/fleet-next/fleet/agent"
	"github.com/fleet-next/fleet/unit"
)

// Store is an in-memory schedule and state store. The zero value is not
// usable; call New.
type Store struct {
	mu       sync.Mutex // guards the fields below
	schedule map[string]unit.Placement
	watchers map[chan map[string]unit.Placement]struct{}
	states   map[string]unit.State // by unit name
	refusals map[string]unit.Refusal
	failing  error // returned by every write while set (a store that is down)
}

var (
	_ agent.Schedule       = (*Store)(nil)
	_ agent.StatePublisher = (*Store)(nil)
)

// New returns a store with an empty schedule and no states.
func New() *Store {
	return &Store{schedule: map[string]unit.Placement{},
		watchers: map[chan map[string]unit.Placement]struct{}{}, states: map[string]unit.State{},
		refusals: map[string]unit.Refusal{}}
}

// WatchSchedule delivers the complete schedule now and after every
// SetSchedule; a slow reader gets the latest one. The channel closes when
// ctx ends.
func (s *Store) WatchSchedule(ctx context.Context, _ string) <-chan map[string]unit.Placement {
	in := make(chan map[string]unit.Placement, 1)
	out := make(chan map[string]unit.Placement)
	s.mu.Lock()
	s.watchers[in] = struct{}{}
	in <- maps.Clone(s.schedule)
	s.mu.Unlock()
	go func() {
		defer close(out)
		defer func() {
			s.mu.Lock()
			delete(s.watchers, in)
			s.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-in:
				select {
				case out <- m:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// SetSchedule replaces the schedule.
func (s *Store) SetSchedule(m map[string]unit.Placement) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.schedule = maps.Clone(m)
	for w := range s.watchers {
		select {
		case <-w: // drop the stale one: the reader gets the latest
		default:
		}
		w <- maps.Clone(s.schedule)
	}
}

// Fail makes every write fail with err until Fail(nil): the store is down.
func (s *Store) Fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing = err
}

// PublishState records st.
func (s *Store) PublishState(ctx context.Context, st unit.State) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing != nil {
		return s.failing
	}
	s.states[st.Name] = st
	return nil
}

// DeleteState forgets the state of name.
func (s *Store) DeleteState(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing != nil {
		return s.failing
	}
	delete(s.states, name)
	return nil
}

// States returns the published states by unit name.
func (s *Store) States() map[string]unit.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.states)
}

// PublishRefusal records a refusal of version h of name.
func (s *Store) PublishRefusal(ctx context.Context, name string, h unit.Hash, reason string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refusals[name] = unit.Refusal{Hash: h, Reason: reason}
	return nil
}

// Refusals returns the published refusals by unit name.
func (s *Store) Refusals() map[string]unit.Refusal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.refusals)
}
