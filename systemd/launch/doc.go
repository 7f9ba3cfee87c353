// Package launch starts and stops private `systemd --user` managers.
//
// A private manager is a real systemd: it runs units, queues jobs, serves the
// D-Bus API on its private socket and places units in cgroups. fleetd --dev
// uses one on machines where no manager is reachable over D-Bus, and the
// end-to-end tests use one per simulated host.
//
// Contract:
//
//   - Start returns only once the manager answers on <runtime>/systemd/private
//     and reports SystemState "running" or "degraded". On any failure it
//     removes everything it made (process, cgroups, temporary directory).
//   - Each manager runs in a private mount namespace in which /run/systemd is a
//     fresh tmpfs holding an empty system/ directory (the manager refuses to
//     start unless it believes the host booted with systemd), in its own session,
//     with its own XDG_RUNTIME_DIR, XDG_CONFIG_HOME and XDG_DATA_HOME under the
//     runtime directory, and in its own cgroup subtree in every named-systemd
//     and unified cgroup hierarchy, so that managers never see or kill each
//     other's units. No separate dbus-daemon is started: the manager's own
//     dbus.socket serves $XDG_RUNTIME_DIR/bus.
//   - Stop sends SIGTERM (the manager stops its units and exits), waits, sends
//     SIGKILL after a grace period, kills any process left in the cgroup
//     subtrees, removes them depth-first and removes the temporary runtime
//     directory if Start created it. Stop is idempotent and safe for concurrent
//     use.
//
// If the process that called Start dies without calling Stop, the manager
// receives SIGTERM as its parent-death signal and exits, but its cgroups and
// temporary directory stay behind. (The signal follows the OS thread that
// started the manager, so do not call Start from a goroutine that holds
// runtime.LockOSThread and exits.)
//
// Starting a manager needs root (mount namespaces, cgroup writes).
package launch
