package fleetctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/fleet-next/fleet/api"
)

// Polling of the cluster state while a command blocks (spec §2.3).
const (
	pollInterval = 250 * time.Millisecond
	// pollsPerAttempt polls make one --block-attempts attempt (about 2s).
	pollsPerAttempt = 8
	// reasonAttempts is how many consecutive attempts a unit may report
	// that it cannot be placed before the wait gives up on it.
	reasonAttempts = 2
	// submitAttempts bounds the wait of submit, which has no block flags.
	submitAttempts = 5
	// progressNames is how many pending unit names the progress line shows.
	progressNames = 3
)

// systemd states that make a started unit count as running.
const (
	systemdActive   = "active"
	systemdLoaded   = "loaded"
	systemdInactive = "inactive"
)

// blockFlags are the --block-attempts and --no-block flags.
type blockFlags struct {
	attempts int
	noBlock  bool
}

func (b *blockFlags) register(fs *pflag.FlagSet, until string) {
	b.registerAttempts(fs, until)
	fs.BoolVar(&b.noBlock, "no-block", false,
		"Do not wait until the units are "+until+" before exiting.")
}

func (b *blockFlags) registerAttempts(fs *pflag.FlagSet, until string) {
	fs.IntVar(&b.attempts, "block-attempts", 0,
		"Wait until the units are "+until+", performing up to N attempts of about 2s before giving up. 0 waits forever.")
}

func (b blockFlags) validate() error {
	if b.attempts < 0 {
		return usagef("--block-attempts must not be negative, got %d", b.attempts)
	}
	return nil
}

// maxPolls is the poll budget of the flags; 0 means no limit.
func (b blockFlags) maxPolls() int { return b.attempts * pollsPerAttempt }

// goalKind says what a waited-for unit must reach.
type goalKind int

const (
	goalState  goalKind = iota // the fleet current state
	goalActive                 // the fleet current state, then systemd active
	goalGone                   // no longer in the registry
	// goalStopped: systemd reports the unit not running on each machine
	// of the goal (global units, which have no current state).
	goalStopped
	// goalRunning: systemd reports the unit active on each machine of the
	// goal (global units).
	goalRunning
)

func (k goalKind) String() string {
	switch k {
	case goalState:
		return "state"
	case goalActive:
		return "active"
	case goalGone:
		return "gone"
	case goalStopped:
		return "stopped"
	case goalRunning:
		return "running"
	}
	return fmt.Sprintf("goalKind(%d)", int(k))
}

// goal is one unit a command waits for.
type goal struct {
	name  string
	kind  goalKind
	state string // current state awaited (goalState, goalActive) or printed once reached (goalStopped, goalRunning)
	// machines are the machines of goalStopped and goalRunning.
	machines []string
}

// progress is the wait's memory about one goal.
type progress struct {
	goal
	reached     bool   // current state reached (goalActive: now waiting for systemd)
	machineID   string // machine the unit reached its state on
	reasonPolls int    // consecutive polls that reported a placement problem
}

// awaiting is the state reported in a timeout message.
func (p *progress) awaiting() string {
	switch {
	case p.kind == goalStopped:
		return systemdInactive
	case p.kind == goalRunning, p.reached:
		return systemdActive
	}
	return p.state
}

// timeoutError reports the first unit that did not reach its goal in time.
type timeoutError struct {
	name  string
	state string // empty for goalGone
}

func (e *timeoutError) Error() string {
	if e.state == "" {
		return fmt.Sprintf("timed out waiting for unit %s to be destroyed", e.name)
	}
	return fmt.Sprintf("timed out waiting for unit %s to report state %s", e.name, e.state)
}

// waiter polls the API until units reach their goals. Its poll budget is
// shared by all its waits, so a command that waits twice (restart) stays
// within one --block-attempts.
type waiter struct {
	api      API
	sleep    func(context.Context, time.Duration) error
	out      io.Writer // "Unit X <state> on <machine>" lines
	progress io.Writer // terminal for a progress line; nil for none
	maxPolls int       // 0: no limit
	polls    int       // polls made so far
	ips      map[string]string
	shown    bool // a progress line is on the terminal
	// transients counts the polls in a row that the server answered 503.
	transients int
}

// maxTransients is how many polls in a row may find the server
// unavailable (503: its store did not answer in time) before the wait
// gives up with that error.
const maxTransients = 2 * pollsPerAttempt

// transient reports whether err is an answer worth asking again.
func transient(err error) bool {
	var apiErr *api.Error
	return errors.As(err, &apiErr) && apiErr.Code == http.StatusServiceUnavailable
}

// wait blocks until every goal is met, the poll budget is spent
// (*timeoutError), a unit cannot be placed (*exitError) or ctx ends.
func (w *waiter) wait(ctx context.Context, goals []goal) error {
	pending := make([]*progress, 0, len(goals))
	for _, g := range goals {
		pending = append(pending, &progress{goal: g})
	}
	defer w.clearProgress()
	for len(pending) > 0 {
		w.polls++
		next := pending[:0]
		for _, p := range pending {
			done, err := w.check(ctx, p)
			if transient(err) && w.transients < maxTransients {
				// The server could not answer now (its store was slow):
				// ask again at the next poll.
				w.transients++
				done, err = false, nil
			}
			if err != nil {
				return err
			}
			if done {
				w.transients = 0
			}
			if !done {
				next = append(next, p)
			}
		}
		pending = next
		if len(pending) == 0 {
			break
		}
		if w.maxPolls > 0 && w.polls >= w.maxPolls {
			p := pending[0]
			if p.kind == goalGone {
				return &timeoutError{name: p.name}
			}
			return &timeoutError{name: p.name, state: p.awaiting()}
		}
		w.showProgress(len(goals), pending)
		if err := w.sleep(ctx, pollInterval); err != nil {
			return fmt.Errorf("poll unit states: %w", err)
		}
	}
	return nil
}

