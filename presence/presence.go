package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/fleet-next/fleet/internal/pause"
	"github.com/fleet-next/fleet/internal/retry"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/unit"
)

// Store is what presence needs of the registry.
type Store interface {
	// Register writes m on a lease of ttl (adopting this instance's own live
	// lease) and returns the lease; *registry.DuplicateMachineError when
	// another instance holds the ID.
	Register(ctx context.Context, m unit.Machine, instance string, ttl time.Duration) (registry.LeaseID, error)
	// KeepAlive renews the lease; the channel closes when it is lost.
	KeepAlive(ctx context.Context, lease registry.LeaseID) (<-chan struct{}, error)
	// Deregister replaces the machine record with a leaving record that
	// lingers for linger, then revokes the lease.
	Deregister(ctx context.Context, id string, lease registry.LeaseID, linger time.Duration) error
}

// Config configures a Presence.
type Config struct {
	Machine  unit.Machine // the record to register; its ID never changes
	Instance string       // this installation's token (see registry.Register)
	TTL      time.Duration
	Logger   *slog.Logger
	// OnLease is called after each successful registration, from the
	// presence loop.
	OnLease func(registry.LeaseID)
}

// ErrNotRegistered is matched by Ready's error while the machine holds no lease.
var ErrNotRegistered = errors.New("this machine is not registered in the cluster")

// Presence keeps a machine registered. Run it once; its other methods are
// safe for concurrent use.
type Presence struct {
	store Store
	cfg   Config
	log   *slog.Logger

	rewrite chan struct{} // SetMachine asks the loop to rewrite the record

	mu       sync.Mutex // guards the fields below
	machine  unit.Machine
	lease    registry.LeaseID
	notReady error
	lastBeat time.Time // last registration attempt or lease renewal
}

// New returns a Presence; Run starts it.
func New(store Store, cfg Config) *Presence {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Presence{store: store, cfg: cfg, log: cfg.Logger, machine: cfg.Machine,
		rewrite: make(chan struct{}, 1)}
}

// Machine returns the machine record presence registers.
func (p *Presence) Machine() unit.Machine {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.machine
}

// SetMachine changes the machine record (not its ID); a registered machine
// rewrites its record on the lease it holds.
func (p *Presence) SetMachine(m unit.Machine) {
	p.mu.Lock()
	m.ID = p.machine.ID
	p.machine = m
	p.mu.Unlock()
	select {
	case p.rewrite <- struct{}{}:
	default:
	}
}

// Ready is nil while the machine is registered; otherwise it says why not
// (matching ErrNotRegistered).
func (p *Presence) Ready() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lease == 0 {
		if p.notReady != nil {
			return p.notReady
		}
		return ErrNotRegistered
	}
	return nil
}

// Lease is the current machine lease, or 0.
func (p *Presence) Lease() registry.LeaseID {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lease
}

// Alive reports whether the presence loop made progress within d: it
// renewed its lease or tried to register. A store outage does not make it
// stale; only a loop that is stuck does.
func (p *Presence) Alive(d time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.lastBeat.IsZero() && time.Since(p.lastBeat) < d
}

func (p *Presence) beat() {
	p.mu.Lock()
	p.lastBeat = time.Now()
	p.mu.Unlock()
}

func (p *Presence) set(l registry.LeaseID, why error) {
	p.mu.Lock()
	p.lease, p.notReady = l, why
	p.mu.Unlock()
}

// Run keeps the machine registered until ctx ends; it returns nil then.
func (p *Presence) Run(ctx context.Context) error {
	backoff := retry.Backoff(250*time.Millisecond, max(p.cfg.TTL/2, time.Second))
	for ctx.Err() == nil {
		p.beat()
		rctx, cancel := context.WithTimeout(ctx, p.cfg.TTL)
		lease, err := p.store.Register(rctx, p.Machine(), p.cfg.Instance, p.cfg.TTL)
		cancel()
		p.beat()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			d := backoff.NextBackOff()
			var dup *registry.DuplicateMachineError
			if errors.As(err, &dup) {
				p.set(0, fmt.Errorf("%w: %v", ErrNotRegistered, err))
				p.log.Error("refusing to register", "err", err)
			} else {
				// Say why, so that the API's 503 names the cause (an
				// unreachable store, a certificate it refuses, bad
				// credentials).
				p.set(0, fmt.Errorf("%w: %v", ErrNotRegistered, err))
				p.log.Warn("registering machine failed; retrying", "err", err, "in", d)
			}
			_ = pause.For(ctx, d)
			continue
		}
		backoff.Reset()
		ka, err := p.store.KeepAlive(ctx, lease)
		if err != nil {
			p.log.Warn("keeping machine lease alive failed", "err", err)
			continue
		}
		p.set(lease, nil)
		p.log.Info("machine registered", "lease", fmt.Sprintf("%x", lease))
		if p.cfg.OnLease != nil {
			p.cfg.OnLease(lease)
		}
		p.hold(ctx, lease, ka)
		if ctx.Err() != nil {
			break // keep the lease: Leave revokes it
		}
		p.set(0, nil)
		p.log.Warn("machine lease lost; registering again")
	}
	return nil
}

// hold follows the lease's keep-alives until the lease is lost, rewriting
// the machine record on it when SetMachine asks.
func (p *Presence) hold(ctx context.Context, lease registry.LeaseID, ka <-chan struct{}) {
	var again <-chan time.Time
	rewriteBackoff := retry.Backoff(250*time.Millisecond, max(p.cfg.TTL/2, time.Second))
	for {
		select {
		case _, ok := <-ka:
			if !ok {
				return
			}
			p.beat()
			continue
		case <-p.rewrite:
		case <-again:
		}
		again = nil
		rctx, cancel := context.WithTimeout(ctx, p.cfg.TTL)
		l, err := p.store.Register(rctx, p.Machine(), p.cfg.Instance, p.cfg.TTL)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			d := rewriteBackoff.NextBackOff()
			p.log.Warn("updating the machine record failed; retrying", "err", err, "in", d)
			again = time.After(d)
		case l != lease:
			p.log.Warn("machine lease lost while updating the machine record")
			return
		default:
			rewriteBackoff.Reset()
			p.log.Info("machine record updated", "metadata", p.Machine().Metadata)
		}
	}
}

// Leave makes the machine leave the cluster (after Run has returned): its
// lease is revoked, so the machine and its unit states leave the store at
// once (and an engine leading from this machine steps down), and a leaving
// record tells the engine to move its units without waiting for the loss
// grace.
func (p *Presence) Leave(ctx context.Context) error {
	l := p.Lease()
	if l == 0 {
		return nil
	}
	if err := p.store.Deregister(ctx, p.cfg.Machine.ID, l, p.cfg.TTL); err != nil {
		return fmt.Errorf("leave the cluster: %w", err)
	}
	p.set(0, nil)
	return nil
}
