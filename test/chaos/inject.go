package chaos

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/test/cluster"
)

// restartDelay is how long a fleetd that ended on its own stays down before
// the run starts it again (systemd's RestartSec= in a real deployment).
const restartDelay = time.Second

// injector applies a schedule's events to a cluster.
type injector struct {
	c   *cluster.Cluster
	reg *registry.Etcd
	rec *recorder
	w   *workload
	log func(format string, args ...any)

	locks sync.Map // resource name -> chan struct{} (a one-slot semaphore)
}

// acquire takes the resource, waiting at most wait; the returned func
// releases it.
func (in *injector) acquire(ctx context.Context, res string, wait time.Duration) (func(), bool) {
	v, _ := in.locks.LoadOrStore(res, make(chan struct{}, 1))
	ch := v.(chan struct{})
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, true
	case <-t.C:
		return nil, false
	case <-ctx.Done():
		return nil, false
	}
}

// run applies one event; it returns when the fault is over (healed,
// restarted, fixed).
func (in *injector) run(ctx context.Context, ev Event) {
	const wait = 30 * time.Second
	switch ev.Kind {
	case FleetdKill, FleetdLeave:
		in.fleetd(ctx, ev, ev.Host)
	case LeaderKill:
		h, err := in.engineLeader(ctx)
		if err != nil {
			in.rec.skip(ev.Kind)
			in.log("%s: skipped: %v", ev, err)
			return
		}
		in.fleetd(ctx, ev, h)
	case EtcdKill, EtcdLeaderKill:
		release, ok := in.acquire(ctx, "etcd", wait)
		if !ok {
			in.rec.skip(ev.Kind)
			return
		}
		defer release()
		m := in.c.Members[max(ev.Member, 0)]
		if ev.Kind == EtcdLeaderKill {
			l, err := in.etcdLeader(ctx)
			if err != nil {
				in.rec.skip(ev.Kind)
				in.log("%s: skipped: %v", ev, err)
				return
			}
			m = l
		}
		w := in.rec.begin(ev.Kind, -1, fmt.Sprintf("%s %s", ev.Kind, m.Name))
		defer in.rec.end(w)
		if err := m.Kill(); err != nil {
			in.rec.problem("%s: %v", ev, err)
			return
		}
		sleep(ctx, ev.Hold)
		if err := m.Start(); err != nil {
			in.rec.problem("%s: restart: %v", ev, err)
		}
	case EtcdFreeze:
		release, ok := in.acquire(ctx, "etcd", wait)
		if !ok {
			in.rec.skip(ev.Kind)
			return
		}
		defer release()
		w := in.rec.begin(ev.Kind, -1, string(ev.Kind))
		defer in.rec.end(w)
		if err := in.c.FreezeEtcdErr(true); err != nil {
			in.rec.problem("%s: %v", ev, err)
		}
		sleep(ctx, ev.Hold)
		if err := in.c.FreezeEtcdErr(false); err != nil {
			in.rec.problem("%s: thaw: %v", ev, err)
		}
	case Partition:
		release, ok := in.acquire(ctx, resource(ev.Kind, ev.Host), wait)
		if !ok {
			in.rec.skip(ev.Kind)
			return
		}
		defer release()
		h := in.c.Hosts[ev.Host]
		w := in.rec.begin(ev.Kind, h.Index, fmt.Sprintf("%s host %d", ev.Kind, h.Index))
		defer in.rec.end(w)
		h.Proxy.Cut()
		sleep(ctx, ev.Hold)
		h.Proxy.Heal()
	case SystemdRestart:
		release, ok := in.acquire(ctx, resource(ev.Kind, ev.Host), wait)
		if !ok {
			in.rec.skip(ev.Kind)
			return
		}
		defer release()
		h := in.c.Hosts[ev.Host]
		w := in.rec.begin(ev.Kind, h.Index, fmt.Sprintf("%s host %d", ev.Kind, h.Index))
		defer in.rec.end(w)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := h.TryRestartSystemd(rctx); err != nil {
			in.rec.problem("%s: %v", ev, err)
		}
	case BadUnit:
		in.badUnit(ctx, ev)
	case Churn:
		if err := in.w.startInstances(ctx, ev.Unit); err != nil {
			in.log("%s: %v", ev, err)
		}
		if ev.Victim != "" {
			if err := in.w.destroy(ctx, ev.Victim); err != nil {
				in.log("%s: %v", ev, err)
			}
		}
	}
}

