// Package fleetctl is the fleet command-line client: a cobra command tree
// that talks to the fleet HTTP API v1, and over SSH to the machines of the
// cluster for ssh and --tunnel.
//
// Contract:
//
//   - Main runs one command line: it builds a fresh command tree from Deps
//     (the package holds no mutable state, so several runs can go side by
//     side; tests do), runs it, releases what it opened (SSH tunnels) and
//     maps the outcome to an exit status in a single place: 0 success, 1
//     operational failure (API error, timeout, invalid unit file, unit that
//     cannot be placed, ...), 2 usage error (unknown command or flag, wrong
//     number of arguments), 3 from status when a unit is not active (as
//     systemctl status), and for ssh with a command the remote command's
//     status. Every failure prints exactly one message on stderr. All
//     output goes to Deps.Stdout and Deps.Stderr, all input comes from
//     Deps.Stdin, Deps.Getenv and Deps.ReadFile, and the API client is made
//     by Deps.NewAPI only when a command needs it.
//   - Every global flag may also be given as FLEETCTL_<NAME> in the
//     environment (upper case, '-' becomes '_'); a flag on the command line
//     wins over the environment.
//   - Commands that change state (submit, load, start, stop, unload,
//     destroy, restart) block until the cluster reports the requested
//     state, polling every 250ms. --block-attempts=N bounds the wait to
//     about N×2s (0 waits forever; restart's stop and start share it) and
//     --no-block does not wait. The wait ends early with an error when the
//     cluster reports for two consecutive attempts that a unit cannot be
//     placed. start also waits for systemd to report the unit active,
//     destroy waits until the unit is gone. Global units are not waited for,
//     except by restart, which waits on systemd's state on each machine.
//     stop, unload and destroy of units the cluster does not know print
//     "Units not found in registry" and succeed, as in fleet. Waiting for
//     several units draws a progress line on stderr when it is a terminal.
//   - Units named on the command line are found, in order, in the registry,
//     as a local file, and for instances as a template in the registry or a
//     local template file. All arguments are resolved and validated before
//     anything is created, so an invalid name or unit file changes nothing.
//     The validation is the API's own (unit.ValidateName and
//     unit.File.Validate), so fleetctl refuses locally what the API would
//     refuse. Local files are read only if regular (not a FIFO or a device)
//     and never beyond unit.MaxContentBytes.
//   - The command runs under a context that SIGINT and SIGTERM cancel
//     (cmd/fleetctl); a command that has not ended 5 s later is ended, and
//     a second signal ends it at once.
//   - Through --tunnel, requests carry the remote endpoint's host as Host
//     header: fleetd's TCP listeners refuse names that are not theirs.
//   - status and journal ask the unit's own machine through the API
//     (GET /fleet/v1/units/<name>/status and /journal), for a global unit
//     every machine that reports a state for it.
//   - Table output (list-*) is produced by pure functions and written with
//     text/tabwriter (minwidth 0, tabwidth 8, padding 1, tab padding);
//     -o json and -o yaml print the API's objects instead.
//   - SSH (ssh, --tunnel) authenticates with the ssh-agent of SSH_AUTH_SOCK
//     only and checks host keys against an OpenSSH known_hosts file, asking
//     on stderr before adding an unknown host and refusing a changed key.
package fleetctl
