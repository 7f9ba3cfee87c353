// Package e2e holds end-to-end tests: real fleetd and fleetctl binaries,
// real systemd --user managers and a real etcd.
package e2e

import (
	"os"
	"testing"

	"github.com/fleet-next/fleet/internal/testenv"
	"github.com/fleet-next/fleet/test/cluster"
)

func TestMain(m *testing.M) {
	code := m.Run()
	cluster.CleanupBinaries()
	os.Exit(code)
}

// newCluster starts a cluster of real hosts, which needs root and systemd:
// it skips t under -short, and where those are missing (fails in CI).
func newCluster(t *testing.T, opts cluster.Options) *cluster.Cluster {
	t.Helper()
	testenv.RequireSystemd(t)
	return cluster.New(t, opts)
}
