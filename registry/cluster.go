package registry

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

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
		c.Machines[id] = machineFromRecord(rec, v.meta[id])
	}
	for u, pm := range v.places {
		c.Placements[u] = maps.Clone(pm)
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
	for ctx.Err() == nil {
		resp, err := v.r.cli.Get(ctx, from, clientv3.WithRange(end))
		if err != nil {
			v.r.log.Warn("reading cluster failed; retrying", "err", err)
			sleepCtx(ctx, time.Second)
			continue
		}
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
	}
}

// Leader is a won engine election. Its Done channel closes when leadership
// is lost; every write it makes is fenced by its election key.
type Leader struct {
	r     *Etcd
	sess  *concurrency.Session
	elect *concurrency.Election
	key   string // election key, fixed at the win
	rev   int64  // its create revision: the fencing token
}

// Campaign blocks until this engine leads or ctx ends. The election key
// lives on the machine's own lease, so a machine's presence and its
// leadership expire together and leading costs no extra keep-alives.
func (r *Etcd) Campaign(ctx context.Context, id string, lease LeaseID) (*Leader, error) {
	sess, err := concurrency.NewSession(r.cli, concurrency.WithLease(lease), concurrency.WithContext(ctx))
	if err != nil {
		return nil, storeErr("open election session", err)
	}
	e := concurrency.NewElection(sess, r.keys.election())
	if err := e.Campaign(ctx, id); err != nil {
		sess.Orphan() // stop our keep-alive of the machine lease; never revoke it
		return nil, storeErr("campaign for engine leadership", err)
	}
	return &Leader{r: r, sess: sess, elect: e, key: e.Key(), rev: e.Rev()}, nil
}

// Done closes when the leadership session ends.
func (l *Leader) Done() <-chan struct{} { return l.sess.Done() }

// Resign gives up leadership. The machine lease stays. Idempotent.
func (l *Leader) Resign(ctx context.Context) error {
	defer l.sess.Orphan()
	if err := l.elect.Resign(ctx); err != nil {
		return storeErr("resign engine leadership", err)
	}
	return nil
}

// ScheduleChange is one write of the engine: a placement to store or
// delete, or a reason to set or clear.
type ScheduleChange struct {
	Put       *unit.Placement // store this placement
	Delete    *unit.Placement // delete the placement of Delete.Unit on Delete.Machine
	ReasonFor string          // unit whose reason changes
	Reason    string          // new reason; "" clears it
}

// applyConcurrency bounds the fenced transactions one Apply keeps in
// flight: etcd commits concurrent transactions together, so a large plan
// is written at the store's batched rate rather than one commit at a time.
const applyConcurrency = 8

// Apply writes changes in transactions of at most maxTxnOps operations,
// each fenced by the election key, up to applyConcurrency at a time, and
// returns the highest revision written. The changes of one plan touch
// distinct keys, so the order of the transactions does not matter.
// ErrNotLeader if leadership was lost; after any error no further
// transaction is started.
func (l *Leader) Apply(ctx context.Context, changes []ScheduleChange) (int64, error) {
	k := l.r.keys
	var batches [][]clientv3.Op
	for start := 0; start < len(changes); start += maxTxnOps {
		end := min(start+maxTxnOps, len(changes))
		ops := make([]clientv3.Op, 0, end-start)
		for _, c := range changes[start:end] {
			switch {
			case c.Put != nil:
				b, err := encodePlacement(*c.Put)
				if err != nil {
					return 0, fmt.Errorf("encode placement: %w", err)
				}
				ops = append(ops, clientv3.OpPut(k.placement(c.Put.Machine, c.Put.Unit), string(b)))
			case c.Delete != nil:
				ops = append(ops, clientv3.OpDelete(k.placement(c.Delete.Machine, c.Delete.Unit)))
			case c.ReasonFor != "" && c.Reason != "":
				ops = append(ops, clientv3.OpPut(k.reason(c.ReasonFor), c.Reason))
			case c.ReasonFor != "":
				ops = append(ops, clientv3.OpDelete(k.reason(c.ReasonFor)))
			}
		}
		batches = append(batches, ops)
	}
	fence := clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.rev)
	var (
		mu       sync.Mutex // guards rev and firstErr
		rev      int64
		firstErr error
		wg       sync.WaitGroup
	)
	slots := make(chan struct{}, applyConcurrency)
	for _, ops := range batches {
		slots <- struct{}{}
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			<-slots
			break
		}
		wg.Go(func() {
			defer func() { <-slots }()
			resp, err := l.r.cli.Txn(ctx).If(fence).Then(ops...).Commit()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				firstErr = cmpFirst(firstErr, storeErr("write schedule", err))
			case !resp.Succeeded:
				firstErr = cmpFirst(firstErr, ErrNotLeader)
			default:
				rev = max(rev, resp.Header.Revision)
			}
		})
	}
	wg.Wait()
	return rev, firstErr
}

func cmpFirst(first, err error) error {
	if first != nil {
		return first
	}
	return err
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
