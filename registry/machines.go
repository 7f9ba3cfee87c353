package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fleet-next/fleet/unit"
)

// DuplicateMachineError reports that another fleetd holds the machine ID.
type DuplicateMachineError struct {
	ID, PublicIP string
}

func (e *DuplicateMachineError) Error() string {
	ip := e.PublicIP
	if ip == "" {
		ip = "unknown IP"
	}
	return fmt.Sprintf("machine ID %s is already registered by a live fleetd at %s: each host needs its own machine ID", e.ID, ip)
}

// LeaseID identifies a machine's lease in the store; 0 is no lease.
type LeaseID int64

// Register publishes m's presence on a lease of the given TTL and returns the
// lease. instance identifies this fleetd installation (stable across
// restarts of the same host). If the machine is already registered by the
// same instance and its lease is still alive, Register adopts that lease, so
// the machine and its unit states stay in place without a gap. If another
// instance holds the ID, it returns *DuplicateMachineError.
// When etcd cannot be reached because it refuses this client's TLS, the
// error says so (see explain): it is what readiness reports.
func (r *Etcd) Register(ctx context.Context, m unit.Machine, instance string, ttl time.Duration) (LeaseID, error) {
	lease, err := r.register(ctx, m, instance, ttl)
	if err != nil {
		return 0, r.explain(ctx, err)
	}
	return lease, nil
}

func (r *Etcd) register(ctx context.Context, m unit.Machine, instance string, ttl time.Duration) (LeaseID, error) {
	key := r.keys.machine(m.ID)
	val, err := encodeMachine(m, instance)
	if err != nil {
		return 0, fmt.Errorf("encode machine: %w", err)
	}
	for {
		resp, err := r.cli.Get(ctx, key)
		if err != nil {
			return 0, storeErr("read machine registration", err)
		}
		if len(resp.Kvs) > 0 {
			kv := resp.Kvs[0]
			rec, err := decodeMachine(kv.Value)
			if err == nil && rec.Leaving {
				// A machine that left cleanly: the ID is free again.
				if _, err := r.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
					Then(clientv3.OpDelete(key)).Commit(); err != nil {
					return 0, storeErr("remove the record of a machine that left", err)
				}
				continue
			}
			if err != nil || rec.Instance != instance {
				return 0, &DuplicateMachineError{ID: m.ID, PublicIP: rec.PublicIP}
			}
			lease := LeaseID(kv.Lease)
			ttlResp, err := r.cli.TimeToLive(ctx, clientv3.LeaseID(lease))
			if err == nil && ttlResp.TTL > 0 {
				// Take over our own live registration.
				tr, err := r.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
					Then(clientv3.OpPut(key, string(val), clientv3.WithLease(clientv3.LeaseID(lease)))).Commit()
				if err != nil {
					return 0, storeErr("take over machine registration", err)
				}
				if tr.Succeeded {
					return lease, nil
				}
				continue
			}
			// Our old lease is gone or going: replace the key below.
			if _, err := r.cli.Delete(ctx, key); err != nil {
				return 0, storeErr("remove stale machine registration", err)
			}
			continue
		}
		grant, err := r.cli.Grant(ctx, int64((ttl+time.Second-1)/time.Second))
		if err != nil {
			return 0, storeErr("grant machine lease", err)
		}
		tr, err := r.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(val), clientv3.WithLease(grant.ID))).Commit()
		if err != nil {
			return 0, storeErr("register machine", err)
		}
		if tr.Succeeded {
			return LeaseID(grant.ID), nil
		}
		_, _ = r.cli.Revoke(ctx, grant.ID) // lost a race; best effort, it expires anyway
	}
}

// KeepAlive renews lease until ctx ends. The returned channel receives a
// value after each renewal and is closed when the lease is lost (expired,
// revoked, or ctx done).
func (r *Etcd) KeepAlive(ctx context.Context, lease LeaseID) (<-chan struct{}, error) {
	ch, err := r.cli.KeepAlive(ctx, clientv3.LeaseID(lease))
	if err != nil {
		return nil, storeErr("keep machine lease alive", err)
	}
	beats := make(chan struct{}, 1)
	go func() {
		defer close(beats)
		for range ch {
			select {
			case beats <- struct{}{}:
			default: // the reader has a beat pending; one is enough
			}
		}
	}()
	return beats, nil
}

