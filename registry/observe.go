package registry

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Op names one kind of etcd request.
type Op string

// The etcd requests the registry makes. Watches and the messages of lease
// keep-alive streams are streams, not requests, and are not reported; the
// opening of a keep-alive stream is.
const (
	OpGet            Op = "get"
	OpPut            Op = "put"
	OpDelete         Op = "delete"
	OpTxn            Op = "txn"
	OpCompact        Op = "compact"
	OpLeaseGrant     Op = "lease_grant"
	OpLeaseRevoke    Op = "lease_revoke"
	OpLeaseTTL       Op = "lease_time_to_live"
	OpLeaseList      Op = "lease_list"
	OpLeaseKeepAlive Op = "lease_keepalive"
	OpLeaseKeepOnce  Op = "lease_keepalive_once"
)

// Ops lists every Op, for metrics that want to expose all of them.
func Ops() []Op {
	return []Op{OpGet, OpPut, OpDelete, OpTxn, OpCompact, OpLeaseGrant, OpLeaseRevoke, OpLeaseTTL,
		OpLeaseList, OpLeaseKeepAlive, OpLeaseKeepOnce}
}

// Observer receives one report per etcd request: its kind, how long it
// took and its error (a failed transaction comparison is not an error).
// Implementations must be safe for concurrent use and must not block.
type Observer interface {
	Request(op Op, d time.Duration, err error)
}

// Instrument makes every key-value and lease request made through cli,
// including those of the election, report to o. It must be called before
// cli is used.
func Instrument(cli *clientv3.Client, o Observer) {
	cli.KV = observedKV{KV: cli.KV, o: o}
	cli.Lease = observedLease{Lease: cli.Lease, o: o}
}

func observe(o Observer, op Op, start time.Time, err error) {
	o.Request(op, time.Since(start), err)
}

type observedKV struct {
	clientv3.KV
	o Observer
}

func (kv observedKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	start := time.Now()
	r, err := kv.KV.Put(ctx, key, val, opts...)
	observe(kv.o, OpPut, start, err)
	return r, err
}

func (kv observedKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	start := time.Now()
	r, err := kv.KV.Get(ctx, key, opts...)
	observe(kv.o, OpGet, start, err)
	return r, err
}

func (kv observedKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	start := time.Now()
	r, err := kv.KV.Delete(ctx, key, opts...)
	observe(kv.o, OpDelete, start, err)
	return r, err
}

func (kv observedKV) Compact(ctx context.Context, rev int64, opts ...clientv3.CompactOption) (*clientv3.CompactResponse, error) {
	start := time.Now()
	r, err := kv.KV.Compact(ctx, rev, opts...)
	observe(kv.o, OpCompact, start, err)
	return r, err
}

func (kv observedKV) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	kind := OpTxn
	switch {
	case op.IsGet():
		kind = OpGet
	case op.IsPut():
		kind = OpPut
	case op.IsDelete():
		kind = OpDelete
	}
	start := time.Now()
	r, err := kv.KV.Do(ctx, op)
	observe(kv.o, kind, start, err)
	return r, err
}

func (kv observedKV) Txn(ctx context.Context) clientv3.Txn {
	return observedTxn{Txn: kv.KV.Txn(ctx), o: kv.o}
}

type observedTxn struct {
	clientv3.Txn
	o Observer
}

func (t observedTxn) If(cs ...clientv3.Cmp) clientv3.Txn {
	return observedTxn{Txn: t.Txn.If(cs...), o: t.o}
}

func (t observedTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	return observedTxn{Txn: t.Txn.Then(ops...), o: t.o}
}

func (t observedTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	return observedTxn{Txn: t.Txn.Else(ops...), o: t.o}
}

func (t observedTxn) Commit() (*clientv3.TxnResponse, error) {
	start := time.Now()
	r, err := t.Txn.Commit()
	observe(t.o, OpTxn, start, err)
	return r, err
}

type observedLease struct {
	clientv3.Lease
	o Observer
}

func (l observedLease) Grant(ctx context.Context, ttl int64) (*clientv3.LeaseGrantResponse, error) {
	start := time.Now()
	r, err := l.Lease.Grant(ctx, ttl)
	observe(l.o, OpLeaseGrant, start, err)
	return r, err
}

func (l observedLease) Revoke(ctx context.Context, id clientv3.LeaseID) (*clientv3.LeaseRevokeResponse, error) {
	start := time.Now()
	r, err := l.Lease.Revoke(ctx, id)
	observe(l.o, OpLeaseRevoke, start, err)
	return r, err
}

func (l observedLease) TimeToLive(ctx context.Context, id clientv3.LeaseID, opts ...clientv3.LeaseOption) (*clientv3.LeaseTimeToLiveResponse, error) {
	start := time.Now()
	r, err := l.Lease.TimeToLive(ctx, id, opts...)
	observe(l.o, OpLeaseTTL, start, err)
	return r, err
}

func (l observedLease) Leases(ctx context.Context) (*clientv3.LeaseLeasesResponse, error) {
	start := time.Now()
	r, err := l.Lease.Leases(ctx)
	observe(l.o, OpLeaseList, start, err)
	return r, err
}

func (l observedLease) KeepAlive(ctx context.Context, id clientv3.LeaseID) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	start := time.Now()
	r, err := l.Lease.KeepAlive(ctx, id)
	observe(l.o, OpLeaseKeepAlive, start, err)
	return r, err
}

func (l observedLease) KeepAliveOnce(ctx context.Context, id clientv3.LeaseID) (*clientv3.LeaseKeepAliveResponse, error) {
	start := time.Now()
	r, err := l.Lease.KeepAliveOnce(ctx, id)
	observe(l.o, OpLeaseKeepOnce, start, err)
	return r, err
}
