// Package fleetd is the daemon: configuration (fleet's keys from an INI
// file and FLEET_* variables), start-up of the registry client, machine
// presence, the agent, the engine candidate and the HTTP API, supervision
// of all of them (one that ends unexpectedly ends fleetd with an error),
// and shutdown. In dev mode it
// also runs an embedded etcd and, where no systemd manager is reachable over
// D-Bus, a private systemd --user that it stops, with its units, at exit.
package fleetd
