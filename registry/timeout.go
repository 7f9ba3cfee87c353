package registry

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// bound gives every key-value and lease request made through cli,
// including those of the election, a deadline of d (etcd_request_timeout)
// on top of the caller's context, so that no store call of fleetd waits
// forever on an etcd that stopped answering. Streams (watches, lease
// keep-alives) are not bounded. It must be called before cli is used.
func bound(cli *clientv3.Client, d time.Duration) {
	cli.KV = boundedKV{KV: cli.KV, d: d}
	cli.Lease = boundedLease{Lease: cli.Lease, d: d}
}

// unboundedKey marks a context whose requests are not bounded (see
// unbounded).
type unboundedKey struct{}

// unbounded exempts the requests made with ctx from the request timeout:
// for the reads whose size grows with the cluster (the engine's first read
// of every unit), which are bounded by their caller instead.
func unbounded(ctx context.Context) context.Context {
	return context.WithValue(ctx, unboundedKey{}, true)
}

// limit bounds ctx by d unless it is unbounded.
func limit(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if ctx.Value(unboundedKey{}) != nil {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

type boundedKV struct {
	clientv3.KV
	d time.Duration
}

func (kv boundedKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	ctx, cancel := limit(ctx, kv.d)
	defer cancel()
	return kv.KV.Put(ctx, key, val, opts...)
}

func (kv boundedKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	ctx, cancel := limit(ctx, kv.d)
	defer cancel()
	return kv.KV.Get(ctx, key, opts...)
}

func (kv boundedKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	ctx, cancel := limit(ctx, kv.d)
	defer cancel()
	return kv.KV.Delete(ctx, key, opts...)
}

func (kv boundedKV) Compact(ctx context.Context, rev int64, opts ...clientv3.CompactOption) (*clientv3.CompactResponse, error) {
	ctx, cancel := limit(ctx, kv.d)
	defer cancel()
	return kv.KV.Compact(ctx, rev, opts...)
}

func (kv boundedKV) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	ctx, cancel := limit(ctx, kv.d)
	defer cancel()
	return kv.KV.Do(ctx, op)
}

// Txn records the transaction and builds it on the wrapped KV at Commit,
// under a context bounded from that moment.
func (kv boundedKV) Txn(ctx context.Context) clientv3.Txn {
	return &boundedTxn{kv: kv, ctx: ctx}
}

type boundedTxn struct {
	kv        boundedKV
	ctx       context.Context
	cmps      []clientv3.Cmp
	then, els []clientv3.Op
}

func (t *boundedTxn) If(cs ...clientv3.Cmp) clientv3.Txn {
	t.cmps = append(t.cmps, cs...)
	return t
}

func (t *boundedTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	t.then = append(t.then, ops...)
	return t
}

func (t *boundedTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	t.els = append(t.els, ops...)
	return t
}

func (t *boundedTxn) Commit() (*clientv3.TxnResponse, error) {
	ctx, cancel := limit(t.ctx, t.kv.d)
	defer cancel()
	return t.kv.KV.Txn(ctx).If(t.cmps...).Then(t.then...).Else(t.els...).Commit()
}

type boundedLease struct {
	clientv3.Lease
	d time.Duration
}

func (l boundedLease) Grant(ctx context.Context, ttl int64) (*clientv3.LeaseGrantResponse, error) {
	ctx, cancel := limit(ctx, l.d)
	defer cancel()
	return l.Lease.Grant(ctx, ttl)
}

func (l boundedLease) Revoke(ctx context.Context, id clientv3.LeaseID) (*clientv3.LeaseRevokeResponse, error) {
	ctx, cancel := limit(ctx, l.d)
	defer cancel()
	return l.Lease.Revoke(ctx, id)
}

func (l boundedLease) TimeToLive(ctx context.Context, id clientv3.LeaseID, opts ...clientv3.LeaseOption) (*clientv3.LeaseTimeToLiveResponse, error) {
	ctx, cancel := limit(ctx, l.d)
	defer cancel()
	return l.Lease.TimeToLive(ctx, id, opts...)
}

func (l boundedLease) Leases(ctx context.Context) (*clientv3.LeaseLeasesResponse, error) {
	ctx, cancel := limit(ctx, l.d)
	defer cancel()
	return l.Lease.Leases(ctx)
}

func (l boundedLease) KeepAliveOnce(ctx context.Context, id clientv3.LeaseID) (*clientv3.LeaseKeepAliveResponse, error) {
	ctx, cancel := limit(ctx, l.d)
	defer cancel()
	return l.Lease.KeepAliveOnce(ctx, id)
}
