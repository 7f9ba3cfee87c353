package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fleet-next/fleet/engine"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/unit"
)

// presence keeps this machine registered on its lease, re-registering when
// the lease is lost (e.g. after a store outage longer than agent_ttl).
type presence struct {
	reg      *registry.Etcd
	machine  unit.Machine // ID fixed; the rest changes only through setMachine
	instance string
	ttl      time.Duration
	log      *slog.Logger
	onLease  func() // called after each successful registration

	mu       sync.Mutex // guards the fields below and machine
	lease    registry.LeaseID
	notReady error
	lastBeat time.Time     // last registration attempt or lease renewal
	rewrite  chan struct{} // setMachine asks the loop to rewrite the record
}

// current returns the machine record to register.
func (p *presence) current() unit.Machine {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.machine
}

// setMachine changes the machine record (not its ID); a registered machine
// rewrites its record on the lease it holds.
func (p *presence) setMachine(m unit.Machine) {
	p.mu.Lock()
	m.ID = p.machine.ID
	p.machine = m
	p.mu.Unlock()
	select {
	case p.rewriteCh() <- struct{}{}:
	default:
	}
}

func (p *presence) rewriteCh() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rewrite == nil {
		p.rewrite = make(chan struct{}, 1)
	}
	return p.rewrite
}

func (p *presence) beat() {
	p.mu.Lock()
	p.lastBeat = time.Now()
	p.mu.Unlock()
}

// alive reports whether the presence loop made progress within d: it
// renewed its lease or tried to register. A store outage does not make it
// stale; only a loop that is stuck does.
func (p *presence) alive(d time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.lastBeat.IsZero() && time.Since(p.lastBeat) < d
}

var errNotRegistered = errors.New("this machine is not registered in the cluster")

// Ready is nil while the machine is registered.
func (p *presence) Ready() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lease == 0 {
		if p.notReady != nil {
			return p.notReady
		}
		return errNotRegistered
	}
	return nil
}

// Lease is the current machine lease, or 0.
func (p *presence) Lease() registry.LeaseID {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lease
}

func (p *presence) set(l registry.LeaseID, why error) {
	p.mu.Lock()
	p.lease, p.notReady = l, why
	p.mu.Unlock()
}

func (p *presence) run(ctx context.Context) error {
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		p.beat()
		rctx, cancel := context.WithTimeout(ctx, p.ttl)
		lease, err := p.reg.Register(rctx, p.current(), p.instance, p.ttl)
		cancel()
		p.beat()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			var dup *registry.DuplicateMachineError
			if errors.As(err, &dup) {
				p.set(0, fmt.Errorf("%w: %v", errNotRegistered, err))
				p.log.Error("refusing to register", "err", err)
			} else {
				p.set(0, nil)
				p.log.Warn("registering machine failed; retrying", "err", err, "in", backoff)
			}
			sleep(ctx, backoff)
			backoff = min(backoff*2, max(p.ttl/2, time.Second))
			continue
		}
		backoff = 250 * time.Millisecond
		ka, err := p.reg.KeepAlive(ctx, lease)
		if err != nil {
			p.log.Warn("keeping machine lease alive failed", "err", err)
			continue
		}
		p.set(lease, nil)
		p.log.Info("machine registered", "lease", fmt.Sprintf("%x", lease))
		if p.onLease != nil {
			p.onLease()
		}
		p.hold(ctx, lease, ka)
		p.set(0, nil)
		if ctx.Err() == nil {
			p.log.Warn("machine lease lost; registering again")
		}
	}
	return nil
}

// hold follows the lease's keep-alives until the lease is lost, rewriting
// the machine record on it when setMachine asks.
func (p *presence) hold(ctx context.Context, lease registry.LeaseID, ka <-chan *clientv3.LeaseKeepAliveResponse) {
	rewrite := p.rewriteCh()
	var retry <-chan time.Time
	for {
		select {
		case _, ok := <-ka:
			if !ok {
				return
			}
			p.beat()
			continue
		case <-rewrite:
		case <-retry:
		}
		retry = nil
		rctx, cancel := context.WithTimeout(ctx, p.ttl)
		l, err := p.reg.Register(rctx, p.current(), p.instance, p.ttl)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			p.log.Warn("updating the machine record failed; retrying", "err", err)
			retry = time.After(time.Second)
		case l != lease:
			p.log.Warn("machine lease lost while updating the machine record")
			return
		default:
			p.log.Info("machine record updated", "metadata", p.current().Metadata)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// reg2agent adapts the registry to the agent's interfaces.
type reg2agent struct {
	reg  *registry.Etcd
	pres *presence
}

func (a reg2agent) WatchSchedule(ctx context.Context, id string) <-chan map[string]unit.Placement {
	return a.reg.WatchSchedule(ctx, id)
}

func (a reg2agent) PublishState(ctx context.Context, s unit.State) error {
	l := a.pres.Lease()
	if l == 0 {
		return errors.New("publish state: machine not registered")
	}
	return a.reg.PublishState(ctx, l, s)
}

func (a reg2agent) DeleteState(ctx context.Context, name string) error {
	return a.reg.DeleteState(ctx, name, a.pres.current().ID)
}

// reg2engine adapts the registry to the engine's Store.
type reg2engine struct {
	reg  *registry.Etcd
	pres *presence
}

// Campaign waits for the machine to be registered, then campaigns on its lease.
func (e reg2engine) Campaign(ctx context.Context, id string) (engine.Leader, error) {
	lease := e.pres.Lease()
	for lease == 0 {
		sleep(ctx, 100*time.Millisecond)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		lease = e.pres.Lease()
	}
	l, err := e.reg.Campaign(ctx, id, lease)
	if err != nil {
		return nil, err
	}
	return leaderAdapter{l}, nil
}

func (e reg2engine) Follow(ctx context.Context) engine.View { return e.reg.FollowCluster(ctx) }

type leaderAdapter struct{ l *registry.Leader }

func (a leaderAdapter) Done() <-chan struct{}            { return a.l.Done() }
func (a leaderAdapter) Resign(ctx context.Context) error { return a.l.Resign(ctx) }
func (a leaderAdapter) Apply(ctx context.Context, changes []engine.Change) (int64, error) {
	return a.l.Apply(ctx, ScheduleChanges(changes))
}

// ScheduleChanges turns an engine plan into the registry's schedule writes.
func ScheduleChanges(changes []engine.Change) []registry.ScheduleChange {
	out := make([]registry.ScheduleChange, 0, len(changes))
	for i := range changes {
		c := &changes[i]
		switch c.Kind {
		case engine.Place, engine.Update:
			out = append(out, registry.ScheduleChange{Put: &c.Placement})
		case engine.Unplace:
			out = append(out, registry.ScheduleChange{Delete: &c.Placement})
		case engine.SetReason:
			out = append(out, registry.ScheduleChange{ReasonFor: c.Unit, Reason: c.Reason})
		case engine.ClearReason:
			out = append(out, registry.ScheduleChange{ReasonFor: c.Unit})
		}
	}
	return out
}
