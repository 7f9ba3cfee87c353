// Package e2e holds end-to-end tests: real fleetd and fleetctl binaries,
// real systemd --user managers and a real etcd.
package e2e

import (
	"os"
	"testing"

	"github.com/fleet-next/fleet/test/cluster"
)

func TestMain(m *testing.M) {
	code := m.Run()
	cluster.CleanupBinaries()
	os.Exit(code)
}
