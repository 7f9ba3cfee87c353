package fleetctl

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fleet-next/fleet/api"
)

// listFlags are the flags shared by the list commands.
type listFlags struct {
	fields   string
	full     bool
	noLegend bool
	output   outputFormat
}

// register declares --fields, --no-legend and --full; with short, --full
// is also -l, and --l stays accepted as a hidden long alias.
func (l *listFlags) register(fs *pflag.FlagSet, defaultFields string, valid []string, short bool) {
	registerOutput(fs, &l.output, "a table", "every field; --fields, --full and --no-legend do not apply")
	fs.StringVar(&l.fields, "fields", defaultFields,
		"Columns to print, comma-separated. Valid keys: "+strings.Join(valid, ", "))
	fs.BoolVar(&l.noLegend, "no-legend", false, "Do not print a legend (column headers)")
	if !short {
		fs.BoolVar(&l.full, "full", false, "Do not ellipsize fields on output")
		return
	}
	fs.BoolVarP(&l.full, "full", "l", false, "Do not ellipsize fields on output")
	fs.BoolVar(&l.full, "l", false, "Shorthand for --full")
	_ = fs.MarkHidden("l") // the flag was declared on the line above
}

// clusterList is a list command whose rows may name machines: what it
// fetches, which fields need the machines' IPs, and how it prints.
type clusterList[T any] struct {
	flags       *listFlags
	valid       []string // its --fields keys
	machineKeys []string // fields that show a machine (its IP)
	fetch       func(ctx context.Context, client API) ([]T, error)
	structured  func([]T) any // -o json and -o yaml
	text        func(rows []T, machines []*api.Machine, fields []string, full, legend bool) string
}

// run parses --fields, fetches the rows (and the live machines when a
// field shows one) and prints them.
func (l clusterList[T]) run(c *cli, cmd *cobra.Command) error {
	fields, err := parseFields(l.flags.fields, l.valid)
	if err != nil {
		return err
	}
	if slices.Contains(fields, "tmachine") {
		fmt.Fprintln(cmd.ErrOrStderr(), `WARNING: The "tmachine" field is deprecated. Use "target" instead`)
	}
	ctx := cmd.Context()
	client, err := c.api(ctx)
	if err != nil {
		return err
	}
	rows, err := l.fetch(ctx, client)
	if err != nil {
		return failf("Error retrieving list of units from repository: %w", err)
	}
	var machines []*api.Machine
	if slices.ContainsFunc(fields, func(f string) bool { return slices.Contains(l.machineKeys, f) }) {
		if machines, err = client.Machines(ctx); err != nil {
			return failf("Error retrieving list of active machines: %w", err)
		}
	}
	if l.flags.output != outputText {
		return writeStructured(cmd.OutOrStdout(), l.flags.output, l.structured(rows))
	}
	fmt.Fprint(cmd.OutOrStdout(), l.text(rows, machines, fields, l.flags.full, !l.flags.noLegend))
	return nil
}

// noArgs rejects positional arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args[0])
	}
	return nil
}

func (c *cli) newListUnitsCommand() *cobra.Command {
	var lf listFlags
	cmd := &cobra.Command{
		Use:   "list-units",
		Short: "List the current state of units in the cluster",
		Long: `List the state systemd reports for units on the machines of the cluster,
one row per unit and machine, sorted by unit name then machine ID.

The reason field says why a machine could not apply a unit's last change
(e.g. systemd refused to start it); the machine retries with backoff.

With -o json or -o yaml, a list of the API's unit states (name, hash,
machineID, systemdLoadState, systemdActiveState, systemdSubState, reason)
in the same order.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return clusterList[*api.UnitState]{
				flags: &lf, valid: unitStateFields, machineKeys: []string{"machine"},
				fetch: func(ctx context.Context, client API) ([]*api.UnitState, error) {
					return client.UnitStates(ctx, "", "")
				},
				structured: func(states []*api.UnitState) any { return sortedStates(states) },
				text:       formatUnits,
			}.run(c, cmd)
		},
	}
	lf.register(cmd.Flags(), defaultUnitStateFields, unitStateFields, true)
	return cmd
}

func (c *cli) newListUnitFilesCommand() *cobra.Command {
	var lf listFlags
	cmd := &cobra.Command{
		Use:   "list-unit-files",
		Short: "List the units that exist in the cluster",
		Long: `List every unit in the cluster with its desired and current state and the
machine it is scheduled to, sorted by name. The reason field says why a
unit that should run has no machine.

With -o json or -o yaml, a list of the API's units (name, options,
desiredState, currentState, machineID, reason) with hash, global and
description added, in the same order.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return clusterList[*api.Unit]{
				flags: &lf, valid: unitFileFields, machineKeys: []string{"target", "tmachine"},
				fetch: func(ctx context.Context, client API) ([]*api.Unit, error) {
					return client.Units(ctx)
				},
				structured: func(units []*api.Unit) any { return unitFileDocs(units) },
				text:       formatUnitFiles,
			}.run(c, cmd)
		},
	}
	lf.register(cmd.Flags(), defaultUnitFileFields, unitFileFields, false)
	return cmd
}

func (c *cli) newListMachinesCommand() *cobra.Command {
	var lf listFlags
	cmd := &cobra.Command{
		Use:   "list-machines",
		Short: "Enumerate the current hosts in the cluster",
		Long: `List the live machines of the cluster with their IP address and metadata,
sorted by machine ID.

With -o json or -o yaml, a list of the API's machines (id, primaryIP,
metadata) in the same order.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fields, err := parseFields(lf.fields, machineFields)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			client, err := c.api(ctx)
			if err != nil {
				return err
			}
			machines, err := client.Machines(ctx)
			if err != nil {
				return failf("Error retrieving list of active machines from fleet API (%w)\n"+
					"Possible issues:\n"+
					"  - fleetd is not running, or not reachable at the endpoint %s\n"+
					"  - the endpoint is wrong: check --endpoint or FLEETCTL_ENDPOINT\n"+
					"  - the TLS settings do not match the server (--ca-file, --cert-file, --key-file)",
					err, c.global.endpoint)
			}
			if lf.output != outputText {
				return writeStructured(cmd.OutOrStdout(), lf.output, sortedMachines(machines))
			}
			fmt.Fprint(cmd.OutOrStdout(), formatMachines(machines, fields, lf.full, !lf.noLegend))
			return nil
		},
	}
	lf.register(cmd.Flags(), defaultMachineFields, machineFields, true)
	return cmd
}
