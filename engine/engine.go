package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/fleet-next/fleet/internal/pause"
	"github.com/fleet-next/fleet/internal/retry"
	"github.com/fleet-next/fleet/unit"
)

// View is a watch-fed view of the cluster (registry.ClusterView).
type View interface {
	Changed() <-chan struct{}
	Snapshot() (unit.Cluster, bool)
	// Revision is the store revision the view reflects (0 before the first read).
	Revision() int64
	WaitRevision(ctx context.Context, rev int64) error
}

// ErrNotLeader is matched by Leader.Apply's error when the write was refused
// because this engine no longer leads: the only write error that ends its
// term.
var ErrNotLeader = errors.New("engine: not the leader")

// Leader is a won election (registry.Leader): Done closes when leadership is
// lost; Apply writes fenced by the election.
type Leader interface {
	Done() <-chan struct{}
	Apply(ctx context.Context, changes []Change) (rev int64, err error)
	Resign(ctx context.Context) error
}

// Store is what the engine needs from the registry.
type Store interface {
	// Campaign blocks until this engine leads, or ctx ends.
	Campaign(ctx context.Context, id string) (Leader, error)
	// Follow starts a view of the cluster that lives until ctx ends.
	Follow(ctx context.Context) View
}

// Config configures an Engine.
type Config struct {
	MachineID string
	// ReconcileInterval is the level-triggered period; changes trigger a
	// round at once (after Debounce).
	ReconcileInterval time.Duration
	Debounce          time.Duration
	// LossGrace is how long a machine holding units may be absent before its
	// units are moved.
	LossGrace time.Duration
	// MaxMovesPerRound bounds reschedules per round (0 = unbounded).
	MaxMovesPerRound int
	Logger           *slog.Logger
	Now              func() time.Time
	// Metrics receives measurements; nil records none.
	Metrics Metrics
}

// Metrics receives the engine's measurements. Implementations must be safe
// for concurrent use and must not block.
type Metrics interface {
	// Leading reports that this engine leads since the given time; the
	// zero time reports that it no longer leads.
	Leading(since time.Time)
	// Reconciled reports one reconcile round of the leader.
	Reconciled(r Round)
}

// Round describes one reconcile round: a plan from a snapshot and, when the
// plan is not empty, its fenced write.
type Round struct {
	Duration time.Duration // planning and writing
	Applied  []Change      // changes written; nil if none or the write failed
	// Unplaceable is how many units cannot be placed (have a reason) once
	// the round's changes are in.
	Unplaceable int
	Err         error // the write failed
}

type noMetrics struct{}

func (noMetrics) Leading(time.Time) {}
func (noMetrics) Reconciled(Round)  {}

// Engine campaigns for leadership and, while it leads, keeps the schedule in
// line with the units' desired states.
type Engine struct {
	cfg   Config
	store Store
	log   *slog.Logger
	reqs  *reqCache

	mu      sync.Mutex // guards leading
	leading bool
}

// New returns an engine; Run starts it.
func New(store Store, cfg Config) *Engine {
	if cfg.ReconcileInterval <= 0 {
		cfg.ReconcileInterval = 2 * time.Second
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = 20 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	return &Engine{cfg: cfg, store: store, log: cfg.Logger, reqs: newReqCache()}
}

// Leading reports whether this engine currently leads.
func (e *Engine) Leading() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leading
}

// Run campaigns and leads until ctx ends. It returns nil on cancellation.
func (e *Engine) Run(ctx context.Context) error {
	backoff := retry.Backoff(500*time.Millisecond, 10*time.Second)
	for ctx.Err() == nil {
		leader, err := e.store.Campaign(ctx, e.cfg.MachineID)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			d := backoff.NextBackOff()
			e.log.Warn("engine election failed; retrying", "err", err, "in", d)
			_ = pause.For(ctx, d)
			continue
		}
		backoff.Reset()
		e.setLeading(true)
		e.cfg.Metrics.Leading(e.cfg.Now())
		e.log.Info("engine leading")
		err = e.lead(ctx, leader)
		e.setLeading(false)
		e.cfg.Metrics.Leading(time.Time{})
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		if rerr := leader.Resign(rctx); rerr != nil {
			e.log.Debug("resign after leading", "err", rerr)
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			e.log.Warn("engine lost leadership", "err", err)
		}
	}
	return nil
}

func (e *Engine) setLeading(v bool) {
	e.mu.Lock()
	e.leading = v
	e.mu.Unlock()
}

