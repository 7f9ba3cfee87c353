package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/fleet-next/fleet/internal/pause"
	"github.com/fleet-next/fleet/systemd"
	"github.com/fleet-next/fleet/systemd/launch"
	"github.com/fleet-next/fleet/test/cluster"
)

// systemdConfig configures the real-systemd benchmark.
type systemdConfig struct {
	Hosts     int           // hosts of the cluster
	Units     int           // units started with one fleetctl command
	HostUnits int           // units loaded on one host for the footprint
	Idle      time.Duration // window over which that host's fleetd is measured
	TTL       time.Duration // agent_ttl
}

// systemdResult is one run of the real-systemd benchmark.
type systemdResult struct {
	Config systemdConfig
	// Floor is bare systemd on one private manager: StartUnit of every
	// unit, already written, linked and loaded, one after another, until
	// each is active. FloorPrepare is writing, linking and loading them.
	Floor        latencies
	FloorPrepare time.Duration
	// FloorLoad is Floor counted from the first unit file written: what
	// systemd needs to load and start the units, without fleet.
	FloorLoad latencies
	// FloorSpread is the same on as many managers as the cluster has hosts,
	// the units spread over them as fleet spreads them, all managers
	// started at once: the systemd work of the fleet run without fleet.
	FloorSpread latencies
	// Fleet is `fleetctl start` of the same number of units (files given
	// on the command line) on the cluster: from the command's start until
	// each unit is active in its host's systemd. Command is how long the
	// command itself ran (it waits until every unit is active).
	Fleet   latencies
	Command time.Duration
	// Placed is the same command until each unit appeared in its host's
	// schedule (accepted and placed by the engine); the rest of Fleet is
	// the agents and systemd.
	Placed latencies
	// HostLoad is submitting HostUnits units pinned to one host until
	// they are all active there; LoadUse is that host's fleetd meanwhile.
	HostLoad time.Duration
	LoadUse  usage
	// IdleUse is that host's fleetd over the idle window with every unit
	// running.
	IdleUse usage
}

// runSystemd runs the real-systemd benchmark.
func runSystemd(ctx context.Context, cfg systemdConfig, log *slog.Logger) (systemdResult, error) {
	res := systemdResult{Config: cfg}
	log.Info("bare systemd floor", "units", cfg.Units)
	if err := res.floor(ctx, log, cfg.Units, cfg.Hosts); err != nil {
		return res, err
	}
	h := &harness{log: log}
	err := h.run(func() error {
		log.Info("starting cluster", "hosts", cfg.Hosts)
		c := cluster.New(h, cluster.Options{Hosts: cfg.Hosts, AgentTTL: cfg.TTL})
		log.Info("fleetctl start", "units", cfg.Units)
		if err := res.fleetStart(ctx, h, c, cfg.Units); err != nil {
			return err
		}
		log.Info("loading one host", "units", cfg.HostUnits)
		return res.loadHost(ctx, h, c, cfg)
	})
	return res, err
}

// sdUnitText is the unit file of the real-systemd runs.
func sdUnitText(name string) string {
	return fmt.Sprintf("[Unit]\nDescription=benchmark unit %s\n\n[Service]\nExecStart=/bin/sleep infinity\n", name)
}

// prober follows one systemd manager over a connection of its own.
type prober struct{ m *systemd.Manager }

func newProber(ctx context.Context, h *harness, socket string) (*prober, error) {
	m, err := systemd.New(ctx, systemd.Config{UnitsDir: filepath.Join(h.TempDir(), "probe"), PrivateSocket: socket})
	if err != nil {
		return nil, err
	}
	h.Cleanup(func() { _ = m.Close() })
	return &prober{m: m}, nil
}

// recheck is how often wait asks for every unit still pending, in case a
// change was missed. Asking systemd for units it has not loaded makes it
// load each one, which slows down the managers being measured, so the
// watch does the work.
const recheck = 5 * time.Second

// activeWatch follows the probers' managers from before an action until
// every name is active on one of them.
type activeWatch struct {
	probers []*prober
	names   []string
	changes chan changeBatch
	cancel  context.CancelFunc
}

// changeBatch is one batch of names a manager reported changed, and when.
type changeBatch struct {
	p     *prober
	names []string
	at    time.Time
}

// watchActive subscribes to the probers' managers. Call it before the
// action, then wait.
func watchActive(ctx context.Context, probers []*prober, names []string) (*activeWatch, error) {
	wctx, cancel := context.WithCancel(ctx)
	w := &activeWatch{probers: probers, names: names, changes: make(chan changeBatch, 1024), cancel: cancel}
	for _, p := range probers {
		events, err := p.m.Watch(wctx)
		if err != nil {
			cancel()
			return nil, err
		}
		go func() {
			for names := range events {
				select {
				case w.changes <- changeBatch{p: p, names: names, at: time.Now()}:
				case <-wctx.Done():
					return
				}
			}
		}()
	}
	return w, nil
}

