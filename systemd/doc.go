// Package systemd drives a host's systemd over D-Bus and manages the
// directory holding the unit files fleet schedules onto the host. It is the
// only package that talks D-Bus.
//
// Manager implements the agent's UnitManager:
//
//   - Unit files live in Config.UnitsDir (created 0755 if missing); files are
//     written 0644 through a temporary file and a rename, so systemd never
//     reads a partial file. UnitFiles ignores dot files (the temporaries).
//   - Link, Enable and Disable act at runtime only (links go below /run, or
//     $XDG_RUNTIME_DIR for a user manager), so a reboot forgets them, and
//     Link and Enable replace conflicting links. Reload is daemon-reload.
//   - Start and Stop queue a job in mode "replace" and return as soon as
//     systemd accepted it; they do not wait for it to finish. Starting a unit
//     systemd cannot find, or stopping one it has not loaded, returns an
//     error matching ErrNoSuchUnit (errors.Is) that also has a
//     NoSuchUnit() bool method for callers that do not import this package.
//   - States asks for many units in one call (plus one MainPID lookup per
//     running service); unknown units report LoadState "not-found".
//   - Watch reports unit names whose load, active or sub state or main PID
//     changed, from systemd's signals, coalesced over a short window and
//     deduplicated; signals that repeat a unit's last known state (as every
//     daemon-reload does for every unit) are dropped.
//
// A Manager talks to the system manager over the system bus, to the user
// manager over the session bus, or to any manager over its private socket
// (peer to peer, as launch.Manager exposes). All methods are safe for
// concurrent use. Close ends the connection and every Watch.
package systemd