// fleetd kills (FleetdKill, LeaderKill) or stops (FleetdLeave) a host's
// fleetd and starts it again after the event's hold.
func (in *injector) fleetd(ctx context.Context, ev Event, host int) {
	release, ok := in.acquire(ctx, resource(FleetdKill, host), 30*time.Second)
	if !ok {
		in.rec.skip(ev.Kind)
		return
	}
	defer release()
	h := in.c.Hosts[host]
	sig, timeout := syscall.SIGKILL, 30*time.Second
	if ev.Kind == FleetdLeave {
		sig, timeout = syscall.SIGTERM, 60*time.Second
	}
	w := in.rec.begin(ev.Kind, host, fmt.Sprintf("%s host %d", ev.Kind, host))
	defer in.rec.end(w)
	stopped := time.Now()
	if err := h.TryStop(sig, timeout); err != nil {
		in.rec.problem("%s: %v", ev, err)
	} else if ev.Kind == FleetdLeave {
		in.log("%s: fleetd left in %s", ev, time.Since(stopped).Round(10*time.Millisecond))
	}
	sleep(ctx, ev.Hold)
	if err := h.TryStart(); err != nil {
		in.rec.problem("%s: %v", ev, err)
	}
}

// badUnit starts a bad unit and a good unit bound to its machine, waits,
// and fixes the bad one.
func (in *injector) badUnit(ctx context.Context, ev Event) {
	w := in.rec.begin(ev.Kind, -1, fmt.Sprintf("%s %s", ev.Kind, ev.Unit))
	defer in.rec.end(w)
	bad, pal := badPair(ev.Unit)
	if err := in.w.start(ctx, false, bad, pal); err != nil {
		in.log("%s: %v", ev, err)
		return
	}
	sleep(ctx, ev.Hold)
	// Keep fixing even once the phase is over: a bad unit left behind is
	// the run's doing, not the cluster's.
	fctx := context.WithoutCancel(ctx)
	if err := in.fix(fctx, ev.Fix, ev.Unit, pal.name); err != nil {
		in.log("%s: fix: %v", ev, err)
	}
}

// fix repairs a bad unit as a user would; pal is the unit bound to it.
func (in *injector) fix(ctx context.Context, how Fix, name, pal string) error {
	if how == FixDestroy {
		// The unit bound to it loses its peer for a moment: mark it too.
		from := in.w.begin(pal)
		err := in.w.destroy(ctx, name)
		if err == nil {
			err = in.w.start(ctx, false, fixedBad(name))
		}
		in.w.finish(from, nil, func(*tracked) {}, pal)
		return err
	}
	return in.w.start(ctx, true, fixedBad(name))
}

// leaderWait bounds how long a leader fault waits for a leader to be
// known (one may have just been killed).
const leaderWait = 15 * time.Second

// engineLeader is the host the registry names as engine leader, once one
// is named.
func (in *injector) engineLeader(ctx context.Context) (int, error) {
	deadline := time.Now().Add(leaderWait)
	for {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		id, err := in.reg.EngineLeader(lctx)
		cancel()
		if err == nil {
			for _, h := range in.c.Hosts {
				if h.MachineID == id {
					return h.Index, nil
				}
			}
			err = fmt.Errorf("engine leader %q is no host of the cluster", id)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("no engine leader within %s: %w", leaderWait, err)
		}
		sleep(ctx, 500*time.Millisecond)
	}
}

// etcdLeader is the member the running members name leader, once they
// agree on one.
func (in *injector) etcdLeader(ctx context.Context) (*cluster.EtcdMember, error) {
	deadline := time.Now().Add(leaderWait)
	for {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		m, err := in.c.EtcdLeader(lctx)
		cancel()
		if err == nil {
			return m, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("no etcd leader within %s: %w", leaderWait, err)
		}
		sleep(ctx, 500*time.Millisecond)
	}
}

// supervise restarts a fleetd that ended on its own, as systemd's Restart=
// would, and records it; it returns when ctx ends.
func (in *injector) supervise(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, h := range in.c.Hosts {
			exited, how := h.Exited()
			if !exited {
				continue
			}
			release, ok := in.acquire(ctx, resource(FleetdKill, h.Index), time.Minute)
			if !ok {
				continue
			}
			if exited, _ := h.Exited(); exited {
				w := in.rec.begin(FleetdExit, h.Index, fmt.Sprintf("%s host %d (%s)", FleetdExit, h.Index, how))
				in.log("host %d: fleetd ended on its own (%s); starting it again in %s", h.Index, how, restartDelay)
				_ = h.TryStop(syscall.SIGKILL, 10*time.Second) // reaps it
				sleep(ctx, restartDelay)
				if err := h.TryStart(); err != nil {
					in.rec.problem("restart host %d after it ended: %v", h.Index, err)
				}
				in.rec.end(w)
			}
			release()
		}
	}
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
