package fleetctl

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fleet-next/fleet/unit"
)

func (c *cli) newCatCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cat UNIT",
		Short: "Output the contents of a submitted unit",
		Long: `Print the unit file of a unit in the cluster, in the canonical form the
cluster stores and hashes.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("One unit file must be provided")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			client, err := c.api(ctx)
			if err != nil {
				return err
			}
			name := unit.MangleName(args[0])
			u, err := client.Unit(ctx, name)
			if err != nil {
				return failf("Error retrieving unit %s: %w", name, err)
			}
			if u == nil {
				return failf("Unit %s not found", name)
			}
			f, err := fileOf(u)
			if err != nil {
				return failf("Error reading contents of unit %s: %w", name, err)
			}
			fmt.Fprint(cmd.OutOrStdout(), f.Serialize())
			return nil
		},
		ValidArgsFunction: c.completeOneUnit,
	}
}

func newVersionCommand(version string) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and exit",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "fleetctl version %s\n", version)
			return nil
		},
	}
}
