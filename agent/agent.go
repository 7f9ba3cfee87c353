package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/fleet-next/fleet/internal/retry"
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
	// PublishRefusal records that this machine refuses version h of unit
	// name, and why, so that the engine places it elsewhere.
	PublishRefusal(ctx context.Context, name string, h unit.Hash, reason string) error
}

// Config configures an Agent.
type Config struct {
	MachineID string
	// ResyncInterval is the slow level-triggered pass that re-reads systemd
	// and re-applies the plan even without events.
	ResyncInterval time.Duration
	// RetryInitial and RetryMax bound the jittered exponential backoff of
	// retries: of one unit whose action failed (each unit backs off on its
	// own) and of a host-wide step that failed (reading systemd, a
	// daemon-reload, publishing, reconnecting to systemd).
	RetryInitial, RetryMax time.Duration
	Logger                 *slog.Logger
	Now                    func() time.Time
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

// ErrSystemdUnavailable is what Healthy reports while the agent cannot
// reach systemd.
var ErrSystemdUnavailable = errors.New("systemd is unreachable")

// Agent makes this host's systemd run what the engine scheduled here and
// publishes what systemd reports.
type Agent struct {
	cfg   Config
	sched Schedule
	pub   StatePublisher
	sd    UnitManager
	log   *slog.Logger

	republish chan struct{}
	connected chan struct{} // closed once systemd first answered
	connOnce  sync.Once

	mu        sync.Mutex            // guards the fields below
	launched  map[string]bool       // units this agent started (or adopted running)
	published map[string]unit.State // last state published per unit
	desired   map[string]unit.Placement
	haveSched bool
	failures  map[string]*failure // units whose last action failed
	health    error               // nil while systemd answers
	// files is the units directory as last read, kept current by the
	// agent's own writes (it is the directory's only writer), so that
	// publishing after a systemd event needs no directory read; nil until
	// the first read. The periodic resync reads the directory again.
	files map[string]unit.Hash
}

// failure is a unit whose action failed: it is retried with its own
// backoff, and its reason is published with its state, until an attempt
// succeeds or its placement changes (a new file or desired state).
type failure struct {
	placement unit.Placement // what failed to be applied (Content unused)
	reason    string
	backoff   *backoff.ExponentialBackOff
	next      time.Time // not retried before
}

// New returns an agent; Run starts it.
func New(sched Schedule, pub StatePublisher, sd UnitManager, cfg Config) *Agent {
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = 30 * time.Second
	}
	if cfg.RetryInitial <= 0 {
		cfg.RetryInitial = time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 5 * time.Minute
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
		republish: make(chan struct{}, 1), connected: make(chan struct{}),
		launched: map[string]bool{}, published: map[string]unit.State{}, failures: map[string]*failure{},
		health: fmt.Errorf("%w: not connected yet", ErrSystemdUnavailable)}
}

// Republish asks the agent to publish every state again (after the machine
// registered on a new lease, whose predecessor took the old states with it).
func (a *Agent) Republish() {
	select {
	case a.republish <- struct{}{}:
	default:
	}
}

// Healthy is nil while the agent reaches systemd; otherwise it says why not
// (matching ErrSystemdUnavailable).
func (a *Agent) Healthy() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.health
}

func (a *Agent) setHealth(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil && a.health == nil {
		a.log.Warn("systemd unreachable; reconnecting", "err", err)
	}
	if err == nil && a.health != nil {
		a.log.Info("systemd reachable")
	}
	a.health = err
	if err == nil {
		a.connOnce.Do(func() { close(a.connected) })
	}
}

// Connected is closed once the agent first reached systemd and applied
// its schedule there.
func (a *Agent) Connected() <-chan struct{} { return a.connected }

// unavailable reports whether err says systemd cannot be reached (an error
// in its chain has Unavailable() true).
func unavailable(err error) bool {
	var u interface{ Unavailable() bool }
	return errors.As(err, &u) && u.Unavailable()
}

