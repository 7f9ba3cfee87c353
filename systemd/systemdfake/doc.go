// Package systemdfake is an in-memory agent.UnitManager: a units directory
// and a systemd manager modelled in memory, for running many agents in one
// process (the benchmark suite) and for tests that need no real systemd.
//
// It passes the same contract suite (systemd/systemdtest) as the D-Bus
// adapter, and models what that suite and the agent rely on:
//
//   - Unit files: WriteUnitFile and RemoveUnitFile change an in-memory units
//     directory; UnitFiles reports each file with unit.HashOf of its bytes.
//     Names are checked as the real adapter checks them.
//   - Loading: Link and Enable act on runtime links only. Nothing is loaded
//     until Reload (daemon-reload), which loads every linked unit whose file
//     exists and records the WantedBy= of every enabled one. A unit unlinked
//     or removed while it runs keeps running with LoadState "not-found",
//     as systemd does; an idle one is unloaded. Code that forgets to reload
//     therefore sees units stay "not-found", a stricter model than systemd's
//     on-demand loading.
//   - Jobs: Start and Stop take effect at once (the real ones queue a job).
//     Starting a unit pulls in the units that want it; starting or stopping
//     a unit that is not loaded fails with an error matching ErrNoSuchUnit
//     that also has a NoSuchUnit() bool method. A service whose ExecStart
//     runs "false" fails at once (ActiveState "failed"); one running "true"
//     exits cleanly (inactive, or active/exited with RemainAfterExit=yes or
//     Type=oneshot with RemainAfterExit); any other service runs, with a
//     fresh fake MainPID. Other unit types become active/active.
//   - ResetFailed turns failed into inactive; unknown units are no error.
//   - States: unknown units read as LoadState "not-found", inactive, dead.
//   - Watch: every change of a unit's load, active or sub state or main PID
//     is reported to every watcher, deduplicated and sorted within a batch;
//     changes made while the reader is busy coalesce into the next batch.
//
// All methods are safe for concurrent use.
package systemdfake
