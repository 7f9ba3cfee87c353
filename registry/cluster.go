package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/fleet-next/fleet/internal/pause"
	"github.com/fleet-next/fleet/internal/retry"
	"github.com/fleet-next/fleet/unit"
)

// ClusterView is the engine's in-memory view of the cluster, fed by a single
// watch on the engine's key range (see keys.go). It is safe for concurrent use.
type ClusterView struct {
	r       *Etcd
	changed chan struct{}

	mu       sync.Mutex // guards the fields below
	ready    bool
	units    map[string]unit.Unit
	machines map[string]machineRecord
	refused  map[string]map[string]unit.Refusal // unit -> machine -> refusal
	meta     map[string]map[string]string
	places   map[string]map[string]unit.Placement
	reasons  map[string]string
	rev      int64
	revCond  chan struct{} // closed and replaced whenever rev advances
}

// FollowCluster starts following the cluster until ctx ends.
func (r *Etcd) FollowCluster(ctx context.Context) *ClusterView {
	v := &ClusterView{r: r, changed: make(chan struct{}, 1), revCond: make(chan struct{})}
	go v.run(ctx)
	return v
}

// Changed receives a value after the view changed (coalesced).
func (v *ClusterView) Changed() <-chan struct{} { return v.changed }

// Snapshot returns a copy of the view; ok is false until the first read.
func (v *ClusterView) Snapshot() (unit.Cluster, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.ready {
		return unit.Cluster{}, false
	}
	c := unit.Cluster{
		Units:      maps.Clone(v.units),
		Machines:   make(map[string]unit.Machine, len(v.machines)),
		Placements: make(map[string]map[string]unit.Placement, len(v.places)),
		Reasons:    maps.Clone(v.reasons),
		Revision:   v.rev,
	}
	for id, rec := range v.machines {
		if rec.Leaving {
			if c.Departed == nil {
				c.Departed = make(map[string]bool)
			}
			c.Departed[id] = true
			continue
		}
		c.Machines[id] = machineFromRecord(rec, v.meta[id])
	}
	for u, pm := range v.places {
		c.Placements[u] = maps.Clone(pm)
	}
	if len(v.refused) > 0 {
		c.Refused = make(map[string]map[string]unit.Refusal, len(v.refused))
		for u, rm := range v.refused {
			c.Refused[u] = maps.Clone(rm)
		}
	}
	return c, true
}

// Revision is the store revision the view reflects (0 before the first read).
func (v *ClusterView) Revision() int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.rev
}

// WaitRevision blocks until the view reflects revision rev or ctx ends.
func (v *ClusterView) WaitRevision(ctx context.Context, rev int64) error {
	for {
		v.mu.Lock()
		cur, ch := v.rev, v.revCond
		v.mu.Unlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for cluster revision %d: %w", rev, ctx.Err())
		case <-ch:
		}
	}
}

func (v *ClusterView) run(ctx context.Context) {
	from, end := v.r.keys.engineRange(), prefixEnd(v.r.keys.prefix)
	backoff := retry.Backoff(250*time.Millisecond, 10*time.Second)
	for ctx.Err() == nil {
		// The one read whose size grows with the cluster: not bounded by
		// the request timeout.
		resp, err := v.r.cli.Get(unbounded(ctx), from, clientv3.WithRange(end))
		if err != nil {
			d := backoff.NextBackOff()
			v.r.log.Warn("reading cluster failed; retrying", "err", err, "in", d)
			_ = pause.For(ctx, d)
			continue
		}
		backoff.Reset()
		v.reset(resp.Kvs, resp.Header.Revision)
		err = v.r.watchRange(ctx, from, end, resp.Header.Revision+1, func(w clientv3.WatchResponse) {
			v.apply(w.Events, w.Header.Revision)
		})
		if err != nil && ctx.Err() == nil {
			v.r.log.Warn("cluster watch ended; re-reading", "err", err)
		}
	}
}