// Run reconciles until ctx ends; it returns nil then, and an error only if
// its schedule watch ends while ctx has not. Losing the store never stops
// a unit: the agent keeps the last schedule it saw until a new one
// arrives. Losing systemd (its manager or the bus restarted) makes the
// agent reconnect with backoff, then resynchronize in full: what should
// run and does not is started again; what still runs is left running.
func (a *Agent) Run(ctx context.Context) error {
	sched := a.sched.WatchSchedule(ctx, a.cfg.MachineID)
	resync := time.NewTicker(a.cfg.ResyncInterval)
	defer resync.Stop()
	hostRetry := retry.Backoff(a.cfg.RetryInitial, min(a.cfg.RetryMax, 30*time.Second))
	var (
		events      <-chan []string // nil while disconnected from systemd
		stopWatch   context.CancelFunc
		connect     = time.After(0) // non-nil while disconnected
		retryTimer  *time.Timer
		retryC      <-chan time.Time
		lastRetryAt time.Time
	)
	defer func() {
		if stopWatch != nil {
			stopWatch()
		}
		if retryTimer != nil {
			retryTimer.Stop()
		}
	}()
	disconnect := func(why error) {
		a.setHealth(fmt.Errorf("%w: %w", ErrSystemdUnavailable, why))
		if stopWatch != nil {
			stopWatch()
		}
		events, stopWatch = nil, nil
		connect = time.After(hostRetry.NextBackOff())
	}
	// scheduleRetry arms the retry timer for at (zero: none).
	scheduleRetry := func(at time.Time) {
		if at.IsZero() || (retryC != nil && !lastRetryAt.IsZero() && !at.Before(lastRetryAt)) {
			return
		}
		if retryTimer != nil {
			retryTimer.Stop()
		}
		retryTimer = time.NewTimer(max(at.Sub(a.cfg.Now()), 0))
		retryC, lastRetryAt = retryTimer.C, at
	}
	for {
		dirty := false
		select {
		case <-ctx.Done():
			return nil
		case s, ok := <-sched:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("schedule watch ended")
			}
			a.mu.Lock()
			a.desired, a.haveSched = s, true
			a.mu.Unlock()
			dirty = true
		case <-connect:
			connect = nil
			wctx, cancel := context.WithCancel(ctx)
			ev, err := a.sd.Watch(wctx)
			if err != nil {
				cancel()
				if ctx.Err() != nil {
					return nil
				}
				disconnect(err)
				continue
			}
			events, stopWatch = ev, cancel
			// Whatever the agent knew of systemd is stale: read it all
			// again and adopt what still runs.
			a.mu.Lock()
			clear(a.launched)
			a.files = nil
			a.mu.Unlock()
			dirty = true
		case names, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				disconnect(errors.New("systemd watch connection lost"))
				continue
			}
			if err := a.refreshStates(ctx, names); err != nil && ctx.Err() == nil {
				if unavailable(err) {
					disconnect(err)
				} else {
					scheduleRetry(a.cfg.Now().Add(hostRetry.NextBackOff()))
				}
			}
			continue
		case <-a.republish:
			a.mu.Lock()
			clear(a.published)
			a.mu.Unlock()
			dirty = true
		case <-resync.C:
			dirty = true
		case <-retryC:
			retryC, lastRetryAt = nil, time.Time{}
			dirty = true
		}
		if !dirty || events == nil {
			continue
		}
		next, err := a.reconcile(ctx)
		switch {
		case err == nil:
			a.setHealth(nil)
			hostRetry.Reset()
			scheduleRetry(next)
		case ctx.Err() != nil:
			return nil
		case unavailable(err):
			disconnect(err)
		default:
			a.setHealth(nil) // systemd answered; the failure was something else
			d := hostRetry.NextBackOff()
			a.log.Warn("reconcile failed; will retry", "err", err, "in", d)
			scheduleRetry(a.cfg.Now().Add(d))
		}
	}
}

