// Package registry is the cluster store: the only package that talks to etcd.
//
// It maps the domain types of package unit onto an etcd v3 key space (see
// keys.go and docs/architecture.md) and offers each consumer what it needs:
// the API reads and writes units, states and machines; the engine follows a
// watch-fed view of the cluster and writes per-machine schedules in batched
// transactions fenced by its election key; each agent watches only its own
// machine's schedule and publishes its unit states on its machine lease.
// The bridge (relay.go) carries a request from one fleetd to another and
// its answer back, through keys, so that no fleetd needs a port for it.
//
// Errors: a missing unit is reported with an error that matches ErrNotFound
// (errors.Is) and implements NotFound() bool; a fenced write by a deposed
// leader returns ErrNotLeader; everything else is a store failure.
package registry
