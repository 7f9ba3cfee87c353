// Package registrytest starts real, embedded etcd members for tests and
// returns registries on them. Everything is torn down with t.Cleanup.
package registrytest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/registry/etcdembed"
)

// Etcd is an embedded etcd member for one test.
type Etcd struct {
	*etcdembed.Server
}

// StartEtcd starts a fresh single-member etcd in a temp dir.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := etcdembed.Start(ctx, etcdembed.Options{Dir: t.TempDir(), Fast: true})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(e.Close) // registered first, so it runs after the clients' cleanups
	return &Etcd{Server: e}
}

// Client returns a client closed at cleanup.
func (e *Etcd) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := e.NewClient()
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// Registry returns a registry on a new client of e.
func (e *Etcd) Registry(t testing.TB) *registry.Etcd {
	t.Helper()
	return registry.FromClient(e.Client(t), "", nil)
}

// New starts a fresh etcd and returns a registry on it.
func New(t testing.TB) *registry.Etcd {
	t.Helper()
	return StartEtcd(t).Registry(t)
}
