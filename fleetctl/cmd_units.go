package fleetctl

import (
	"cmp"
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/unit"
)

// Fleet states as they travel on the wire.
var (
	stateInactive = string(unit.StateInactive)
	stateLoaded   = string(unit.StateLoaded)
	stateLaunched = string(unit.StateLaunched)
)

// registerSign declares fleet's deprecated --sign, hidden and ignored.
func registerSign(fs *pflag.FlagSet, sign *bool) {
	fs.BoolVar(sign, "sign", false, "Deprecated and ignored: unit signing no longer exists.")
	_ = fs.MarkHidden("sign") // declared on the line above
}

// warnSign says that --sign is ignored, when it was given.
func warnSign(cmd *cobra.Command, sign bool) {
	if sign {
		fmt.Fprintln(cmd.ErrOrStderr(), "WARNING: The signed/verified units feature is DEPRECATED and --sign is ignored.")
	}
}

// requireUnits rejects a command line without unit arguments.
func requireUnits(_ *cobra.Command, args []string) error {
	if len(args) == 0 {
		return usagef("No units given")
	}
	return nil
}

// desiredIn returns a replaceable check accepting the given desired states.
func desiredIn(states ...string) func(string) bool {
	return func(s string) bool {
		for _, ok := range states {
			if s == ok {
				return true
			}
		}
		return false
	}
}