// wait returns, per name, how long after start it was first seen active.
// A unit is looked at when its manager reports it changed (systemd's
// signals, coalesced over 50 ms), and every unit still pending once per
// recheck. It ends the watch.
func (w *activeWatch) wait(ctx context.Context, start time.Time, limit time.Duration) ([]time.Duration, error) {
	defer w.cancel()
	index := make(map[string]int, len(w.names))
	pending := make(map[string]bool, len(w.names))
	for i, n := range w.names {
		index[n] = i
		pending[n] = true
	}
	seen := make([]time.Duration, len(w.names))
	check := func(p *prober, names []string, at time.Time) error {
		var ask []string
		for _, n := range names {
			if pending[n] {
				ask = append(ask, n)
			}
		}
		if len(ask) == 0 {
			return nil
		}
		st, err := p.m.States(ctx, ask)
		if err != nil {
			return err
		}
		for _, n := range ask {
			if st[n].ActiveState == "active" {
				seen[index[n]] = max(0, at.Sub(start))
				delete(pending, n)
			}
		}
		return nil
	}
	tick := time.NewTicker(recheck)
	defer tick.Stop()
	deadline := time.NewTimer(time.Until(start.Add(limit)))
	defer deadline.Stop()
	for len(pending) > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return nil, fmt.Errorf("%d of %d units not active after %s", len(pending), len(w.names), limit)
		case b := <-w.changes:
			if err := check(b.p, b.names, b.at); err != nil {
				return nil, err
			}
		case <-tick.C:
			at := time.Now()
			rest := make([]string, 0, len(pending))
			for n := range pending {
				rest = append(rest, n)
			}
			for _, p := range w.probers {
				if err := check(p, rest, at); err != nil {
					return nil, err
				}
			}
		}
	}
	return seen, nil
}

// floor starts n units on private systemd --user managers with no fleet:
// all on one manager, then spread over hosts managers started together.
// Each run's managers are stopped before the next run.
func (res *systemdResult) floor(ctx context.Context, log *slog.Logger, n, hosts int) error {
	run := func(managers int) (bareRun, error) {
		h := &harness{log: log}
		var r bareRun
		err := h.run(func() error {
			var err error
			r, err = bareStart(ctx, h, managers, n)
			return err
		})
		return r, err
	}
	one, err := run(1)
	if err != nil {
		return err
	}
	res.FloorPrepare = one.prepare
	res.Floor = summarize(one.started)
	loaded := make([]time.Duration, len(one.started))
	for i, d := range one.started {
		loaded[i] = d + one.prepare
	}
	res.FloorLoad = summarize(loaded)
	spread, err := run(hosts)
	if err != nil {
		return err
	}
	res.FloorSpread = summarize(spread.started)
	return nil
}

// bareRun is one run of bareStart.
type bareRun struct {
	prepare time.Duration   // writing, linking and loading the units
	started []time.Duration // per unit: first StartUnit -> active
}

