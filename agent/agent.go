package agent

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/fleet-next/fleet/unit"
)

// Schedule delivers this machine's complete schedule whenever it changes.
type Schedule interface {
	WatchSchedule(ctx context.Context, machineID string) <-chan map[string]unit.Placement
}

// StatePublisher records this machine's unit states in the cluster.
type StatePublisher interface {
	PublishState(ctx context.Context, s unit.State) error
	DeleteState(ctx context.Context, name string) error
}

// Config configures an Agent.
type Config struct {
	MachineID string
	// ResyncInterval is the slow level-triggered pass that re-reads systemd
	// and re-applies the plan even without events.
	ResyncInterval time.Duration
	// RetryInterval is how soon a failed apply or publish is retried.
	RetryInterval time.Duration
	Logger        *slog.Logger
	Now           func() time.Time
	// Metrics receives measurements; nil records none.
	Metrics Metrics
}

// Metrics receives the agent's measurements. Implementations must be safe
// for concurrent use and must not block.
type Metrics interface {
	// Planned reports one plan computed against systemd (possibly empty).
	Planned(plan []Action)
	// Applied reports one action run against systemd; err if it failed.
	Applied(kind ActionKind, err error)
	// Published reports one unit state written to (or removed from) the
	// cluster; err if the write failed.
	Published(err error)
	// Units reports how many units this machine holds in each fleet state
	// (loaded, launched), as last published.
	Units(byState map[unit.FleetState]int)
}

type noMetrics struct{}

func (noMetrics) Planned([]Action)              {}
func (noMetrics) Applied(ActionKind, error)     {}
func (noMetrics) Published(error)               {}
func (noMetrics) Units(map[unit.FleetState]int) {}

// Agent makes this host's systemd run what the engine scheduled here and
// publishes what systemd reports.
type Agent struct {
	cfg   Config
	sched Schedule
	pub   StatePublisher
	sd    UnitManager
	log   *slog.Logger

	republish chan struct{}

	mu        sync.Mutex            // guards the fields below
	launched  map[string]bool       // units this agent started (or adopted running)
	published map[string]unit.State // last state published per unit
	desired   map[string]unit.Placement
	haveSched bool
	// files is the units directory as last read, kept current by the
	// agent's own writes (it is the directory's only writer), so that
	// publishing after a systemd event needs no directory read; nil until
	// the first read. The periodic resync reads the directory again.
	files map[string]unit.Hash
}

// New returns an agent; Run starts it.
func New(sched Schedule, pub StatePublisher, sd UnitManager, cfg Config) *Agent {
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = 30 * time.Second
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = time.Second
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
	return &Agent{cfg: cfg, sched: sched, pub: pub, sd: sd, log: cfg.Logger,
		republish: make(chan struct{}, 1),
		launched:  map[string]bool{}, published: map[string]unit.State{}}
}

// Republish asks the agent to publish every state again (after the machine
// registered on a new lease, whose predecessor took the old states with it).
func (a *Agent) Republish() {
	select {
	case a.republish <- struct{}{}:
	default:
	}
}

// Run reconciles until ctx ends. Losing the store never stops a unit: the
// agent keeps the last schedule it saw until a new one arrives.
func (a *Agent) Run(ctx context.Context) error {
	events, err := a.sd.Watch(ctx)
	if err != nil {
		return fmt.Errorf("watch systemd: %w", err)
	}
	sched := a.sched.WatchSchedule(ctx, a.cfg.MachineID)
	resync := time.NewTicker(a.cfg.ResyncInterval)
	defer resync.Stop()
	var retry <-chan time.Time
	for {
		dirty := false
		select {
		case <-ctx.Done():
			return nil
		case s, ok := <-sched:
			if !ok {
				return nil
			}
			a.mu.Lock()
			a.desired, a.haveSched = s, true
			a.mu.Unlock()
			dirty = true
		case names, ok := <-events:
			if !ok {
				return nil
			}
			if a.refreshStates(ctx, names) != nil {
				retry = time.After(a.cfg.RetryInterval)
			}
			continue
		case <-a.republish:
			a.mu.Lock()
			clear(a.published)
			a.mu.Unlock()
			dirty = true
		case <-resync.C:
			dirty = true
		case <-retry:
			retry = nil
			dirty = true
		}
		if dirty {
			if err := a.reconcile(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				a.log.Warn("reconcile failed; will retry", "err", err)
				retry = time.After(a.cfg.RetryInterval)
			}
		}
	}
}

