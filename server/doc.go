// Package server wires one fleetd: configuration (fleet's keys from an INI
// file and FLEET_* variables), the registry client, machine presence on one
// lease, the agent, the engine candidate and the HTTP API. In dev mode it
// also runs an embedded etcd and, where no systemd manager is reachable over
// D-Bus, a private systemd --user that it stops, with its units, at exit.
package server