// reconcile plans against systemd's current state, applies the plan and
// publishes the resulting states. A unit whose action fails is skipped for
// the rest of the plan and retried on its own backoff; the other units go
// on. It returns when the next unit retry is due (zero if none) and an
// error only for what concerns the whole host: systemd unreachable, the
// units directory unreadable, a daemon-reload failed, publishing failed.
func (a *Agent) reconcile(ctx context.Context) (time.Time, error) {
	a.mu.Lock()
	desired, have := maps.Clone(a.desired), a.haveSched
	a.mu.Unlock()
	if !have {
		return time.Time{}, nil // never act on an empty view before the first schedule
	}
	actual, err := a.actual(ctx, desired)
	if err != nil {
		return time.Time{}, err
	}
	now := a.cfg.Now()
	waiting := a.settleFailures(desired, now)
	full := Plan(desired, actual, hasInstall)
	if err := a.refuseHostUnits(ctx, Without(full, waiting), actual, desired, now, waiting); err != nil {
		return time.Time{}, err
	}
	plan := Without(full, waiting)
	a.cfg.Metrics.Planned(plan)
	if len(plan) > 0 {
		a.log.Info("applying plan", "actions", planSummary(plan))
	}
	failed, applyErr := a.apply(ctx, plan)
	a.recordFailures(plan, failed, desired, now)
	// Every unit scheduled here, on the host, or reported before: a state
	// whose removal failed (the store was down) is removed on a later
	// round, not left behind.
	seen := make(map[string]bool, len(desired)+len(actual))
	for n := range desired {
		seen[n] = true
	}
	for n := range actual {
		seen[n] = true
	}
	a.mu.Lock()
	for n := range a.published {
		seen[n] = true
	}
	a.mu.Unlock()
	names := slices.Collect(maps.Keys(seen))
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
	} else if applyErr == nil || !unavailable(applyErr) {
		pubErr = a.refreshStates(ctx, names)
	}
	return a.nextRetry(), errors.Join(applyErr, pubErr)
}

// refuseHostUnits refuses the units of plan new to this host that would
// replace a unit the host has of its own (same name, or an [Install]
// Alias= naming it, outside fleet's units directory): linking them would
// take the host's unit over. A refused unit fails (its reason says why, it
// is added to skip) and the refusal is published so that the engine
// places it on another machine. An error is returned only if systemd is
// unreachable.
func (a *Agent) refuseHostUnits(ctx context.Context, plan []Action, actual map[string]Actual,
	desired map[string]unit.Placement, now time.Time, skip map[string]bool) error {
	for _, act := range plan {
		if act.Kind != ActWriteFile {
			continue
		}
		if _, onHost := actual[act.Unit]; onHost {
			continue // fleet's own file already: adopted, not checked again
		}
		why, err := a.hostUnitClash(ctx, act.Unit, act.Content)
		if err != nil {
			if unavailable(err) {
				return err
			}
			why = fmt.Sprintf("cannot tell whether %s is a unit of this host: %v", act.Unit, err)
		}
		if why == "" {
			continue
		}
		skip[act.Unit] = true
		a.recordFailures(nil, map[string]error{act.Unit: errors.New(why)}, desired, now)
		p := desired[act.Unit]
		if err := a.pub.PublishRefusal(ctx, act.Unit, p.Hash, why); err != nil {
			a.log.Warn("publishing a refusal failed", "unit", act.Unit, "err", err)
		}
	}
	return nil
}

// hostUnitClash says which of the host's own units name (or an alias in
// its contents) would replace, or "" if none.
func (a *Agent) hostUnitClash(ctx context.Context, name, content string) (string, error) {
	names := []string{name}
	if f, err := unit.Parse(content); err == nil {
		for _, v := range f.Values("Install", "Alias") {
			names = append(names, strings.Fields(v)...)
		}
	}
	for _, n := range names {
		path, err := a.sd.HostUnit(ctx, n)
		if err != nil {
			return "", err
		}
		if path == "" {
			continue
		}
		if n == name {
			return fmt.Sprintf("%s is a unit of this host (%s); fleet does not replace it", name, path), nil
		}
		return fmt.Sprintf("%s has Alias=%s, a unit of this host (%s); fleet does not replace it", name, n, path), nil
	}
	return "", nil
}