func (v *ClusterView) reset(kvs []*mvccpb.KeyValue, rev int64) {
	v.mu.Lock()
	v.units = make(map[string]unit.Unit)
	v.machines = make(map[string]machineRecord)
	v.refused = make(map[string]map[string]unit.Refusal)
	v.meta = make(map[string]map[string]string)
	v.places = make(map[string]map[string]unit.Placement)
	v.reasons = make(map[string]string)
	for _, kv := range kvs {
		v.put(kv)
	}
	v.ready = true
	v.advance(rev)
	v.mu.Unlock()
	sendLatest(v.changed, struct{}{})
}

func (v *ClusterView) apply(evs []*clientv3.Event, rev int64) {
	v.mu.Lock()
	for _, ev := range evs {
		if ev.Type == mvccpb.DELETE {
			v.del(string(ev.Kv.Key))
		} else {
			v.put(ev.Kv)
		}
	}
	v.advance(rev)
	v.mu.Unlock()
	if len(evs) > 0 {
		sendLatest(v.changed, struct{}{})
	}
}

// advance must be called with mu held.
func (v *ClusterView) advance(rev int64) {
	if rev > v.rev {
		v.rev = rev
		close(v.revCond)
		v.revCond = make(chan struct{})
	}
}

// put must be called with mu held.
func (v *ClusterView) put(kv *mvccpb.KeyValue) {
	k, key := v.r.keys, string(kv.Key)
	var err error
	switch {
	case strings.HasPrefix(key, k.units()):
		var u unit.Unit
		if u, err = decodeUnit(kv.Value, kv.CreateRevision); err == nil {
			v.units[u.Name] = u
		}
	case strings.HasPrefix(key, k.machines()):
		var rec machineRecord
		if rec, err = decodeMachine(kv.Value); err == nil {
			v.machines[strings.TrimPrefix(key, k.machines())] = rec
		}
	case strings.HasPrefix(key, k.metadata()):
		if id, mk, ok := split2(strings.TrimPrefix(key, k.metadata())); ok {
			if v.meta[id] == nil {
				v.meta[id] = make(map[string]string)
			}
			v.meta[id][mk] = string(kv.Value)
		}
	case strings.HasPrefix(key, k.schedules()):
		if m, u, ok := split2(strings.TrimPrefix(key, k.schedules())); ok {
			var p unit.Placement
			if p, err = decodePlacement(m, u, kv.Value); err == nil {
				if v.places[u] == nil {
					v.places[u] = make(map[string]unit.Placement)
				}
				v.places[u][m] = p
			}
		}
	case strings.HasPrefix(key, k.reasons()):
		v.reasons[strings.TrimPrefix(key, k.reasons())] = string(kv.Value)
	case strings.HasPrefix(key, k.refusals()):
		if u, m, ok := split2(strings.TrimPrefix(key, k.refusals())); ok {
			var rec refusalRecord
			if err = json.Unmarshal(kv.Value, &rec); err == nil {
				var h unit.Hash
				if h, err = unit.ParseHash(rec.Hash); err == nil {
					if v.refused[u] == nil {
						v.refused[u] = make(map[string]unit.Refusal)
					}
					v.refused[u][m] = unit.Refusal{Hash: h, Reason: rec.Reason}
				}
			}
		}
	}
	if err != nil {
		v.r.log.Warn("skipping undecodable key", "key", key, "err", err)
	}
}

// del must be called with mu held.
func (v *ClusterView) del(key string) {
	k := v.r.keys
	switch {
	case strings.HasPrefix(key, k.units()):
		delete(v.units, strings.TrimPrefix(key, k.units()))
	case strings.HasPrefix(key, k.machines()):
		delete(v.machines, strings.TrimPrefix(key, k.machines()))
	case strings.HasPrefix(key, k.metadata()):
		if id, mk, ok := split2(strings.TrimPrefix(key, k.metadata())); ok {
			delete(v.meta[id], mk)
		}
	case strings.HasPrefix(key, k.schedules()):
		if m, u, ok := split2(strings.TrimPrefix(key, k.schedules())); ok {
			delete(v.places[u], m)
			if len(v.places[u]) == 0 {
				delete(v.places, u)
			}
		}
	case strings.HasPrefix(key, k.reasons()):
		delete(v.reasons, strings.TrimPrefix(key, k.reasons()))
	case strings.HasPrefix(key, k.refusals()):
		if u, m, ok := split2(strings.TrimPrefix(key, k.refusals())); ok {
			delete(v.refused[u], m)
			if len(v.refused[u]) == 0 {
				delete(v.refused, u)
			}
		}
	}
}

