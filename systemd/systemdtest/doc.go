// Package systemdtest is the contract test suite of agent.UnitManager.
//
// Run exercises every method of a UnitManager the way the agent relies on
// it: unit files and their hashes, linking and daemon-reload, starting and
// stopping with Watch reporting the changes, runtime enablement making
// [Install] WantedBy= take effect, reset-failed, and States of unknown units.
// The real systemd.Manager runs it against a private systemd --user
// manager; an in-memory fake must pass it too, so the suite observes
// behaviour only through the UnitManager interface.
//
// The units it uses run /bin/sleep 3600 (a service that stays up) and
// /bin/false (a service that fails at once).
package systemdtest
