package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fleet-next/fleet/agent"
	"github.com/fleet-next/fleet/internal/pause"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/systemd/systemdfake"
	"github.com/fleet-next/fleet/unit"
)

// agentsReady is the agents child's ready message.
type agentsReady struct {
	Agents   int
	Register time.Duration // until every machine was registered
}

// agentsCount answers "count".
type agentsCount struct {
	Launched      int      // units reported launched and active
	Requests      requests // etcd requests the agents' clients sent
	Registrations int64    // machine registrations, including re-registrations
	PublishErrors int64
}

// agentsWakes answers "wakes": schedule deliveries per agent.
type agentsWakes struct {
	Wakes []int64
}

// agentsReport answers "report".
type agentsReport struct {
	Launched map[string]int64 // unit -> wall clock (Unix ns) its launch was published
}

// machineID is the ID of simulated machine i.
func machineID(i int) string { return fmt.Sprintf("%032x", 0xbe4c0000+i) }

// runAgentsChild is the "agents" child: n simulated hosts, each a real
// agent.Agent with its own machine registration and lease, its own etcd
// connection (or one per -per-conn agents) and an in-memory systemd.
func runAgentsChild(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("agents", flag.ContinueOnError)
	endpoint := fs.String("etcd", "", "etcd client URL")
	n := fs.Int("n", 100, "number of agents")
	first := fs.Int("first", 0, "index of the first machine")
	ttl := fs.Duration("ttl", 30*time.Second, "agent_ttl: machine lease TTL")
	perConn := fs.Int("per-conn", 1, "agents sharing one etcd connection")
	stopProfile, err := parseWithProfile(fs, args)
	if err != nil {
		return err
	}
	defer stopProfile()
	if *endpoint == "" || *n <= 0 || *perConn <= 0 {
		return errors.New("agents: -etcd, a positive -n and a positive -per-conn are required")
	}
	counter := newRequestCounter()
	h := &agentHub{launched: map[string]int64{}}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var clients []*clientv3.Client
	defer func() {
		stop()
		wg.Wait()
		for _, c := range clients {
			_ = c.Close()
		}
	}()
	start := time.Now()
	registered := make(chan struct{}, *n)
	sims := make([]*simAgent, *n)
	var reg *registry.Etcd
	for i := range *n {
		if i%*perConn == 0 {
			cli, err := connect(*endpoint, counter)
			if err != nil {
				return err
			}
			clients = append(clients, cli)
			reg = registry.FromClient(cli, "", log)
		}
		id := machineID(*first + i)
		s := &simAgent{id: id, reg: reg, hub: h, ttl: *ttl, log: log, registered: registered,
			machine: unit.Machine{ID: id, PublicIP: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
				Metadata: map[string]string{"bench": "true"}, Version: "bench"}}
		s.ag = agent.New(s, s, systemdfake.New(), agent.Config{MachineID: id, Logger: log})
		sims[i] = s
		wg.Go(func() { s.keepRegistered(runCtx) })
		wg.Go(func() {
			if err := s.ag.Run(runCtx); err != nil {
				log.Error("agent stopped", "machine", id, "err", err)
			}
		})
	}
	for range *n {
		select {
		case <-registered:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Minute):
			return errors.New("agents: machines not registered after 5 minutes")
		}
	}
	ready := agentsReady{Agents: *n, Register: time.Since(start)}
	return serveChild(ctx, stdin, stdout, ready, func(_ context.Context, command string) (any, error) {
		switch command {
		case "count":
			return h.count(counter.Snapshot()), nil
		case "wakes":
			w := make([]int64, len(sims))
			for i, s := range sims {
				w[i] = s.wakes.Load()
			}
			return agentsWakes{Wakes: w}, nil
		case "report":
			return h.report(), nil
		}
		return nil, fmt.Errorf("agents: unknown command %q", command)
	})
}

// agentHub collects what every agent of the process reports.
type agentHub struct {
	registrations, publishErrors atomic.Int64

	mu       sync.Mutex // guards launched
	launched map[string]int64
}