// Leader is a won engine election. Its Done channel closes when leadership
// is lost; every write it makes is fenced by its election key and by its
// machine's registration.
type Leader struct {
	r     *Etcd
	sess  *concurrency.Session
	key   string // election key
	rev   int64  // its create revision: the fencing token
	mkey  string // the leader's machine record; "" = not tied to a machine
	lease LeaseID
	done  chan struct{}
	stop  context.CancelFunc // ends the watch of the machine record
}

// MinElectionTTL is the shortest election lease etcd honours reliably.
const MinElectionTTL = 2 * time.Second

// Campaign blocks until this engine leads or ctx ends. Leadership is one key
// on a lease of its own, of ttl (at least MinElectionTTL, whole seconds),
// that only the leader creates and keeps alive. The other candidates hold no
// lease and write nothing: they watch the key, and when it goes (the leader
// resigned, or died and its lease expired within ttl) they try to create it,
// each after a random pause of up to a second so that a large cluster does
// not answer in one burst.
//
// With a machine lease (not 0), leading also requires that machine id be
// registered on that lease: the key is only created while it is, every
// write is fenced by it, and leadership ends when the record goes or moves
// to another lease (the machine left or lost its lease).
func (r *Etcd) Campaign(ctx context.Context, id string, machine LeaseID, ttl time.Duration) (*Leader, error) {
	key := r.keys.leader()
	secs := int((max(ttl, MinElectionTTL) + time.Second - 1) / time.Second)
	for {
		resp, err := r.cli.Get(ctx, key)
		if err != nil {
			return nil, storeErr("read engine leader", err)
		}
		if len(resp.Kvs) > 0 {
			if err := r.waitGone(ctx, key, resp.Header.Revision+1); err != nil {
				return nil, err
			}
			if err := pause.For(ctx, time.Duration(rand.Int64N(int64(time.Second)))); err != nil {
				return nil, err
			}
			continue
		}
		sess, err := concurrency.NewSession(r.cli, concurrency.WithTTL(secs), concurrency.WithContext(ctx))
		if err != nil {
			return nil, storeErr("open election lease", err)
		}
		l := &Leader{r: r, sess: sess, key: key, lease: machine, done: make(chan struct{})}
		conds := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}
		if machine != 0 {
			l.mkey = r.keys.machine(id)
			conds = append(conds, l.registered())
		}
		txn, err := r.cli.Txn(ctx).If(conds...).
			Then(clientv3.OpPut(key, id, clientv3.WithLease(sess.Lease()))).
			Else(clientv3.OpGet(key, clientv3.WithCountOnly())).
			Commit()
		if err == nil && txn.Succeeded {
			l.rev = txn.Header.Revision
			wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
			l.stop = stop
			go l.watch(wctx)
			return l, nil
		}
		_ = sess.Close() // best effort: an unrevoked election lease expires within ttl
		switch {
		case err != nil:
			return nil, storeErr("campaign for engine leadership", err)
		case txn.Responses[0].GetResponseRange().Count == 0:
			return nil, fmt.Errorf("campaign for engine leadership: machine %s is not registered on lease %x", id, machine)
		}
	}
}

// registered is the condition that the leader's machine is registered on
// its lease.
func (l *Leader) registered() clientv3.Cmp {
	return clientv3.Compare(clientv3.LeaseValue(l.mkey), "=", clientv3.LeaseID(l.lease))
}

