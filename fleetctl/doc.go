// Package fleetctl is the fleet command-line client: a cobra command tree
// that talks to the fleet HTTP API v1.
//
// Contract:
//
//   - NewRootCommand builds a fresh command tree from Deps; the package holds
//     no mutable state, so several trees can run side by side (tests do).
//     All output goes to Deps.Stdout and Deps.Stderr, all input comes from
//     Deps.Stdin, Deps.Getenv and Deps.ReadFile, and the API client is made
//     by Deps.NewAPI only when a command needs it.
//   - Main runs one command line and maps its outcome to an exit status in a
//     single place: 0 success, 1 operational failure (API error, timeout,
//     invalid unit file, unit that cannot be placed, ...), 2 usage error
//     (unknown command or flag, wrong number of arguments). Every failure
//     prints exactly one message on stderr.
//   - Every global flag may also be given as FLEETCTL_<NAME> in the
//     environment (upper case, '-' becomes '_'); a flag on the command line
//     wins over the environment.
//   - Commands that change state (submit, load, start, stop, unload,
//     destroy) block until the cluster reports the requested state, polling
//     every 250ms. --block-attempts=N bounds the wait to about N×2s (0 waits
//     forever) and --no-block does not wait. The wait ends early with an
//     error when the cluster reports for two consecutive attempts that a
//     unit cannot be placed. start also waits for systemd to report the unit
//     active, destroy waits until the unit is gone. Global units are never
//     waited for. stop, unload and destroy of units the cluster does not
//     know print "Units not found in registry" and succeed, as in fleet.
//   - Units named on the command line are found, in order, in the registry,
//     as a local file, and for instances as a template in the registry or a
//     local template file. All arguments are resolved and validated before
//     anything is created, so an invalid name or unit file changes nothing.
//   - Table output (list-*) is produced by pure functions and written with
//     text/tabwriter (minwidth 0, tabwidth 8, padding 1, tab padding).
package fleetctl
