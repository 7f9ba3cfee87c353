// Package testenv says, in one place, what a test needs from the machine it
// runs on, and what happens when the machine does not have it.
//
// The tests come in tiers. `go test -short` (make test-short) runs what needs
// neither root nor a real systemd nor the end-to-end harness: the helpers
// here skip the others under -short. Without -short, a test whose need is not
// met skips on a developer's machine and fails when the environment variable
// CI is set: CI runs as root with systemd installed, so a skip there would
// hide a test that silently stopped running.
package testenv
