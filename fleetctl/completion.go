package fleetctl

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// Shells "fleetctl completion" writes scripts for.
var completionShells = []string{"bash", "zsh", "fish"}

func newCompletionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Long: `Print the completion script of a shell. Commands and flags complete, and
so do the names of the units and machines of the cluster, which are asked
of the fleet API (--endpoint) as you type.

  bash:  source <(fleetctl completion bash)
  zsh:   fleetctl completion zsh > "${fpath[1]}/_fleetctl"
  fish:  fleetctl completion fish | source`,
		ValidArgs: completionShells,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("One shell must be given: %s", strings.Join(completionShells, ", "))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			var err error
			switch args[0] {
			case "bash":
				err = cmd.Root().GenBashCompletionV2(out, true)
			case "zsh":
				err = cmd.Root().GenZshCompletion(out)
			case "fish":
				err = cmd.Root().GenFishCompletion(out, true)
			default:
				return usagef("unsupported shell %q: want one of %s", args[0], strings.Join(completionShells, ", "))
			}
			if err != nil {
				return failf("Error writing %s completion: %w", args[0], err)
			}
			return nil
		},
	}
}

// unitCompletions returns the units of the cluster whose names start with
// prefix, each with its state as description.
func (c *cli) unitCompletions(ctx context.Context, prefix string) ([]string, error) {
	client, err := c.api(ctx)
	if err != nil {
		return nil, err
	}
	units, err := client.Units(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, u := range units {
		if u == nil || !strings.HasPrefix(u.Name, prefix) {
			continue
		}
		desc := u.DesiredState
		if isGlobal(u) {
			desc = "global, " + desc
		} else if u.CurrentState != "" {
			desc = u.CurrentState
		}
		out = append(out, u.Name+"\t"+desc)
	}
	return out, nil
}

// machineCompletions returns the machine IDs that start with prefix, each
// with its IP as description.
func (c *cli) machineCompletions(ctx context.Context, prefix string) ([]string, error) {
	client, err := c.api(ctx)
	if err != nil {
		return nil, err
	}
	machines, err := client.Machines(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range machines {
		if m != nil && strings.HasPrefix(m.ID, prefix) {
			out = append(out, fmt.Sprintf("%s\t%s", m.ID, cell(m.PrimaryIP)))
		}
	}
	return out, nil
}

// completeUnits completes any number of unit names.
func (c *cli) completeUnits(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	names, err := c.unitCompletions(cmd.Context(), toComplete)
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// completeUnitsOrFiles completes unit names of the cluster and local
// files (submit, load, start).
func (c *cli) completeUnitsOrFiles(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	names, err := c.unitCompletions(cmd.Context(), toComplete)
	if err != nil {
		return nil, cobra.ShellCompDirectiveDefault
	}
	return names, cobra.ShellCompDirectiveDefault
}

// completeOneUnit completes a single unit name.
func (c *cli) completeOneUnit(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return c.completeUnits(cmd, args, toComplete)
}

// completeMachines completes a machine ID.
func (c *cli) completeMachines(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	ids, err := c.machineCompletions(cmd.Context(), toComplete)
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	return ids, cobra.ShellCompDirectiveNoFileComp
}

// completeMachinesAndUnits completes the target of ssh: a machine ID or a
// unit name, then nothing (the remote command is free).
func (c *cli) completeMachinesAndUnits(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 || cmd.Flags().Changed("machine") || cmd.Flags().Changed("unit") {
		return nil, cobra.ShellCompDirectiveDefault
	}
	ids, err := c.machineCompletions(cmd.Context(), toComplete)
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	units, err := c.unitCompletions(cmd.Context(), toComplete)
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	return append(ids, units...), cobra.ShellCompDirectiveNoFileComp
}
