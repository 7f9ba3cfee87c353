// Package presence keeps one machine registered in the cluster on a single
// lease: it registers the machine record, keeps the lease alive, registers
// again when the lease is lost (after a store outage longer than agent_ttl),
// rewrites the record when the machine's metadata changes, and says whether
// the machine is ready to serve.
//
// Ready is nil exactly while the machine holds a live lease. Lease returns
// that lease (0 when there is none); other components write on it (unit
// states) and therefore expire with it, and the engine leads only while the
// machine is registered on it. Leave revokes the lease: the machine and its
// states disappear from the store at once, and its engine steps down.
package presence
