package fleetctl

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

const rootDescription = `fleetctl is a command-line interface to fleet, the cluster-wide systemd
init system. It submits, schedules, starts and inspects units through the
fleet API of the cluster (--endpoint).`

// newHelpCommand is "fleetctl help [command]". Unlike cobra's own, an
// unknown topic is a usage error.
func newHelpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		Long:  "Show the usage of fleetctl, or of one of its commands.",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			target, rest, err := cmd.Root().Find(args)
			if err != nil || target == nil || len(rest) > 0 {
				return usagef("unknown help topic %q", strings.Join(args, " "))
			}
			return target.Help()
		},
	}
}

// renderHelp is the help text of cmd: NAME, USAGE, VERSION (root only),
// COMMANDS (root only), DESCRIPTION, OPTIONS and GLOBAL OPTIONS.
func renderHelp(cmd *cobra.Command) string {
	var b strings.Builder
	if !cmd.HasParent() {
		fmt.Fprintf(&b, "NAME:\n\t%s - %s\n\n", cmd.Name(), cmd.Short)
		fmt.Fprintf(&b, "USAGE:\n\t%s [global options] <command> [command options] [arguments...]\n\n", cmd.Name())
		fmt.Fprintf(&b, "VERSION:\n\t%s\n\n", cmd.Version)
		b.WriteString("COMMANDS:\n")
		tw := tabwriter.NewWriter(&b, 0, 8, 1, '\t', 0)
		for _, sub := range cmd.Commands() {
			if sub.IsAvailableCommand() || sub.Name() == "help" {
				fmt.Fprintf(tw, "\t%s\t%s\n", sub.Name(), sub.Short)
			}
		}
		tw.Flush()
		fmt.Fprintf(&b, "\nDESCRIPTION:\n%s\n\n", indent(rootDescription))
		fmt.Fprintf(&b, "OPTIONS:\n%s\n", cmd.LocalNonPersistentFlags().FlagUsages())
		fmt.Fprintf(&b, "GLOBAL OPTIONS:\n%s\n", cmd.PersistentFlags().FlagUsages())
		fmt.Fprintf(&b, "Global options can also be configured via upper-case environment variables prefixed by %q\n", envPrefix)
		fmt.Fprintf(&b, "For example, \"some-flag\" => %q\n\n", envName("some-flag"))
		fmt.Fprintf(&b, "Run \"%s help <command>\" for more details on a specific command.\n", cmd.Name())
		return b.String()
	}
	fmt.Fprintf(&b, "NAME:\n\t%s - %s\n\n", cmd.CommandPath(), cmd.Short)
	fmt.Fprintf(&b, "USAGE:\n\t%s %s\n\n", cmd.Root().Name(), cmd.Use)
	desc := cmd.Long
	if desc == "" {
		desc = cmd.Short
	}
	fmt.Fprintf(&b, "DESCRIPTION:\n%s\n\n", indent(desc))
	if local := cmd.LocalFlags().FlagUsages(); local != "" {
		fmt.Fprintf(&b, "OPTIONS:\n%s\n", local)
	}
	if inherited := cmd.InheritedFlags().FlagUsages(); inherited != "" {
		fmt.Fprintf(&b, "GLOBAL OPTIONS:\n%s", inherited)
	}
	return b.String()
}

// indent prefixes every non-empty line of s with a tab.
func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = "\t" + l
		}
	}
	return strings.Join(lines, "\n")
}
