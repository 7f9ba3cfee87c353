package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrNotFound is matched (errors.Is) by errors about a unit that does not exist.
var ErrNotFound = errors.New("registry: not found")

// ErrNotLeader is returned by fenced writes of an engine that no longer leads.
var ErrNotLeader = errors.New("registry: not the engine leader")

// notFoundError names what was not found and satisfies both errors.Is(err,
// ErrNotFound) and the NotFound() bool probe the API uses.
type notFoundError struct{ what string }

func (e *notFoundError) Error() string        { return e.what + " not found" }
func (e *notFoundError) Is(target error) bool { return target == ErrNotFound }
func (e *notFoundError) NotFound() bool       { return true }

// maxTxnOps is etcd's default --max-txn-ops; batches never exceed it.
const maxTxnOps = 128

// Etcd is the registry over an etcd v3 client. It is safe for concurrent use.
type Etcd struct {
	cli   *clientv3.Client
	keys  keys
	log   *slog.Logger
	owned bool // Close closes cli (Connect made it)
	// tls and endpoints, when Connect made cli with TLS, let explain say
	// why etcd refuses this client.
	tls       *tls.Config
	endpoints []string
}

// FromClient returns a registry storing under prefix ("" = DefaultPrefix)
// on a client the caller made (tests and tools). The caller owns cli and
// closes it after the registry is no longer used; Close does not.
func FromClient(cli *clientv3.Client, prefix string, log *slog.Logger) *Etcd {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Etcd{cli: cli, keys: newKeys(prefix), log: log}
}

// Close releases the client Connect made. Idempotent; a no-op for a
// registry made with FromClient.
func (r *Etcd) Close() error {
	if !r.owned {
		return nil
	}
	if err := r.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("close etcd client: %w", err)
	}
	return nil
}

// Prefix is the key prefix in use.
func (r *Etcd) Prefix() string { return r.keys.prefix }

func storeErr(step string, err error) error { return fmt.Errorf("%s: %w", step, err) }
