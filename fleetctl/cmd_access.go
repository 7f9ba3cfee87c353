package fleetctl

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleet-next/fleet/access"
	"github.com/fleet-next/fleet/api"
)

// accessAPI is what the acl, whoami and audit commands need of the API.
type accessAPI interface {
	Grants(ctx context.Context) ([]access.Grant, error)
	Grant(ctx context.Context, g access.Grant) error
	Revoke(ctx context.Context, g access.Grant) error
	WhoAmI(ctx context.Context) (*api.WhoAmI, error)
	Audit(ctx context.Context, f access.AuditFilter) ([]access.Entry, error)
}

var _ accessAPI = (*api.Client)(nil)

// accessClient returns the API client as an accessAPI.
func (c *cli) accessClient(ctx context.Context) (accessAPI, error) {
	client, err := c.api(ctx)
	if err != nil {
		return nil, err
	}
	ac, ok := client.(accessAPI)
	if !ok {
		return nil, failf("this API client cannot manage grants or read the audit trail")
	}
	return ac, nil
}

func (c *cli) newACLCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "acl",
		Short: "Grant, revoke and list the roles of API callers",
		Long: `Manage who may do what through the fleet API (admin only).

Roles: viewer (read units, states, machines, status, journal), operator
(viewer + start, stop, load, unload of existing units), admin (everything).
Subjects: uid:N, user:NAME, group:NAME (unix socket callers), cn:NAME,
o:NAME (TLS client certificates), anonymous (plain TCP). uid:0 on a unix
socket is always admin. See docs/security.md.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			return usagef("acl needs a subcommand: grant, revoke or list")
		},
	}
	// change builds grant or revoke: both take ROLE SUBJECT [--units GLOB]
	// and call do with the grant.
	change := func(use, short, unitsUsage, verb, done string,
		do func(accessAPI, context.Context, access.Grant) error) *cobra.Command {
		var units string
		cmd := &cobra.Command{
			Use:   use,
			Short: short,
			RunE: func(cmd *cobra.Command, args []string) error {
				if len(args) != 2 {
					return usagef("want ROLE SUBJECT, e.g. operator user:alice")
				}
				g := access.Grant{Role: access.Role(args[0]), Subject: args[1], Units: units}
				if err := g.Validate(); err != nil {
					return usagef("%v", err)
				}
				ctx := cmd.Context()
				client, err := c.accessClient(ctx)
				if err != nil {
					return err
				}
				if err := do(client, ctx, g); err != nil {
					return failf("Error %s %s: %w", verb, g, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", done, g)
				return nil
			},
		}
		cmd.Flags().StringVar(&units, "units", "", unitsUsage)
		return cmd
	}
	grant := change("grant ROLE SUBJECT", "Give SUBJECT the role ROLE, for every unit or those matching --units",
		"Limit the grant to units whose names match this glob (e.g. 'web-*')", "granting", "Granted", accessAPI.Grant)
	revoke := change("revoke ROLE SUBJECT", "Remove a grant (give the same --units as when granting)",
		"The units glob of the grant to remove", "revoking", "Revoked", accessAPI.Revoke)
	var out outputFormat
	list := &cobra.Command{
		Use:   "list",
		Short: "List every grant",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			client, err := c.accessClient(ctx)
			if err != nil {
				return err
			}
			grants, err := client.Grants(ctx)
			if err != nil {
				return failf("Error listing grants: %w", err)
			}
			return writeRecords(cmd.OutOrStdout(), out, grants, "ROLE\tSUBJECT\tUNITS", func(g access.Grant) string {
				units := g.Units
				if units == "" {
					units = "*"
				}
				return fmt.Sprintf("%s\t%s\t%s", g.Role, g.Subject, units)
			})
		},
	}
	registerOutput(list.Flags(), &out, "a table", "a list of grants: role, subject, units")
	cmd.AddCommand(grant, revoke, list)
	return cmd
}

func (c *cli) newWhoAmICommand() *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Print the subjects and roles the API sees for this caller",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			client, err := c.accessClient(ctx)
			if err != nil {
				return err
			}
			me, err := client.WhoAmI(ctx)
			if err != nil {
				return failf("Error asking the API who this caller is: %w", err)
			}
			if out != outputText {
				return writeStructured(cmd.OutOrStdout(), out, me)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Subjects: %s\n", strings.Join(me.Subjects, " "))
			if me.From != "" {
				fmt.Fprintf(w, "From:     %s\n", me.From)
			}
			switch {
			case me.Root:
				fmt.Fprintln(w, "Roles:    admin (uid 0 on a unix socket)")
			case len(me.Grants) == 0:
				fmt.Fprintln(w, "Roles:    none")
			default:
				roles := make([]string, len(me.Grants))
				for i, g := range me.Grants {
					roles[i] = g.String()
				}
				fmt.Fprintf(w, "Roles:    %s\n", strings.Join(roles, ", "))
			}
			return nil
		},
	}
	registerOutput(cmd.Flags(), &out, "subjects and roles", "subjects, root, from, grants")
	return cmd
}

func (c *cli) newAuditCommand() *cobra.Command {
	var (
		out   outputFormat
		since time.Duration
		f     access.AuditFilter
	)
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Print the audit trail: every change and every refused request (admin only)",
		Long: `Print the audit trail, oldest first: every request that changed the cluster
and every refused request, with its time, subject, origin, receiving
machine, action, target, result code and the hash of a unit written.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since < 0 {
				return usagef("--since must not be negative")
			}
			if since > 0 {
				f.Since = time.Now().Add(-since)
			}
			ctx := cmd.Context()
			client, err := c.accessClient(ctx)
			if err != nil {
				return err
			}
			entries, err := client.Audit(ctx, f)
			if err != nil {
				return failf("Error reading the audit trail: %w", err)
			}
			return writeRecords(cmd.OutOrStdout(), out, entries, "TIME\tSUBJECT\tACTION\tTARGET\tCODE\tMACHINE\tFROM", func(e access.Entry) string {
				target := e.Target
				if target == "" {
					target = "-"
				}
				return fmt.Sprintf("%s\t%s\t%s\t%s\t%d\t%s\t%s", e.Time.Local().Format(time.RFC3339),
					e.Subject, e.Action, target, e.Code, shortMachine(e.Machine), e.From)
			})
		},
	}
	fs := cmd.Flags()
	fs.DurationVar(&since, "since", 0, "Only entries newer than this (e.g. 1h)")
	fs.StringVar(&f.Unit, "unit", "", "Only entries about this unit")
	fs.StringVar(&f.Subject, "subject", "", "Only entries of this subject (e.g. user:alice)")
	registerOutput(fs, &out, "a table", "a list of entries")
	return cmd
}

func shortMachine(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
