// Package agent runs on every host and makes the host's systemd hold what
// the engine scheduled there.
//
// Plan is pure: from the desired placements of this machine and the actual
// unit files and systemd states it computes typed actions (stop, disable,
// remove, reset-failed, write, link, enable, one daemon-reload, start).
// Agent applies plans through a UnitManager, reacting to schedule changes
// (a watch on this machine's schedule alone) and systemd events, with a
// slow level-triggered resync. It publishes a unit's state only when it
// changes. It never acts before it has seen a schedule, never stops units
// because the store is unreachable, and adopts units a previous fleetd left
// running instead of restarting them.
package agent
