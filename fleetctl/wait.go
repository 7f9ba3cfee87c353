package fleetctl

import (
	"context"
	"errors"
	"fmt"
	"io"
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
)

// systemd states that make a started unit count as running.
const (
	systemdActive = "active"
	systemdLoaded = "loaded"
)

// blockFlags are the --block-attempts and --no-block flags.
type blockFlags struct {
	attempts int
	noBlock  bool
}

func (b *blockFlags) register(fs *pflag.FlagSet, until string) {
	fs.IntVar(&b.attempts, "block-attempts", 0,
		"Wait until the units are "+until+", performing up to N attempts of about 2s before giving up. 0 waits forever.")
	fs.BoolVar(&b.noBlock, "no-block", false,
		"Do not wait until the units are "+until+" before exiting.")
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
)

func (k goalKind) String() string {
	switch k {
	case goalState:
		return "state"
	case goalActive:
		return "active"
	case goalGone:
		return "gone"
	}
	return fmt.Sprintf("goalKind(%d)", int(k))
}

// goal is one unit a command waits for.
type goal struct {
	name  string
	kind  goalKind
	state string // current state awaited by goalState and goalActive
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
	if p.reached {
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

// waiter polls the API until units reach their goals.
type waiter struct {
	api      API
	sleep    func(context.Context, time.Duration) error
	out      io.Writer // "Unit X <state> on <machine>" lines
	maxPolls int       // 0: no limit
	ips      map[string]string
}

// wait blocks until every goal is met, the poll budget is spent
// (*timeoutError), a unit cannot be placed (*exitError) or ctx ends.
func (w *waiter) wait(ctx context.Context, goals []goal) error {
	pending := make([]*progress, 0, len(goals))
	for _, g := range goals {
		pending = append(pending, &progress{goal: g})
	}
	for polls := 1; len(pending) > 0; polls++ {
		next := pending[:0]
		for _, p := range pending {
			done, err := w.check(ctx, p)
			if err != nil {
				return err
			}
			if !done {
				next = append(next, p)
			}
		}
		pending = next
		if len(pending) == 0 {
			break
		}
		if w.maxPolls > 0 && polls >= w.maxPolls {
			p := pending[0]
			if p.kind == goalGone {
				return &timeoutError{name: p.name}
			}
			return &timeoutError{name: p.name, state: p.awaiting()}
		}
		if err := w.sleep(ctx, pollInterval); err != nil {
			return fmt.Errorf("poll unit states: %w", err)
		}
	}
	return nil
}

// check polls one goal once and reports whether it is met.
func (w *waiter) check(ctx context.Context, p *progress) (bool, error) {
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
		w.printReached(ctx, u)
		if p.kind != goalActive {
			return true, nil
		}
	}
	states, err := w.api.UnitStates(ctx, p.machineID, p.name)
	if err != nil {
		return false, fmt.Errorf("get states of unit %s: %w", p.name, err)
	}
	for _, s := range states {
		if s != nil && s.SystemdActiveState == systemdActive && s.SystemdLoadState == systemdLoaded {
			return true, nil
		}
	}
	return false, nil
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
func (w *waiter) printReached(ctx context.Context, u *api.Unit) {
	msg := fmt.Sprintf("Unit %s %s", u.Name, u.CurrentState)
	if u.MachineID != "" {
		msg += " on " + machineLegend(u.MachineID, w.machineIP(ctx, u.MachineID), false)
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