func (c *cli) newSubmitCommand() *cobra.Command {
	var replace, sign bool
	cmd := &cobra.Command{
		Use:   "submit UNIT...",
		Short: "Upload one or more units to the cluster without starting them",
		Long: `Upload one or more units to the cluster without starting them. A unit
already in the cluster is left alone unless --replace is given and its
desired state is inactive. Each new unit is reported as "Unit X inactive".`,
		Args: requireUnits,
		RunE: func(cmd *cobra.Command, args []string) error {
			warnSign(cmd, sign)
			ctx := cmd.Context()
			client, err := c.api(ctx)
			if err != nil {
				return err
			}
			units, err := c.createUnits(ctx, cmd, client, args, createPolicy{
				desired: stateInactive, replace: replace, replaceable: desiredIn(stateInactive),
			})
			if err != nil {
				return err
			}
			var created []*api.Unit
			for _, r := range units {
				if r.create {
					created = append(created, r.unit)
				}
			}
			err = c.await(ctx, cmd, client, created, "submit", goalState, stateInactive,
				blockFlags{attempts: submitAttempts})
			if err != nil {
				return waitFailure(err, "")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&replace, "replace", false, "Replace the unit in the cluster if the local unit file differs")
	registerSign(cmd.Flags(), &sign)
	cmd.ValidArgsFunction = c.completeUnitsOrFiles
	return cmd
}

func (c *cli) newLoadCommand() *cobra.Command {
	return c.newActivateCommand("load", stateLoaded, goalState, createPolicy{
		desired: stateLoaded, replaceable: desiredIn(stateInactive, stateLoaded), activate: true,
	}, "Schedule one or more units in the cluster, first submitting them if necessary",
		`Schedule one or more units onto machines of the cluster and load them into
systemd without starting them. Units that are not in the cluster yet are
submitted first, from a local file or from their template.`)
}

func (c *cli) newStartCommand() *cobra.Command {
	return c.newActivateCommand("start", stateLaunched, goalActive, createPolicy{
		desired: stateLaunched, activate: true,
	}, "Instruct systemd to start one or more units in the cluster, first submitting and loading if necessary",
		`Start one or more units in the cluster. Units that are not in the cluster
yet are submitted first, from a local file or from their template. Unless
--no-block is given, waits until each unit is launched and systemd reports
it active.`)
}

// newActivateCommand builds load and start: create missing units, raise
// their desired state, wait.
func (c *cli) newActivateCommand(verb, desired string, kind goalKind, pol createPolicy, short, long string) *cobra.Command {
	var (
		block blockFlags
		sign  bool
	)
	cmd := &cobra.Command{
		Use:   verb + " [--no-block|--block-attempts=N] UNIT...",
		Short: short,
		Long:  long,
		Args:  requireUnits,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := block.validate(); err != nil {
				return err
			}
			warnSign(cmd, sign)
			ctx := cmd.Context()
			client, err := c.api(ctx)
			if err != nil {
				return err
			}
			resolved, err := c.createUnits(ctx, cmd, client, args, pol)
			if err != nil {
				return err
			}
			units := make([]*api.Unit, 0, len(resolved))
			for _, r := range resolved {
				if r.unit.DesiredState != desired {
					if err := client.SetUnitTargetState(ctx, r.unit.Name, desired); err != nil {
						return failf("Error setting target state of unit %s: %w", r.unit.Name, err)
					}
				}
				units = append(units, r.unit)
			}
			if err := c.await(ctx, cmd, client, units, verb, kind, desired, block); err != nil {
				return waitFailure(err, "")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&pol.replace, "replace", false, "Replace the unit in the cluster if the local unit file differs")
	block.register(cmd.Flags(), desired)
	registerSign(cmd.Flags(), &sign)
	cmd.ValidArgsFunction = c.completeUnitsOrFiles
	return cmd
}

// createUnits resolves args and creates the units that need it.
func (c *cli) createUnits(ctx context.Context, cmd *cobra.Command, client API, args []string, pol createPolicy) ([]resolved, error) {
	r := &resolver{api: client, readFile: c.deps.ReadFile, stdout: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr()}
	units, err := r.resolve(ctx, args, pol)
	if err != nil {
		return nil, failf("Error creating units: %w", err)
	}
	for _, u := range units {
		if !u.create {
			continue
		}
		if err := client.CreateUnit(ctx, u.unit); err != nil {
			return nil, failf("Error creating units: create unit %s: %w", u.unit.Name, err)
		}
	}
	return units, nil
}

// await waits until units reach a state (see waiter). Global units are not
// waited for, and --no-block waits for nothing; both print a Triggered line.
func (c *cli) await(ctx context.Context, cmd *cobra.Command, client API, units []*api.Unit, verb string, kind goalKind, state string, block blockFlags) error {
	out := cmd.OutOrStdout()
	var goals []goal
	for _, u := range units {
		switch {
		case isGlobal(u):
			fmt.Fprintf(out, "Triggered global unit %s %s\n", u.Name, verb)
		case block.noBlock:
			fmt.Fprintf(out, "Triggered unit %s %s\n", u.Name, verb)
		default:
			goals = append(goals, goal{name: u.Name, kind: kind, state: state})
		}
	}
	if len(goals) == 0 {
		return nil
	}
	return c.newWaiter(cmd, client, block, len(goals)).wait(ctx, goals)
}

// newWaiter returns a waiter for n units within the budget of block,
// with a progress line when n > 1 and stderr is a terminal.
func (c *cli) newWaiter(cmd *cobra.Command, client API, block blockFlags, n int) *waiter {
	w := &waiter{api: client, sleep: c.deps.Sleep, out: cmd.OutOrStdout(), maxPolls: block.maxPolls()}
	if n > 1 && c.deps.IsTerminal(c.deps.Stderr) {
		w.progress = cmd.ErrOrStderr()
	}
	return w
}

// registered returns the units named by args that exist in the registry,
// in argument order and without duplicates.
func registered(ctx context.Context, client API, args []string) ([]*api.Unit, error) {
	var units []*api.Unit
	seen := make(map[string]bool, len(args))
	for _, arg := range args {
		name := unit.MangleName(arg)
		if seen[name] {
			continue
		}
		seen[name] = true
		u, err := client.Unit(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("get unit %s: %w", name, err)
		}
		if u != nil {
			units = append(units, u)
		}
	}
	return units, nil
}

func unitNames(units []*api.Unit) []string {
	names := make([]string, 0, len(units))
	for _, u := range units {
		names = append(names, u.Name)
	}
	return names
}

func (c *cli) newStopCommand() *cobra.Command {
	return c.newLowerCommand("stop", "stopped", stateLoaded, "Instruct systemd to stop one or more units in the cluster",
		`Stop one or more units: they stay loaded on their machine. A unit that is
not loaded on any machine cannot be stopped.`)
}

func (c *cli) newUnloadCommand() *cobra.Command {
	return c.newLowerCommand("unload", "unloaded", stateInactive, "Unschedule one or more units in the cluster",
		`Stop one or more units and unload them from their machine. The units stay
in the cluster and can be loaded or started again.`)
}

// newLowerCommand builds stop and unload: lower the desired state of
// registry units and wait for it.
func (c *cli) newLowerCommand(verb, done, desired, short, long string) *cobra.Command {
	var block blockFlags
	cmd := &cobra.Command{
		Use:   verb + " [--no-block|--block-attempts=N] UNIT...",
		Short: short,
		Long:  long,
		Args:  requireUnits,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := block.validate(); err != nil {
				return err
			}
			ctx := cmd.Context()
			client, err := c.api(ctx)
			if err != nil {
				return err
			}
			units, err := registered(ctx, client, args)
			if err != nil {
				return failf("Error retrieving units: %w", err)
			}
			if len(units) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "Units not found in registry")
				return nil
			}
			if verb == "stop" {
				for _, u := range units {
					if !isGlobal(u) && u.CurrentState == stateInactive {
						return failf("Unable to stop unit %s in state %s", u.Name, stateInactive)
					}
				}
			}
			for _, u := range units {
				if u.DesiredState == desired {
					continue
				}
				if err := client.SetUnitTargetState(ctx, u.Name, desired); err != nil {
					return failf("Error setting target state of unit %s: %w", u.Name, err)
				}
			}
			names := unitNames(units)
			if err := c.await(ctx, cmd, client, units, verb, goalState, desired, block); err != nil {
				return waitFailure(err, fmt.Sprintf("Failed to %s units %v.", verb, names))
			}
			if !block.noBlock {
				fmt.Fprintf(cmd.ErrOrStderr(), "Successfully %s units %v.\n", done, names)
			}
			return nil
		},
	}
	block.register(cmd.Flags(), done)
	cmd.ValidArgsFunction = c.completeUnits
	return cmd
}