// watch closes done when the election lease is lost or, for a leader tied
// to its machine, when the machine record goes or changes lease; then it
// revokes the election lease so that another candidate can lead at once.
func (l *Leader) watch(ctx context.Context) {
	defer close(l.done)
	if l.mkey == "" {
		select {
		case <-l.sess.Done():
		case <-ctx.Done():
		}
		return
	}
	defer func() {
		if ctx.Err() == nil {
			_ = l.sess.Close() // best effort: the lease expires within its ttl
		}
	}()
	from := l.rev + 1
	for ctx.Err() == nil {
		wch := l.r.cli.Watch(ctx, l.mkey, clientv3.WithRev(from))
	events:
		for {
			select {
			case <-l.sess.Done():
				return
			case wr, ok := <-wch:
				if !ok || wr.Err() != nil {
					break events
				}
				for _, ev := range wr.Events {
					if ev.Type == clientv3.EventTypeDelete || LeaseID(ev.Kv.Lease) != l.lease {
						return
					}
				}
			}
		}
		// The watch ended (compaction, a lost stream): read the record again.
		resp, err := l.r.cli.Get(ctx, l.mkey)
		switch {
		case err != nil:
			if pause.For(ctx, time.Second) != nil {
				return
			}
		case len(resp.Kvs) == 0 || LeaseID(resp.Kvs[0].Lease) != l.lease:
			return
		default:
			from = resp.Header.Revision + 1
		}
	}
}

// waitGone returns once key is deleted at or after revision from, or with
// ctx's error. A watch that ends early (compaction, a lost stream) is
// answered by returning so that the caller reads the key again.
func (r *Etcd) waitGone(ctx context.Context, key string, from int64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range r.cli.Watch(wctx, key, clientv3.WithRev(from)) {
		if wr.Err() != nil {
			break
		}
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypeDelete {
				return nil
			}
		}
	}
	return ctx.Err()
}

// Done closes when leadership is lost.
func (l *Leader) Done() <-chan struct{} { return l.done }

// Resign gives up leadership: it deletes the election key if it is still
// this leader's and revokes the election lease. Idempotent.
func (l *Leader) Resign(ctx context.Context) error {
	defer l.stop()
	// Revoking is best effort: the lease expires within its ttl anyway.
	defer func() { _ = l.sess.Close() }()
	_, err := l.r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.rev)).
		Then(clientv3.OpDelete(l.key)).
		Commit()
	if err != nil {
		return storeErr("resign engine leadership", err)
	}
	return nil
}

// ScheduleOp is the kind of one schedule write.
type ScheduleOp int

// Schedule write kinds.
const (
	OpPlace       ScheduleOp = iota + 1 // store Placement
	OpUnplace                           // delete Placement's key (Unit on Machine)
	OpSetReason                         // store Reason for Unit
	OpClearReason                       // delete the reason of Unit
)

// ScheduleChange is one write of the engine. Build it with Place, Unplace,
// SetReason or ClearReason.
type ScheduleChange struct {
	Op        ScheduleOp
	Placement unit.Placement // OpPlace, OpUnplace
	Unit      string         // OpSetReason, OpClearReason
	Reason    string         // OpSetReason
}

// Place stores p.
func Place(p unit.Placement) ScheduleChange { return ScheduleChange{Op: OpPlace, Placement: p} }

// Unplace deletes the placement of p.Unit on p.Machine.
func Unplace(p unit.Placement) ScheduleChange { return ScheduleChange{Op: OpUnplace, Placement: p} }

// SetReason records why name cannot be placed.
func SetReason(name, reason string) ScheduleChange {
	return ScheduleChange{Op: OpSetReason, Unit: name, Reason: reason}
}

// ClearReason removes name's reason.
func ClearReason(name string) ScheduleChange { return ScheduleChange{Op: OpClearReason, Unit: name} }

// applyConcurrency bounds the fenced transactions one Apply keeps in
// flight: etcd commits concurrent transactions together, so a large plan
// is written at the store's batched rate rather than one commit at a time.
const applyConcurrency = 8

// maxTxnBytes bounds the keys and values of one transaction, well under
// etcd's default request limit (1.5 MiB), so that batching never makes a
// request etcd refuses. A single placement larger than this is still sent,
// alone; unit.MaxContentBytes keeps placements below it.
const maxTxnBytes = 1 << 20