// Deregister makes machine id leave the cluster: its record is replaced by
// a leaving record (on a lease of its own that expires after linger, so
// that the engine learns the machine left rather than vanished), then its
// lease is revoked, so that its presence, every state it published and
// its election key disappear at once.
func (r *Etcd) Deregister(ctx context.Context, id string, lease LeaseID, linger time.Duration) error {
	key := r.keys.machine(id)
	grant, err := r.cli.Grant(ctx, int64(max((linger+time.Second-1)/time.Second, 1)))
	if err != nil {
		return storeErr("grant lease of the leaving record", err)
	}
	val, err := json.Marshal(machineRecord{ID: id, Leaving: true})
	if err != nil {
		return fmt.Errorf("encode leaving record: %w", err)
	}
	if _, err := r.cli.Put(ctx, key, string(val), clientv3.WithLease(grant.ID)); err != nil {
		return storeErr("mark machine leaving", err)
	}
	if _, err := r.cli.Revoke(ctx, clientv3.LeaseID(lease)); err != nil {
		return storeErr("revoke machine lease", err)
	}
	return nil
}

// Machines returns live machines sorted by ID, with dynamic metadata merged
// over the metadata each machine published.
func (r *Etcd) Machines(ctx context.Context) ([]unit.Machine, error) {
	resp, err := r.cli.Txn(ctx).Then(
		clientv3.OpGet(r.keys.machines(), clientv3.WithPrefix()),
		clientv3.OpGet(r.keys.metadata(), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, storeErr("read machines", err)
	}
	dyn := r.decodeMetadata(resp.Responses[1].GetResponseRange().Kvs)
	var out []unit.Machine
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		rec, err := decodeMachine(kv.Value)
		if err != nil {
			r.log.Warn("skipping undecodable machine", "key", string(kv.Key), "err", err)
			continue
		}
		if rec.Leaving {
			continue // it left the cluster
		}
		out = append(out, machineFromRecord(rec, dyn[rec.ID]))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (r *Etcd) decodeMetadata(kvs []*mvccpb.KeyValue) map[string]map[string]string {
	dyn := make(map[string]map[string]string)
	for _, kv := range kvs {
		id, k, ok := split2(strings.TrimPrefix(string(kv.Key), r.keys.metadata()))
		if !ok {
			continue
		}
		if dyn[id] == nil {
			dyn[id] = make(map[string]string)
		}
		dyn[id][k] = string(kv.Value)
	}
	return dyn
}

// machineFromRecord merges dynamic metadata over published metadata; a
// dynamic empty value deletes the key.
func machineFromRecord(rec machineRecord, dyn map[string]string) unit.Machine {
	md := make(map[string]string, len(rec.Metadata)+len(dyn))
	for k, v := range rec.Metadata {
		md[k] = v
	}
	for k, v := range dyn {
		if v == "" {
			delete(md, k)
		} else {
			md[k] = v
		}
	}
	return unit.Machine{ID: rec.ID, PublicIP: rec.PublicIP, Metadata: md, Version: rec.Version, APIURL: rec.APIURL}
}

// SetMachineMetadata applies all changes in one transaction, if every
// machine they name is registered (live); otherwise it changes nothing and
// returns a not-found error naming the first missing machine. A removal is
// stored as an empty value so that it also hides metadata from the
// machine's configuration, as in fleet.
func (r *Etcd) SetMachineMetadata(ctx context.Context, ops []unit.MetadataChange) error {
	if len(ops) == 0 {
		return nil
	}
	if len(ops) > maxTxnOps {
		return fmt.Errorf("too many metadata changes in one request: %d (max %d)", len(ops), maxTxnOps)
	}
	return r.setMachineMetadata(ctx, ops)
}

// PublishState writes one unit state on the machine lease.
func (r *Etcd) PublishState(ctx context.Context, lease LeaseID, s unit.State) error {
	b, err := encodeState(s)
	if err != nil {
		return fmt.Errorf("encode state of %s: %w", s.Name, err)
	}
	if _, err := r.cli.Put(ctx, r.keys.state(s.Name, s.MachineID), string(b), clientv3.WithLease(clientv3.LeaseID(lease))); err != nil {
		return storeErr("publish state of "+s.Name, err)
	}
	return nil
}

// DeleteState removes one machine's state of a unit (only that machine's).
func (r *Etcd) DeleteState(ctx context.Context, name, machineID string) error {
	if _, err := r.cli.Delete(ctx, r.keys.state(name, machineID)); err != nil {
		return storeErr("delete state of "+name, err)
	}
	return nil
}

// PublishRefusal records, on the machine lease, that machineID refuses the
// version h of unit name, and why; the engine places that version
// elsewhere.
func (r *Etcd) PublishRefusal(ctx context.Context, lease LeaseID, name, machineID string, h unit.Hash, reason string) error {
	b, err := json.Marshal(refusalRecord{Hash: h.String(), Reason: reason})
	if err != nil {
		return fmt.Errorf("encode refusal of %s: %w", name, err)
	}
	if _, err := r.cli.Put(ctx, r.keys.refusal(name, machineID), string(b), clientv3.WithLease(clientv3.LeaseID(lease))); err != nil {
		return storeErr("publish refusal of "+name, err)
	}
	return nil
}
