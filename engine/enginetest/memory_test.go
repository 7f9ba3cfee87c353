package enginetest_test

import (
	"testing"

	"github.com/fleet-next/fleet/engine/enginetest"
)

func TestMemoryContract(t *testing.T) {
	enginetest.Run(t, func(*testing.T) enginetest.Cluster { return enginetest.NewMemory() })
}
