package enginestore_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet-next/fleet/engine"
	"github.com/fleet-next/fleet/engine/enginestore"
	"github.com/fleet-next/fleet/engine/enginetest"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/registry/registrytest"
	"github.com/fleet-next/fleet/unit"
)

// cluster is enginestore on a real etcd, with machines registered on
// leases of their own as presence registers them.
type cluster struct {
	reg *registry.Etcd

	mu     sync.Mutex // guards leases
	leases map[string]registry.LeaseID
}

func (c *cluster) Store(id string) engine.Store {
	return enginestore.Store{Reg: c.reg, Leases: machineLease{c, id}}
}

func (c *cluster) Join(ctx context.Context, id string) error {
	// The lease outlives the test; nothing keeps it alive.
	l, err := c.reg.Register(ctx, unit.Machine{ID: id}, "instance-"+id, time.Minute)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.leases[id] = l
	c.mu.Unlock()
	return nil
}

func (c *cluster) Leave(ctx context.Context, id string) error {
	c.mu.Lock()
	l, ok := c.leases[id]
	delete(c.leases, id)
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("machine %s is not joined", id)
	}
	return c.reg.Deregister(ctx, id, l, 10*time.Second)
}

func (c *cluster) CreateUnit(ctx context.Context, u unit.Unit) error { return c.reg.CreateUnit(ctx, u) }

func (c *cluster) SetDesiredState(ctx context.Context, name string, s unit.FleetState) error {
	return c.reg.SetDesiredState(ctx, name, s)
}

type machineLease struct {
	c  *cluster
	id string
}

func (m machineLease) Lease() registry.LeaseID {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	return m.c.leases[m.id]
}

// TestContract runs the engine store's contract on the registry; every
// case has a key prefix of its own on one etcd.
func TestContract(t *testing.T) {
	e := registrytest.StartEtcd(t)
	cli := e.Client(t)
	enginetest.Run(t, func(t *testing.T) enginetest.Cluster {
		prefix := "/" + strings.ReplaceAll(t.Name(), "/", "-") + "/"
		return &cluster{reg: registry.FromClient(cli, prefix, nil), leases: make(map[string]registry.LeaseID)}
	})
}