// bareStart writes, links and loads n units spread over managers fresh
// managers, then starts each manager's units one after another, the
// managers in parallel.
func bareStart(ctx context.Context, h *harness, managers, n int) (bareRun, error) {
	names := unitNames(fmt.Sprintf("floor%d", managers), n)
	type bare struct {
		m     *systemd.Manager
		names []string
	}
	var bares []bare
	var probers []*prober
	for i := range managers {
		dir := h.TempDir()
		lm, err := launch.Start(ctx, launch.Options{Dir: filepath.Join(dir, "rt"),
			CgroupName: fmt.Sprintf("fleetbench/%d-floor%d-%d", os.Getpid(), managers, i)})
		if err != nil {
			return bareRun{}, fmt.Errorf("start systemd: %w", err)
		}
		h.Cleanup(func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
			defer cancel()
			if err := lm.Stop(sctx); err != nil {
				h.log.Warn("stopping systemd", "err", err)
			}
		})
		m, err := systemd.New(ctx, systemd.Config{UnitsDir: filepath.Join(dir, "units"), PrivateSocket: lm.PrivateSocket()})
		if err != nil {
			return bareRun{}, err
		}
		h.Cleanup(func() { _ = m.Close() })
		var mine []string
		for j := i; j < n; j += managers {
			mine = append(mine, names[j])
		}
		bares = append(bares, bare{m: m, names: mine})
		p, err := newProber(ctx, h, lm.PrivateSocket())
		if err != nil {
			return bareRun{}, err
		}
		probers = append(probers, p)
	}
	t0 := time.Now()
	for _, b := range bares {
		for _, name := range b.names {
			if err := b.m.WriteUnitFile(ctx, name, sdUnitText(name)); err != nil {
				return bareRun{}, err
			}
		}
		if err := b.m.Link(ctx, b.names); err != nil {
			return bareRun{}, err
		}
		if err := b.m.Reload(ctx); err != nil {
			return bareRun{}, err
		}
	}
	prepare := time.Since(t0)
	w, err := watchActive(ctx, probers, names)
	if err != nil {
		return bareRun{}, err
	}
	start := time.Now()
	errs := make([]error, len(bares))
	var wg sync.WaitGroup
	for i, b := range bares {
		wg.Go(func() {
			for _, name := range b.names {
				if err := b.m.Start(ctx, name); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return bareRun{}, err
	}
	seen, err := w.wait(ctx, start, 5*time.Minute)
	if err != nil {
		return bareRun{}, fmt.Errorf("bare systemd: %w", err)
	}
	return bareRun{prepare: prepare, started: seen}, nil
}

// fleetStart runs `fleetctl start` with n unit files against host 0.
func (res *systemdResult) fleetStart(ctx context.Context, h *harness, c *cluster.Cluster, n int) error {
	var probers []*prober
	for _, host := range c.Hosts {
		p, err := newProber(ctx, h, host.SD.PrivateSocket())
		if err != nil {
			return err
		}
		probers = append(probers, p)
	}
	dir := h.TempDir()
	names := unitNames("sd", n)
	args := []string{"--endpoint", c.Hosts[0].Endpoint, "start"}
	for _, name := range names {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(sdUnitText(name)), 0o644); err != nil {
			return err
		}
		args = append(args, path)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, filepath.Join(cluster.Binaries(h), "fleetctl"), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	w, err := watchActive(ctx, probers, names)
	if err != nil {
		return err
	}
	placed := watchPlaced(ctx, c, names)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("fleetctl start: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	seen, werr := w.wait(ctx, start, 5*time.Minute)
	cerr := <-done
	res.Command = time.Since(start)
	if werr != nil {
		return fmt.Errorf("fleetctl start: %w", werr)
	}
	if cerr != nil {
		return fmt.Errorf("fleetctl start: %w\n%s", cerr, out.String())
	}
	res.Fleet = summarize(seen)
	res.Placed = summarize(placed(start))
	// Leave the hosts empty for the next run.
	reg := c.Registry()
	for _, name := range names {
		if err := reg.DestroyUnit(ctx, name); err != nil {
			return err
		}
	}
	return waitNoStates(ctx, c, 5*time.Minute)
}

// watchPlaced follows every host's schedule. The function it returns
// stops following and returns, per name, how long after start it was first
// placed (0 for a name never seen).
func watchPlaced(ctx context.Context, c *cluster.Cluster, names []string) func(start time.Time) []time.Duration {
	wctx, cancel := context.WithCancel(ctx)
	reg := c.Registry()
	var mu sync.Mutex // guards first
	first := make(map[string]time.Time, len(names))
	var wg sync.WaitGroup
	for _, h := range c.Hosts {
		scheds := reg.WatchSchedule(wctx, h.MachineID)
		wg.Go(func() {
			for s := range scheds {
				now := time.Now()
				mu.Lock()
				for n := range s {
					if _, ok := first[n]; !ok {
						first[n] = now
					}
				}
				mu.Unlock()
			}
		})
	}
	return func(start time.Time) []time.Duration {
		cancel()
		wg.Wait()
		out := make([]time.Duration, 0, len(names))
		for _, n := range names {
			if t, ok := first[n]; ok {
				out = append(out, max(0, t.Sub(start)))
			}
		}
		return out
	}
}

// waitNoStates waits until no machine reports any unit.
func waitNoStates(ctx context.Context, c *cluster.Cluster, limit time.Duration) error {
	reg := c.Registry()
	deadline := time.Now().Add(limit)
	for {
		states, err := reg.States(ctx, "", "")
		if err != nil {
			return err
		}
		if len(states) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d unit states left after %s", len(states), limit)
		}
		if err := pause.For(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// loadHost runs cfg.HostUnits units on host 0 and measures its fleetd.
func (res *systemdResult) loadHost(ctx context.Context, h *harness, c *cluster.Cluster, cfg systemdConfig) error {
	host := c.Hosts[0]
	pid := host.PID()
	p, err := newProber(ctx, h, host.SD.PrivateSocket())
	if err != nil {
		return err
	}
	names := unitNames("host", cfg.HostUnits)
	before, err := sampleProc(pid)
	if err != nil {
		return err
	}
	w, err := watchActive(ctx, []*prober{p}, names)
	if err != nil {
		return err
	}
	start := time.Now()
	if _, err := submitUnits(ctx, c.Registry(), names, "MachineID="+host.MachineID, 8); err != nil {
		return err
	}
	if _, err := w.wait(ctx, start, 10*time.Minute); err != nil {
		return fmt.Errorf("loading host: %w", err)
	}
	res.HostLoad = time.Since(start)
	loaded, err := sampleProc(pid)
	if err != nil {
		return err
	}
	res.LoadUse = since(before, loaded)
	// Let the agent publish the last states before the quiet window.
	if err := pause.For(ctx, 5*time.Second); err != nil {
		return err
	}
	idleStart, err := sampleProc(pid)
	if err != nil {
		return err
	}
	if err := pause.For(ctx, cfg.Idle); err != nil {
		return err
	}
	idleEnd, err := sampleProc(pid)
	if err != nil {
		return err
	}
	res.IdleUse = since(idleStart, idleEnd)
	return ctx.Err()
}