func (c *cli) newDestroyCommand() *cobra.Command {
	var block blockFlags
	cmd := &cobra.Command{
		Use:   "destroy [--no-block|--block-attempts=N] UNIT...",
		Short: "Destroy one or more units in the cluster",
		Long: `Stop, unload and remove one or more units from the cluster. Unless
--no-block is given, waits until the cluster no longer knows the units.`,
		Args: requireUnits,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := block.validate(); err != nil {
				return err
			}
			ctx := cmd.Context()
			client, err := c.api(ctx)
			if err != nil {
				return err
			}
			var goals []goal
			seen := make(map[string]bool, len(args))
			for _, arg := range args {
				name := unit.MangleName(arg)
				if seen[name] {
					continue
				}
				seen[name] = true
				err := client.DestroyUnit(ctx, name)
				if api.IsNotFound(err) {
					continue
				}
				if err != nil {
					return failf("Error destroying units: destroy unit %s: %w", name, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Destroyed %s\n", name)
				goals = append(goals, goal{name: name, kind: goalGone})
			}
			if len(goals) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "Units not found in registry")
				return nil
			}
			if block.noBlock {
				return nil
			}
			if err := c.newWaiter(cmd, client, block, len(goals)).wait(ctx, goals); err != nil {
				return waitFailure(err, "")
			}
			return nil
		},
	}
	block.register(cmd.Flags(), "destroyed")
	cmd.ValidArgsFunction = c.completeUnits
	return cmd
}

func (c *cli) newRestartCommand() *cobra.Command {
	var block blockFlags
	cmd := &cobra.Command{
		Use:   "restart [--block-attempts=N] UNIT...",
		Short: "Instruct systemd to restart one or more units in the cluster",
		Long: `Stop and start again one or more units. A launched unit is stopped: its
desired state becomes loaded, and fleetctl waits until its machine reports
it loaded; then it is started and fleetctl waits until systemd reports it
active. A loaded unit is only started. A global unit is restarted the same
way on every machine that reports it, waiting on systemd's state there.
--block-attempts bounds the whole restart.

Units that are not in the cluster are submitted from local files first,
as fleet did, but not started: like any inactive unit they cannot be
restarted, which is reported and makes the command fail.`,
		Args: requireUnits,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := block.validate(); err != nil {
				return err
			}
			ctx := cmd.Context()
			client, err := c.api(ctx)
			if err != nil {
				return err
			}
			units, err := c.restartUnits(ctx, cmd, client, args)
			if err != nil {
				return err
			}
			plan, err := planRestart(ctx, client, units)
			if err != nil {
				return failf("Error retrieving units: %w", err)
			}
			names := plan.names()
			failLine := fmt.Sprintf("Failed to restart units %v.", names)
			for _, name := range plan.stop {
				if err := client.SetUnitTargetState(ctx, name, stateLoaded); err != nil {
					return failf("Error setting target state of unit %s: %w", name, err)
				}
			}
			w := c.newWaiter(cmd, client, block, len(plan.startGoals))
			if err := w.wait(ctx, plan.stopGoals); err != nil {
				return waitFailure(err, failLine)
			}
			for _, g := range plan.startGoals {
				if err := client.SetUnitTargetState(ctx, g.name, stateLaunched); err != nil {
					return failf("Error setting target state of unit %s: %w", g.name, err)
				}
			}
			if err := w.wait(ctx, plan.startGoals); err != nil {
				return waitFailure(err, failLine)
			}
			if len(names) > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "Successfully restarted units %v.\n", names)
			}
			if len(plan.refused) > 0 {
				return &exitError{code: ExitError, msg: strings.Join(plan.refused, "\n")}
			}
			return nil
		},
		ValidArgsFunction: c.completeUnits,
	}
	block.registerAttempts(cmd.Flags(), "restarted")
	return cmd
}

