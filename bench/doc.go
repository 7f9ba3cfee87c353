// Package bench is fleet's benchmark suite, run by cmd/fleet-bench
// (make bench). It measures what the design claims, from real runs:
//
//   - Control plane at scale: one etcd, one engine and hundreds or
//     thousands of simulated agents, each group in its own process. An
//     agent is the real agent.Agent on the real registry, with its own
//     machine registration, lease and etcd connection, driving the
//     in-memory systemd of systemd/systemdfake (which passes the same
//     contract suite as the D-Bus adapter). The suite submits and starts
//     units and reports placements per second, start latency, etcd
//     requests per agent from etcd's own Prometheus metrics, and the CPU
//     time and memory of every process from /proc.
//   - The etcd ceiling: what the same etcd member takes in single puts
//     and in batched transactions.
//   - Real systemd: hosts of test/cluster (real fleetd processes, each
//     with its own systemd --user), a fleetctl start of many units, the
//     same units started on bare systemd as the floor, and the footprint
//     of a fleetd holding a thousand running units.
//   - The CLI at scale: the real fleetctl listing tens of thousands of
//     units through a fleetd's API.
//
// The suite prints markdown tables; docs/benchmarks.md explains them and
// records the latest run. Child processes (etcd, engine, agents) are this
// same binary started with a role argument; they talk to the suite over
// their standard input and output.
package bench