// lead reconciles until leadership or ctx ends.
func (e *Engine) lead(ctx context.Context, leader Leader) error {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-leader.Done():
			cancel()
		case <-lctx.Done():
		}
	}()
	view := e.store.Follow(lctx)
	absent := make(map[string]time.Time)
	tick := time.NewTicker(e.cfg.ReconcileInterval)
	defer tick.Stop()
	settled := int64(-1) // revision of the last view that planned to nothing
	writeRetry := retry.Backoff(100*time.Millisecond, 5*time.Second)
	for {
		select {
		case <-lctx.Done():
			if ctx.Err() != nil {
				return nil
			}
			return errors.New("leadership session ended")
		case <-view.Changed():
			_ = pause.For(lctx, e.cfg.Debounce) // let a burst of changes land together
		case <-tick.C:
			// Plan is a function of the view and, through the loss grace,
			// of the time: with nothing changed and no machine absent,
			// the plan would be empty again.
			if len(absent) == 0 && view.Revision() == settled {
				continue
			}
		}
		snap, ok := view.Snapshot()
		if !ok {
			continue
		}
		start := time.Now()
		changes := Plan(e.input(snap, absent))
		if len(changes) == 0 {
			settled = snap.Revision
			e.cfg.Metrics.Reconciled(Round{Duration: time.Since(start), Unplaceable: len(snap.Reasons)})
			continue
		}
		rev, err := leader.Apply(lctx, changes)
		if err != nil {
			e.cfg.Metrics.Reconciled(Round{Duration: time.Since(start), Unplaceable: len(snap.Reasons), Err: err})
			switch {
			case lctx.Err() != nil:
				continue
			case errors.Is(err, ErrNotLeader):
				return fmt.Errorf("apply schedule: %w", err)
			}
			// A store error is not a lost election: keep leading, and plan
			// again from the view (which holds what did commit) after a
			// backoff.
			d := writeRetry.NextBackOff()
			e.log.Warn("writing the schedule failed; retrying", "err", err, "in", d)
			_ = pause.For(lctx, d)
			continue
		}
		writeRetry.Reset()
		e.cfg.Metrics.Reconciled(Round{Duration: time.Since(start), Applied: changes,
			Unplaceable: UnplaceableAfter(snap.Reasons, changes)})
		e.log.Debug("schedule changed", "changes", len(changes), "revision", rev)
		if err := view.WaitRevision(lctx, rev); err != nil {
			continue
		}
	}
}

// UnplaceableAfter counts the units that have a reason once changes are
// applied to reasons (unit name -> reason).
func UnplaceableAfter(reasons map[string]string, changes []Change) int {
	n := len(reasons)
	set := make(map[string]bool, len(changes))
	for _, c := range changes {
		switch c.Kind {
		case SetReason:
			set[c.Unit] = true
		case ClearReason:
			set[c.Unit] = false
		}
	}
	for name, has := range set {
		_, had := reasons[name]
		switch {
		case has && !had:
			n++
		case !has && had:
			n--
		}
	}
	return n
}

// input builds the planner input and maintains the absence record of
// machines that hold placements but are not live.
func (e *Engine) input(snap unit.Cluster, absent map[string]time.Time) Input {
	now := e.cfg.Now()
	holding := make(map[string]bool)
	for _, pm := range snap.Placements {
		for mid := range pm {
			holding[mid] = true
		}
	}
	lost := now.Add(-e.cfg.LossGrace) // absent since then: lost now
	for mid := range holding {
		since, seen := absent[mid]
		switch {
		case snap.Machines[mid].ID != "":
			delete(absent, mid)
		case snap.Departed[mid]:
			// It left cleanly: no grace, its units move now.
			if !seen || since.After(lost) {
				absent[mid] = lost
				e.log.Info("machine left the cluster; moving its units", "machine", mid)
			}
		case !seen:
			absent[mid] = now
			e.log.Info("machine holding units is absent", "machine", mid, "grace", e.cfg.LossGrace)
		}
	}
	for mid := range absent {
		if !holding[mid] {
			delete(absent, mid)
		}
	}
	return Input{Cluster: snap, Now: now, Absent: absent, Grace: e.cfg.LossGrace, Reqs: e.reqs.get,
		MaxMoves: e.cfg.MaxMovesPerRound}
}

// reqCache memoizes parsed requirements by unit name and hash.
type reqCache struct {
	mu sync.Mutex // guards m
	m  map[reqKey]reqEntry
}

type reqKey struct {
	name string
	hash unit.Hash
}

type reqEntry struct {
	r   unit.Requirements
	err error
}

func newReqCache() *reqCache { return &reqCache{m: make(map[reqKey]reqEntry)} }

func (c *reqCache) get(u unit.Unit) (unit.Requirements, error) {
	k := reqKey{u.Name, u.Hash}
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return e.r, e.err
	}
	f, err := unit.Parse(u.Content)
	if err == nil {
		e.r = f.Requirements(u.Name)
	}
	e.err = err
	c.mu.Lock()
	if len(c.m) > 100000 {
		clear(c.m)
	}
	c.m[k] = e
	c.mu.Unlock()
	return e.r, e.err
}
