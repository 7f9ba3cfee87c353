// Package chaos runs a randomized, replayable fault schedule against a
// cluster of the test harness (test/cluster): five hosts, each a real
// fleetd with its own systemd --user, against a three-member etcd cluster
// of separate processes.
//
// A seed draws the schedule (Plan): fleetd killed with SIGKILL and
// restarted (the engine leader's included), fleetd stopped with SIGTERM (a
// clean leave) and started again, an etcd member killed and restarted on
// its data (the etcd leader included), every etcd member frozen for a
// bounded time, a host cut from etcd and healed, a host's systemd manager
// restarted, and units systemd refuses (Type=simple without ExecStart=)
// started beside a good unit bound to their machine and later fixed. The
// same seed always draws the same schedule; what the cluster does in
// response is timing-dependent and may differ between runs.
//
// The workload holds every kind of unit fleet schedules: plain units,
// template instances (with churn: new instances started, old ones
// destroyed), units with [X-Fleet] Conflicts, MachineOf and Global (with and
// without MachineMetadata).
//
// While the faults run, a checker polls every host's systemd directly and
// the registry about once a second and counts its checks of the invariants
// (see the Inv constants); after the last fault it checks that every
// launched unit runs where it belongs within a bound and that fleetctl
// list-units agrees with every systemd. docs/chaos.md describes the
// invariants, the windows in which faults excuse a breach, and a run's
// figures.
//
// TestChaos runs a short fixed-seed schedule in `make test` and, with
// CHAOS_SEED or CHAOS_DURATION set (make chaos), a long one.
package chaos