// Apply writes changes in transactions of at most maxTxnOps operations and
// maxTxnBytes bytes, each fenced by the election key, up to
// applyConcurrency at a time, and returns the highest revision written.
// Removals are written first, and placements only once every removal has
// committed: an agent never holds a unit beside the one it replaces or
// conflicts with, even while a plan spans several transactions. After
// ErrNotLeader no further transaction is started; after another error the
// other transactions still run and the first error is returned.
func (l *Leader) Apply(ctx context.Context, changes []ScheduleChange) (int64, error) {
	var removals, rest []clientv3.Op
	for _, c := range changes {
		op, err := l.op(c)
		if err != nil {
			return 0, err
		}
		if c.Op == OpUnplace {
			removals = append(removals, op)
		} else {
			rest = append(rest, op)
		}
	}
	rev1, err := l.commit(ctx, batchOps(removals))
	if err != nil {
		return rev1, err
	}
	rev2, err := l.commit(ctx, batchOps(rest))
	return max(rev1, rev2), err
}

// op is the etcd operation of one change.
func (l *Leader) op(c ScheduleChange) (clientv3.Op, error) {
	k := l.r.keys
	switch c.Op {
	case OpPlace:
		b, err := encodePlacement(c.Placement)
		if err != nil {
			return clientv3.Op{}, fmt.Errorf("encode placement: %w", err)
		}
		return clientv3.OpPut(k.placement(c.Placement.Machine, c.Placement.Unit), string(b)), nil
	case OpUnplace:
		return clientv3.OpDelete(k.placement(c.Placement.Machine, c.Placement.Unit)), nil
	case OpSetReason:
		return clientv3.OpPut(k.reason(c.Unit), c.Reason), nil
	case OpClearReason:
		return clientv3.OpDelete(k.reason(c.Unit)), nil
	}
	return clientv3.Op{}, fmt.Errorf("unknown schedule change kind %d", c.Op)
}

// batchOps cuts ops into transactions of at most maxTxnOps operations and
// maxTxnBytes bytes of keys and values (an operation larger than that
// travels alone).
func batchOps(ops []clientv3.Op) [][]clientv3.Op {
	var batches [][]clientv3.Op
	var cur []clientv3.Op
	size := 0
	for _, op := range ops {
		n := len(op.KeyBytes()) + len(op.ValueBytes())
		if len(cur) > 0 && (len(cur) == maxTxnOps || size+n > maxTxnBytes) {
			batches = append(batches, cur)
			cur, size = nil, 0
		}
		cur = append(cur, op)
		size += n
	}
	if len(cur) > 0 {
		batches = append(batches, cur)
	}
	return batches
}

// commit writes batches as fenced transactions, applyConcurrency at a time.
func (l *Leader) commit(ctx context.Context, batches [][]clientv3.Op) (int64, error) {
	fence := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.rev)}
	if l.mkey != "" {
		fence = append(fence, l.registered())
	}
	var (
		mu       sync.Mutex // guards rev, firstErr and deposed
		rev      int64
		firstErr error
		deposed  bool
		wg       sync.WaitGroup
	)
	slots := make(chan struct{}, applyConcurrency)
	for _, ops := range batches {
		slots <- struct{}{}
		mu.Lock()
		stop := deposed || ctx.Err() != nil
		mu.Unlock()
		if stop {
			<-slots
			break
		}
		wg.Go(func() {
			defer func() { <-slots }()
			resp, err := l.r.cli.Txn(ctx).If(fence...).Then(ops...).Commit()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				if firstErr == nil {
					firstErr = storeErr("write schedule", err)
				}
			case !resp.Succeeded:
				deposed = true
				firstErr = ErrNotLeader
			default:
				rev = max(rev, resp.Header.Revision)
			}
		})
	}
	wg.Wait()
	return rev, firstErr
}

// EngineLeader returns the machine ID of the current engine leader, or ""
// if there is none.
func (r *Etcd) EngineLeader(ctx context.Context) (string, error) {
	resp, err := r.cli.Get(ctx, r.keys.election()+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", storeErr("read engine leader", err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}