// showProgress draws the progress line of a wait for several units.
func (w *waiter) showProgress(total int, pending []*progress) {
	if w.progress == nil || total < 2 {
		return
	}
	names := make([]string, 0, progressNames+1)
	for i, p := range pending {
		if i == progressNames {
			names = append(names, "...")
			break
		}
		names = append(names, p.name)
	}
	fmt.Fprintf(w.progress, "\r\x1b[KWaiting for %d of %d units: %s", len(pending), total, strings.Join(names, ", "))
	w.shown = true
}

// clearProgress erases the progress line, if one is shown.
func (w *waiter) clearProgress() {
	if w.shown {
		fmt.Fprint(w.progress, "\r\x1b[K")
		w.shown = false
	}
}

// check polls one goal once and reports whether it is met.
func (w *waiter) check(ctx context.Context, p *progress) (bool, error) {
	if p.kind == goalStopped || p.kind == goalRunning {
		return w.checkMachines(ctx, p)
	}
	if !p.reached {
		u, err := w.api.Unit(ctx, p.name)
		if err != nil {
			return false, fmt.Errorf("get unit %s: %w", p.name, err)
		}
		if p.kind == goalGone {
			return u == nil, nil
		}
		if u == nil {
			return false, fmt.Errorf("unit %s disappeared from the registry", p.name)
		}
		if u.CurrentState != p.state {
			return false, p.notPlaced(u)
		}
		p.reached = true
		p.machineID = u.MachineID
		w.printReached(ctx, u.Name, u.CurrentState, u.MachineID)
		if p.kind != goalActive {
			return true, nil
		}
	}
	states, err := w.api.UnitStates(ctx, p.machineID, p.name)
	if err != nil {
		return false, fmt.Errorf("get states of unit %s: %w", p.name, err)
	}
	for _, s := range states {
		if isActive(s) {
			return true, nil
		}
	}
	return false, nil
}

// checkMachines polls a goal on the systemd state of several machines.
func (w *waiter) checkMachines(ctx context.Context, p *progress) (bool, error) {
	states, err := w.api.UnitStates(ctx, "", p.name)
	if err != nil {
		return false, fmt.Errorf("get states of unit %s: %w", p.name, err)
	}
	byMachine := make(map[string]*api.UnitState, len(states))
	for _, s := range states {
		if s != nil {
			byMachine[s.MachineID] = s
		}
	}
	for _, m := range p.machines {
		s := byMachine[m]
		if p.kind == goalRunning && !isActive(s) || p.kind == goalStopped && isRunning(s) {
			return false, nil
		}
	}
	for _, m := range p.machines {
		w.printReached(ctx, p.name, p.state, m)
	}
	return true, nil
}

// isActive reports whether systemd reports s loaded and active.
func isActive(s *api.UnitState) bool {
	return s != nil && s.SystemdActiveState == systemdActive && s.SystemdLoadState == systemdLoaded
}

// isRunning reports whether systemd reports s active or on its way in or
// out of it.
func isRunning(s *api.UnitState) bool {
	if s == nil {
		return false
	}
	switch s.SystemdActiveState {
	case systemdActive, "activating", "deactivating", "reloading", "refreshing":
		return true
	}
	return false
}

// notPlaced counts polls on which the cluster said it cannot place u and
// fails once that lasted reasonAttempts attempts.
func (p *progress) notPlaced(u *api.Unit) error {
	if u.Reason == "" {
		p.reasonPolls = 0
		return nil
	}
	p.reasonPolls++
	if p.reasonPolls < reasonAttempts*pollsPerAttempt {
		return nil
	}
	return failf("Unit %s cannot be placed: %s", u.Name, u.Reason)
}

// printReached writes "Unit X <state>[ on <machine>]".
func (w *waiter) printReached(ctx context.Context, name, state, machineID string) {
	w.clearProgress()
	msg := fmt.Sprintf("Unit %s %s", name, state)
	if machineID != "" {
		msg += " on " + machineLegend(machineID, w.machineIP(ctx, machineID), false)
	}
	fmt.Fprintln(w.out, msg)
}

// machineIP looks up a machine's IP, listing machines again when the ID is
// not known yet. The legend is cosmetic, so a failed lookup gives "".
func (w *waiter) machineIP(ctx context.Context, id string) string {
	if ip, ok := w.ips[id]; ok {
		return ip
	}
	machines, err := w.api.Machines(ctx)
	if err != nil {
		return ""
	}
	w.ips = machineIPs(machines)
	return w.ips[id]
}

// waitFailure is the error of a command whose wait failed: the wait error
// under "Error waiting for units: ", then the command's own line if any.
// Errors that already carry their final message pass through.
func waitFailure(err error, line string) error {
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	msg := "Error waiting for units: " + err.Error()
	if line != "" {
		msg += "\n" + line
	}
	return &exitError{code: ExitError, msg: msg, err: err}
}