// settleFailures forgets the failures of units whose placement changed
// (fixed, replaced, destroyed or moved: they are tried at once) and
// returns the units still waiting for their retry.
func (a *Agent) settleFailures(desired map[string]unit.Placement, now time.Time) map[string]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	waiting := map[string]bool{}
	for n, f := range a.failures {
		p, ok := desired[n]
		if !ok || p.Hash != f.placement.Hash || p.Desired != f.placement.Desired {
			delete(a.failures, n)
			continue
		}
		if now.Before(f.next) {
			waiting[n] = true
		}
	}
	return waiting
}

// recordFailures records the units whose action failed in this plan and
// forgets the failures of units whose actions all succeeded.
func (a *Agent) recordFailures(plan []Action, failed map[string]error, desired map[string]unit.Placement, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for n, err := range failed {
		f := a.failures[n]
		if f == nil {
			f = &failure{backoff: retry.Backoff(a.cfg.RetryInitial, a.cfg.RetryMax)}
			a.failures[n] = f
		}
		p := desired[n]
		p.Content = ""
		f.placement, f.reason = p, err.Error()
		d := f.backoff.NextBackOff()
		f.next = now.Add(d)
		a.log.Warn("unit action failed; retrying later", "unit", n, "err", err, "in", d.Round(time.Millisecond))
	}
	for _, act := range plan {
		if _, bad := failed[act.Unit]; !bad && act.Unit != "" {
			delete(a.failures, act.Unit)
		}
	}
}

// nextRetry is when the earliest waiting unit is due, or zero.
func (a *Agent) nextRetry() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	var next time.Time
	for _, f := range a.failures {
		if next.IsZero() || f.next.Before(next) {
			next = f.next
		}
	}
	return next
}

// Failures returns the reason of every unit whose last action failed.
func (a *Agent) Failures() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]string, len(a.failures))
	for n, f := range a.failures {
		out[n] = f.reason
	}
	return out
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

// apply runs the plan in order. An action that fails fails its unit: the
// unit's later actions are skipped and the others go on. It returns the
// units that failed, and an error that concerns the whole host: systemd
// unreachable (the rest of the plan is not tried) or a daemon-reload that
// failed (no unit is started on definitions systemd may not have).
func (a *Agent) apply(ctx context.Context, plan []Action) (map[string]error, error) {
	failed := map[string]error{}
	var reloadErr error
	for _, act := range plan {
		if _, bad := failed[act.Unit]; bad && act.Unit != "" {
			continue
		}
		if act.Kind == ActStart && reloadErr != nil {
			continue
		}
		err := a.do(ctx, act)
		a.cfg.Metrics.Applied(act.Kind, err)
		switch {
		case err == nil:
		case ctx.Err() != nil || unavailable(err):
			return failed, fmt.Errorf("%s: %w", act, err)
		case act.Unit == "":
			reloadErr = fmt.Errorf("%s: %w", act, err)
		default:
			failed[act.Unit] = err
		}
	}
	return failed, reloadErr
}

// do runs one action and keeps the agent's records of files and launches.
func (a *Agent) do(ctx context.Context, act Action) error {
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
	return err
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
		var reason string
		if f := a.failures[n]; f != nil {
			reason = f.reason
		}
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
		cur := unit.StateLoaded
		switch {
		case !onDisk && reason == "":
			continue // not loaded yet; the next reconcile writes it
		case !onDisk:
			cur = unit.StateInactive // its file could not be written: say why
		case launched:
			cur = unit.StateLaunched
		}
		s := unit.State{Name: n, MachineID: a.cfg.MachineID, Hash: h, SystemdState: states[n], Current: cur,
			Reason: reason}
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
// host leaves the cluster cleanly (fleet's behaviour on SIGTERM). A unit
// that cannot be unloaded does not keep the others loaded.
func (a *Agent) Purge(ctx context.Context) error {
	actual, err := a.actual(ctx, nil)
	if err != nil {
		return err
	}
	failed, err := a.apply(ctx, Plan(nil, actual, hasInstall))
	errs := []error{err}
	for n, err := range failed {
		errs = append(errs, fmt.Errorf("unload %s: %w", n, err))
	}
	for n := range actual {
		if err := a.pub.DeleteState(ctx, n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func sameState(a, b unit.State) bool {
	return a.Hash == b.Hash && a.SystemdState == b.SystemdState && a.Current == b.Current && a.Reason == b.Reason
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