func (h *agentHub) markLaunched(name string, at time.Time) {
	h.mu.Lock()
	if _, ok := h.launched[name]; !ok {
		h.launched[name] = at.UnixNano()
	}
	h.mu.Unlock()
}

func (h *agentHub) count(reqs requests) agentsCount {
	h.mu.Lock()
	n := len(h.launched)
	h.mu.Unlock()
	return agentsCount{Launched: n, Requests: reqs, Registrations: h.registrations.Load(),
		PublishErrors: h.publishErrors.Load()}
}

func (h *agentHub) report() agentsReport {
	h.mu.Lock()
	defer h.mu.Unlock()
	return agentsReport{Launched: maps.Clone(h.launched)}
}

// simAgent is one simulated host: its presence on a lease, and the
// Schedule and StatePublisher of its agent.
type simAgent struct {
	id         string
	machine    unit.Machine
	reg        *registry.Etcd
	hub        *agentHub
	ttl        time.Duration
	log        *slog.Logger
	ag         *agent.Agent
	registered chan<- struct{}

	lease atomic.Int64 // current machine lease; 0 while unregistered
	wakes atomic.Int64 // schedules delivered to the agent
}

// keepRegistered registers the machine and keeps its lease alive, and
// registers it again if the lease is lost, as fleetd's presence does.
func (s *simAgent) keepRegistered(ctx context.Context) {
	first := true
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, s.ttl)
		lease, err := s.reg.Register(rctx, s.machine, "bench-"+s.id, s.ttl)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("registering machine failed; retrying", "machine", s.id, "err", err)
				_ = pause.For(ctx, time.Second) // the loop ends with ctx
			}
			continue
		}
		ka, err := s.reg.KeepAlive(ctx, lease)
		if err != nil {
			s.log.Warn("keeping machine lease alive failed", "machine", s.id, "err", err)
			continue
		}
		s.lease.Store(int64(lease))
		s.hub.registrations.Add(1)
		if first {
			s.registered <- struct{}{}
			first = false
		} else {
			s.ag.Republish()
		}
		for range ka {
		}
		s.lease.Store(0)
		if ctx.Err() == nil {
			s.log.Warn("machine lease lost; registering again", "machine", s.id)
		}
	}
}

// WatchSchedule implements agent.Schedule, counting deliveries.
func (s *simAgent) WatchSchedule(ctx context.Context, id string) <-chan map[string]unit.Placement {
	in := s.reg.WatchSchedule(ctx, id)
	out := make(chan map[string]unit.Placement)
	go func() {
		defer close(out)
		for sched := range in {
			s.wakes.Add(1)
			select {
			case out <- sched:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// PublishState implements agent.StatePublisher, recording when a unit was
// first reported launched and active.
func (s *simAgent) PublishState(ctx context.Context, st unit.State) error {
	lease := registry.LeaseID(s.lease.Load())
	if lease == 0 {
		return errors.New("publish state: machine not registered")
	}
	if err := s.reg.PublishState(ctx, lease, st); err != nil {
		s.hub.publishErrors.Add(1)
		return err
	}
	if st.Current == unit.StateLaunched && st.ActiveState == "active" {
		s.hub.markLaunched(st.Name, time.Now())
	}
	return nil
}

// DeleteState implements agent.StatePublisher.
func (s *simAgent) DeleteState(ctx context.Context, name string) error {
	return s.reg.DeleteState(ctx, name, s.id)
}

func (s *simAgent) PublishedStates(ctx context.Context) ([]string, error) {
	sts, err := s.reg.States(ctx, "", s.id)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(sts))
	for i, st := range sts {
		names[i] = st.Name
	}
	return names, nil
}

func (s *simAgent) PublishRefusal(ctx context.Context, name string, h unit.Hash, reason string) error {
	return s.reg.PublishRefusal(ctx, registry.LeaseID(s.lease.Load()), name, s.id, h, reason)
}