// reconcile plans against systemd's current state, applies the plan and
// publishes the resulting states.
func (a *Agent) reconcile(ctx context.Context) error {
	a.mu.Lock()
	desired, have := maps.Clone(a.desired), a.haveSched
	a.mu.Unlock()
	if !have {
		return nil // never act on an empty view before the first schedule
	}
	actual, err := a.actual(ctx, desired)
	if err != nil {
		return err
	}
	plan := Plan(desired, actual, hasInstall)
	a.cfg.Metrics.Planned(plan)
	if len(plan) > 0 {
		a.log.Info("applying plan", "actions", planSummary(plan))
	}
	applyErr := a.apply(ctx, plan)
	names := make([]string, 0, len(desired)+len(actual))
	for n := range desired {
		names = append(names, n)
	}
	for n := range actual {
		if _, ok := desired[n]; !ok {
			names = append(names, n)
		}
	}
	var pubErr error
	if len(plan) == 0 {
		// Nothing was done since actual read the host: publish from that
		// read rather than reading every unit file and state again (the
		// idle cost of the periodic resync).
		files := make(map[string]unit.Hash, len(actual))
		states := make(map[string]unit.SystemdState, len(actual))
		for n, act := range actual {
			files[n], states[n] = act.Hash, act.Systemd
		}
		pubErr = a.publishStates(ctx, a.ours(names), files, states)
	} else {
		pubErr = a.refreshStates(ctx, names)
	}
	if applyErr != nil {
		return applyErr
	}
	return pubErr
}

