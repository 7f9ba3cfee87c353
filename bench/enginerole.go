package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleet-next/fleet/engine"
	"github.com/fleet-next/fleet/engine/enginestore"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/unit"
)

// engineReport is what the engine child reports about its work so far.
type engineReport struct {
	LeadStart  time.Time // when it won the election
	Placements int       // Place changes written
	Changes    int       // all changes written
	Applies    int       // Apply calls (each one or more fenced transactions)
	FirstPlace time.Time // end of the first Apply that placed a unit
	LastPlace  time.Time // end of the last Apply that placed a unit
	Wakeups    int64     // change notifications of its cluster view
	Rounds     int64     // planning rounds (view snapshots taken)
	Requests   requests  // etcd requests its client sent
	// FirstWrite is when the first Apply that placed a unit started: the
	// engine had read the cluster and planned.
	FirstWrite time.Time
	// ViewReady is when its view of the cluster first reported a change:
	// the initial read had completed.
	ViewReady time.Time
}

// engineStats collects an engineReport.
type engineStats struct {
	wakeups, rounds atomic.Int64

	mu sync.Mutex // guards r
	r  engineReport
}

func (s *engineStats) report(reqs requests) engineReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.r
	r.Wakeups, r.Rounds, r.Requests = s.wakeups.Load(), s.rounds.Load(), reqs
	return r
}

// runEngineChild is the "engine" child: one engine.Engine on the registry,
// campaigning on a lease of its own (it registers no machine, so nothing is
// scheduled on it). It is ready once it leads; on exit it revokes its lease
// so that a successor leads at once.
func runEngineChild(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("engine", flag.ContinueOnError)
	endpoint := fs.String("etcd", "", "etcd client URL")
	ttl := fs.Duration("ttl", 30*time.Second, "lease TTL (agent_ttl)")
	stopProfile, err := parseWithProfile(fs, args)
	if err != nil {
		return err
	}
	defer stopProfile()
	if *endpoint == "" {
		return errors.New("engine: -etcd is required")
	}
	counter := newRequestCounter()
	cli, err := connect(*endpoint, counter)
	if err != nil {
		return err
	}
	defer cli.Close()
	reg := registry.FromClient(cli, "", log)
	grant, err := cli.Grant(ctx, int64(ttl.Seconds()))
	if err != nil {
		return fmt.Errorf("engine: grant lease: %w", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ka, err := cli.KeepAlive(runCtx, grant.ID)
	if err != nil {
		stop()
		return fmt.Errorf("engine: keep lease alive: %w", err)
	}
	go func() {
		for range ka {
		}
	}()
	stats := &engineStats{}
	eng := engine.New(engineStore{reg: reg, lease: registry.LeaseID(grant.ID), stats: stats}, engine.Config{
		MachineID: "bench-engine", ReconcileInterval: 2 * time.Second, LossGrace: *ttl / 2,
		MaxMovesPerRound: 1000, Logger: log})
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := eng.Run(runCtx); err != nil {
			log.Error("engine stopped", "err", err)
		}
	})
	defer func() {
		stop()
		wg.Wait()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := cli.Revoke(rctx, grant.ID); err != nil {
			log.Warn("revoking the engine lease", "err", err)
		}
	}()
	deadline := time.Now().Add(time.Minute)
	for !eng.Leading() {
		if time.Now().After(deadline) {
			return errors.New("engine: not leading after a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return serveChild(ctx, stdin, stdout, stats.report(counter.Snapshot()), func(_ context.Context, command string) (any, error) {
		if command != "report" {
			return nil, fmt.Errorf("engine: unknown command %q", command)
		}
		return stats.report(counter.Snapshot()), nil
	})
}

// engineStore adapts the registry to engine.Store, counting what the
// engine does.
type engineStore struct {
	reg   *registry.Etcd
	lease registry.LeaseID
	stats *engineStats
}

func (s engineStore) Campaign(ctx context.Context, id string) (engine.Leader, error) {
	l, err := s.reg.Campaign(ctx, id, 0, registry.MinElectionTTL)
	if err != nil {
		return nil, err
	}
	s.stats.mu.Lock()
	s.stats.r.LeadStart = time.Now()
	s.stats.mu.Unlock()
	return engineLeader{l: l, stats: s.stats}, nil
}

func (s engineStore) Follow(ctx context.Context) engine.View {
	v := &countedView{ClusterView: s.reg.FollowCluster(ctx), changed: make(chan struct{}, 1), stats: s.stats}
	go v.forward(ctx)
	return v
}

// countedView counts the wake-ups and rounds of the engine.
type countedView struct {
	*registry.ClusterView
	changed chan struct{}
	stats   *engineStats
}

func (v *countedView) forward(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-v.ClusterView.Changed():
			if v.stats.wakeups.Add(1) == 1 {
				v.stats.mu.Lock()
				v.stats.r.ViewReady = time.Now()
				v.stats.mu.Unlock()
			}
			select {
			case v.changed <- struct{}{}:
			default:
			}
		}
	}
}

func (v *countedView) Changed() <-chan struct{} { return v.changed }

func (v *countedView) Snapshot() (unit.Cluster, bool) {
	v.stats.rounds.Add(1)
	return v.ClusterView.Snapshot()
}

// engineLeader adapts registry.Leader to engine.Leader.
type engineLeader struct {
	l     *registry.Leader
	stats *engineStats
}

func (a engineLeader) Done() <-chan struct{}            { return a.l.Done() }
func (a engineLeader) Resign(ctx context.Context) error { return a.l.Resign(ctx) }

func (a engineLeader) Apply(ctx context.Context, changes []engine.Change) (int64, error) {
	places := 0
	for _, c := range changes {
		if c.Kind == engine.Place {
			places++
		}
	}
	out := enginestore.ScheduleChanges(changes)
	t0 := time.Now()
	rev, err := a.l.Apply(ctx, out)
	if err != nil {
		return rev, err
	}
	now := time.Now()
	a.stats.mu.Lock()
	defer a.stats.mu.Unlock()
	a.stats.r.Applies++
	a.stats.r.Changes += len(changes)
	if places > 0 {
		a.stats.r.Placements += places
		if a.stats.r.FirstPlace.IsZero() {
			a.stats.r.FirstWrite, a.stats.r.FirstPlace = t0, now
		}
		a.stats.r.LastPlace = now
	}
	return rev, nil
}