// restartUnits returns the units named by args: those in the registry,
// and the others after submitting them (inactive) from local files.
func (c *cli) restartUnits(ctx context.Context, cmd *cobra.Command, client API, args []string) ([]*api.Unit, error) {
	units, err := registered(ctx, client, args)
	if err != nil {
		return nil, failf("Error retrieving units: %w", err)
	}
	known := make(map[string]bool, len(units))
	for _, u := range units {
		known[u.Name] = true
	}
	var missing []string
	for _, arg := range args {
		if !known[unit.MangleName(arg)] {
			missing = append(missing, arg)
		}
	}
	if len(missing) == 0 {
		return units, nil
	}
	created, err := c.createUnits(ctx, cmd, client, missing, createPolicy{desired: stateInactive})
	if err != nil {
		return nil, err
	}
	for _, r := range created {
		units = append(units, r.unit)
	}
	return units, nil
}

// restartPlan is what restart does: units to stop first, the waits of
// the stop and start phases, and the units it refuses.
type restartPlan struct {
	stop       []string // units whose desired state goes to loaded first
	stopGoals  []goal
	startGoals []goal   // every unit restarted, in order
	refused    []string // one message per unit that cannot be restarted
}

// names lists the units restarted.
func (p restartPlan) names() []string {
	names := make([]string, 0, len(p.startGoals))
	for _, g := range p.startGoals {
		names = append(names, g.name)
	}
	return names
}

// planRestart decides how each unit is restarted from its current state
// or, for global units, from the machines that report it.
func planRestart(ctx context.Context, client API, units []*api.Unit) (restartPlan, error) {
	var p restartPlan
	for _, u := range units {
		if !isGlobal(u) {
			switch u.CurrentState {
			case stateLaunched:
				p.stop = append(p.stop, u.Name)
				p.stopGoals = append(p.stopGoals, goal{name: u.Name, kind: goalState, state: stateLoaded})
			case stateLoaded:
			default:
				p.refused = append(p.refused, fmt.Sprintf("Unable to restart unit %s in state %s", u.Name,
					cmp.Or(u.CurrentState, stateInactive)))
				continue
			}
			p.startGoals = append(p.startGoals, goal{name: u.Name, kind: goalActive, state: stateLaunched})
			continue
		}
		if u.DesiredState == stateInactive {
			p.refused = append(p.refused, fmt.Sprintf("Unable to restart unit %s in state %s", u.Name, stateInactive))
			continue
		}
		states, err := client.UnitStates(ctx, "", u.Name)
		if err != nil {
			return restartPlan{}, fmt.Errorf("get states of unit %s: %w", u.Name, err)
		}
		var machines []string
		for _, s := range states {
			if s != nil && s.MachineID != "" {
				machines = append(machines, s.MachineID)
			}
		}
		if len(machines) == 0 {
			p.refused = append(p.refused, fmt.Sprintf("Unable to restart global unit %s: no machine reports it", u.Name))
			continue
		}
		if u.DesiredState == stateLaunched {
			p.stop = append(p.stop, u.Name)
			p.stopGoals = append(p.stopGoals, goal{name: u.Name, kind: goalStopped, state: stateLoaded, machines: machines})
		}
		p.startGoals = append(p.startGoals, goal{name: u.Name, kind: goalRunning, state: stateLaunched, machines: machines})
	}
	return p, nil
}