// actual reads the unit files and systemd's state of them. A unit the
// agent has no record of (after a restart) counts as launched if systemd
// runs it and it should be launched: it is adopted, not restarted.
func (a *Agent) actual(ctx context.Context, desired map[string]unit.Placement) (map[string]Actual, error) {
	files, err := a.sd.UnitFiles(ctx)
	if err != nil {
		return nil, fmt.Errorf("list unit files: %w", err)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	states, err := a.sd.States(ctx, names)
	if err != nil {
		return nil, fmt.Errorf("read systemd states: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.files = maps.Clone(files)
	out := make(map[string]Actual, len(files))
	for n, h := range files {
		act := Actual{Hash: h, Systemd: states[n]}
		l, known := a.launched[n]
		if !known {
			// Adopt what a previous fleetd left running.
			l = act.Running() && desired[n].Desired == unit.StateLaunched
			a.launched[n] = l
		}
		act.Launched = l
		out[n] = act
	}
	for n := range a.launched {
		if _, ok := files[n]; !ok {
			delete(a.launched, n)
		}
	}
	return out, nil
}

// apply runs the plan in order and stops at the first error.
func (a *Agent) apply(ctx context.Context, plan []Action) error {
	for _, act := range plan {
		var err error
		switch act.Kind {
		case ActStop:
			err = a.sd.Stop(ctx, act.Unit)
			if err == nil {
				a.setLaunched(act.Unit, false)
			}
		case ActDisable:
			err = a.sd.Disable(ctx, []string{act.Unit})
		case ActRemoveFile:
			err = a.sd.RemoveUnitFile(ctx, act.Unit)
			if err == nil {
				a.setFile(act.Unit, nil)
			} else {
				a.forgetFiles()
			}
		case ActResetFailed:
			err = a.sd.ResetFailed(ctx, act.Unit)
		case ActWriteFile:
			err = a.sd.WriteUnitFile(ctx, act.Unit, act.Content)
			if err == nil {
				h := unit.HashOf(act.Content)
				a.setFile(act.Unit, &h)
			} else {
				a.forgetFiles() // unknown now: the next read settles it
			}
		case ActLink:
			err = a.sd.Link(ctx, []string{act.Unit})
		case ActEnable:
			err = a.sd.Enable(ctx, []string{act.Unit})
		case ActReload:
			err = a.sd.Reload(ctx)
		case ActStart:
			err = a.sd.Start(ctx, act.Unit)
			if err == nil {
				a.setLaunched(act.Unit, true)
			}
		}
		a.cfg.Metrics.Applied(act.Kind, err)
		if err != nil {
			return fmt.Errorf("%s: %w", act, err)
		}
	}
	return nil
}

// setFile records a write (h) or removal (nil) of a unit file.
func (a *Agent) setFile(name string, h *unit.Hash) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.files == nil {
		return
	}
	if h == nil {
		delete(a.files, name)
	} else {
		a.files[name] = *h
	}
}

// forgetFiles makes the next publish read the directory.
func (a *Agent) forgetFiles() {
	a.mu.Lock()
	a.files = nil
	a.mu.Unlock()
}

// unitFiles returns the units directory, from memory when it is known.
func (a *Agent) unitFiles(ctx context.Context) (map[string]unit.Hash, error) {
	a.mu.Lock()
	files := maps.Clone(a.files)
	a.mu.Unlock()
	if files != nil {
		return files, nil
	}
	files, err := a.sd.UnitFiles(ctx)
	if err != nil {
		return nil, fmt.Errorf("list unit files: %w", err)
	}
	return files, nil
}

func (a *Agent) setLaunched(name string, v bool) {
	a.mu.Lock()
	a.launched[name] = v
	a.mu.Unlock()
}

// refreshStates reads systemd's state of names and publishes what changed.
func (a *Agent) refreshStates(ctx context.Context, names []string) error {
	mine := a.ours(names)
	if len(mine) == 0 {
		return nil
	}
	files, err := a.unitFiles(ctx)
	if err != nil {
		return err
	}
	states, err := a.sd.States(ctx, mine)
	if err != nil {
		return fmt.Errorf("read systemd states: %w", err)
	}
	return a.publishStates(ctx, mine, files, states)
}

// ours returns the names this agent reports on: scheduled here or
// published before. It returns none before the first schedule.
func (a *Agent) ours(names []string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.haveSched {
		return nil
	}
	var mine []string
	for _, n := range names {
		if _, ok := a.desired[n]; ok {
			mine = append(mine, n)
		} else if _, ok := a.published[n]; ok {
			mine = append(mine, n)
		}
	}
	return mine
}

// publishStates publishes what changed among mine, given the unit files
// and systemd states read for them.
func (a *Agent) publishStates(ctx context.Context, mine []string, files map[string]unit.Hash, states map[string]unit.SystemdState) error {
	if len(mine) == 0 {
		return nil
	}
	defer a.countUnits()
	var firstErr error
	for _, n := range mine {
		h, onDisk := files[n]
		a.mu.Lock()
		_, want := a.desired[n]
		prev, had := a.published[n]
		launched := a.launched[n]
		a.mu.Unlock()
		if !want && !onDisk {
			if had {
				err := a.pub.DeleteState(ctx, n)
				a.cfg.Metrics.Published(err)
				if err != nil {
					firstErr = cmp.Or(firstErr, err)
					continue
				}
				a.mu.Lock()
				delete(a.published, n)
				a.mu.Unlock()
			}
			continue
		}
		if !onDisk {
			continue // not loaded yet; the next reconcile writes it
		}
		cur := unit.StateLoaded
		if launched {
			cur = unit.StateLaunched
		}
		s := unit.State{Name: n, MachineID: a.cfg.MachineID, Hash: h, SystemdState: states[n], Current: cur}
		if had && sameState(prev, s) {
			continue
		}
		s.Since = a.cfg.Now()
		err := a.pub.PublishState(ctx, s)
		a.cfg.Metrics.Published(err)
		if err != nil {
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		a.mu.Lock()
		a.published[n] = s
		a.mu.Unlock()
	}
	return firstErr
}

// countUnits reports the published states by fleet state to the metrics.
func (a *Agent) countUnits() {
	by := map[unit.FleetState]int{unit.StateLoaded: 0, unit.StateLaunched: 0}
	a.mu.Lock()
	for _, s := range a.published {
		by[s.Current]++
	}
	a.mu.Unlock()
	a.cfg.Metrics.Units(by)
}

// Purge unloads every unit this host has and deletes their states: the
// host leaves the cluster cleanly (fleet's behaviour on SIGTERM).
func (a *Agent) Purge(ctx context.Context) error {
	actual, err := a.actual(ctx, nil)
	if err != nil {
		return err
	}
	if err := a.apply(ctx, Plan(nil, actual, hasInstall)); err != nil {
		return err
	}
	var firstErr error
	for n := range actual {
		if err := a.pub.DeleteState(ctx, n); err != nil {
			firstErr = cmp.Or(firstErr, err)
		}
	}
	return firstErr
}

func sameState(a, b unit.State) bool {
	return a.Hash == b.Hash && a.SystemdState == b.SystemdState && a.Current == b.Current
}

// hasInstall reports whether unit contents have an [Install] section. It
// is asked only for units the plan writes.
func hasInstall(content string) bool {
	f, err := unit.Parse(content)
	return err == nil && f.HasInstall()
}

func planSummary(plan []Action) string {
	parts := make([]string, len(plan))
	for i, a := range plan {
		parts[i] = a.String()
	}
	return strings.Join(parts, ", ")
}
