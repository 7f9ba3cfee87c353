package registry

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fleet-next/fleet/unit"
)

// Units returns every unit sorted by name with its placement and current
// state, read in one transaction so the view is consistent.
func (r *Etcd) Units(ctx context.Context) ([]unit.UnitStatus, error) {
	return r.unitStatuses(ctx, "")
}

// Unit returns one unit with its placement and current state.
func (r *Etcd) Unit(ctx context.Context, name string) (unit.UnitStatus, error) {
	us, err := r.unitStatuses(ctx, name)
	if err != nil {
		return unit.UnitStatus{}, err
	}
	if len(us) == 0 {
		return unit.UnitStatus{}, &notFoundError{what: fmt.Sprintf("unit %q", name)}
	}
	return us[0], nil
}

// unitStatuses reads units (all, or the one named) with the schedule keys,
// states and reasons they need.
func (r *Etcd) unitStatuses(ctx context.Context, only string) ([]unit.UnitStatus, error) {
	var ops []clientv3.Op
	if only == "" {
		ops = []clientv3.Op{
			clientv3.OpGet(r.keys.units(), clientv3.WithPrefix()),
			clientv3.OpGet(r.keys.schedules(), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
			clientv3.OpGet(r.keys.states(), clientv3.WithPrefix()),
			clientv3.OpGet(r.keys.reasons(), clientv3.WithPrefix()),
		}
	} else {
		ops = []clientv3.Op{
			clientv3.OpGet(r.keys.unit(only)),
			clientv3.OpGet(r.keys.schedules(), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
			clientv3.OpGet(r.keys.unitStates(only), clientv3.WithPrefix()),
			clientv3.OpGet(r.keys.reason(only)),
		}
	}
	resp, err := r.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, storeErr("read units", err)
	}
	unitKVs := resp.Responses[0].GetResponseRange().Kvs
	schedKVs := resp.Responses[1].GetResponseRange().Kvs
	stateKVs := resp.Responses[2].GetResponseRange().Kvs
	reasonKVs := resp.Responses[3].GetResponseRange().Kvs

	targets := make(map[string]string) // unit -> first machine it is scheduled on
	for _, kv := range schedKVs {
		m, u, ok := split2(strings.TrimPrefix(string(kv.Key), r.keys.schedules()))
		if !ok || (only != "" && u != only) {
			continue
		}
		if _, seen := targets[u]; !seen {
			targets[u] = m
		}
	}
	states := make(map[string]unit.DesiredState) // "unit/machine" -> current
	for _, kv := range stateKVs {
		rest := strings.TrimPrefix(string(kv.Key), r.keys.states())
		u, m, ok := split2(rest)
		if !ok {
			continue
		}
		s, err := decodeState(u, m, kv.Value)
		if err != nil {
			r.log.Warn("skipping undecodable unit state", "key", string(kv.Key), "err", err)
			continue
		}
		states[rest] = s.Current
	}
	reasons := make(map[string]string, len(reasonKVs))
	for _, kv := range reasonKVs {
		reasons[strings.TrimPrefix(string(kv.Key), r.keys.reasons())] = string(kv.Value)
	}

	out := make([]unit.UnitStatus, 0, len(unitKVs))
	for _, kv := range unitKVs {
		u, err := decodeUnit(kv.Value, kv.CreateRevision)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", kv.Key, err)
		}
		st := unit.UnitStatus{Unit: u, Reason: reasons[u.Name]}
		if !u.Global {
			st.Target = targets[u.Name]
			st.Current = unit.StateInactive
			if st.Target != "" {
				if c, ok := states[u.Name+"/"+st.Target]; ok && c != "" {
					st.Current = c
				}
			}
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// CreateUnit stores u, replacing any unit of the same name.
func (r *Etcd) CreateUnit(ctx context.Context, u unit.Unit) error {
	if u.Desired == "" {
		u.Desired = unit.StateInactive
	}
	b, err := encodeUnit(u)
	if err != nil {
		return fmt.Errorf("encode unit %s: %w", u.Name, err)
	}
	if _, err := r.cli.Put(ctx, r.keys.unit(u.Name), string(b)); err != nil {
		return storeErr("store unit "+u.Name, err)
	}
	return nil
}

// SetDesiredState changes the desired state of an existing unit. It retries
// on concurrent modification, so it never overwrites newer contents.
func (r *Etcd) SetDesiredState(ctx context.Context, name string, s unit.DesiredState) error {
	key := r.keys.unit(name)
	for {
		resp, err := r.cli.Get(ctx, key)
		if err != nil {
			return storeErr("read unit "+name, err)
		}
		if len(resp.Kvs) == 0 {
			return &notFoundError{what: fmt.Sprintf("unit %q", name)}
		}
		kv := resp.Kvs[0]
		u, err := decodeUnit(kv.Value, kv.CreateRevision)
		if err != nil {
			return err
		}
		if u.Desired == s {
			return nil
		}
		u.Desired = s
		b, err := encodeUnit(u)
		if err != nil {
			return fmt.Errorf("encode unit %s: %w", name, err)
		}
		tr, err := r.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(clientv3.OpPut(key, string(b))).Commit()
		if err != nil {
			return storeErr("store desired state of "+name, err)
		}
		if tr.Succeeded {
			return nil
		}
	}
}

// DestroyUnit deletes a unit. The engine then removes its placements, and
// its contents go with them: nothing refers to them any more.
func (r *Etcd) DestroyUnit(ctx context.Context, name string) error {
	resp, err := r.cli.Delete(ctx, r.keys.unit(name))
	if err != nil {
		return storeErr("delete unit "+name, err)
	}
	if resp.Deleted == 0 {
		return &notFoundError{what: fmt.Sprintf("unit %q", name)}
	}
	return nil
}

// States returns machine reports sorted by unit then machine. Empty filters
// match everything.
func (r *Etcd) States(ctx context.Context, unitName, machineID string) ([]unit.State, error) {
	key, opts := r.keys.states(), []clientv3.OpOption{clientv3.WithPrefix()}
	if unitName != "" {
		key = r.keys.unitStates(unitName)
	}
	resp, err := r.cli.Get(ctx, key, opts...)
	if err != nil {
		return nil, storeErr("read unit states", err)
	}
	out := make([]unit.State, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		u, m, ok := split2(strings.TrimPrefix(string(kv.Key), r.keys.states()))
		if !ok || (machineID != "" && m != machineID) {
			continue
		}
		s, err := decodeState(u, m, kv.Value)
		if err != nil {
			r.log.Warn("skipping undecodable unit state", "key", string(kv.Key), "err", err)
			continue
		}
		out = append(out, s)
	}
	// Keys sort by "unit/machine"; '/' sorts before name characters, so the
	// etcd order is already unit then machine, but be explicit.
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].MachineID < out[j].MachineID
	})
	return out, nil
}

// StatesPage returns at most limit states, sorted by unit then machine,
// that sort after the state key after ("unit/machine"; "" = from the
// first), filtered like States. It reads only as far as it needs.
func (r *Etcd) StatesPage(ctx context.Context, unitName, machineID, after string, limit int) ([]unit.State, error) {
	var out []unit.State
	err := r.scanStates(ctx, unitName, machineID, after, limit, false, func(kv *mvccpb.KeyValue, u, m string) bool {
		s, err := decodeState(u, m, kv.Value)
		if err != nil {
			r.log.Warn("skipping undecodable unit state", "key", string(kv.Key), "err", err)
			return true
		}
		out = append(out, s)
		return len(out) < limit
	})
	return out, err
}

// StateKeyAt returns the key ("unit/machine") of the state at position i
// (0-based) in the order and filter of StatesPage, or "" if there are not
// that many. It reads keys only.
func (r *Etcd) StateKeyAt(ctx context.Context, unitName, machineID string, i int) (string, error) {
	n, key := 0, ""
	err := r.scanStates(ctx, unitName, machineID, "", i+1, true, func(kv *mvccpb.KeyValue, u, m string) bool {
		if n == i {
			key = u + "/" + m
			return false
		}
		n++
		return true
	})
	return key, err
}

// scanStates walks state keys after `after` in order, at one revision, in
// batches, calling fn for each that passes the filters until fn returns
// false or the range ends.
func (r *Etcd) scanStates(ctx context.Context, unitName, machineID, after string, want int, keysOnly bool,
	fn func(kv *mvccpb.KeyValue, u, m string) bool) error {
	base := r.keys.states()
	if unitName != "" {
		base = r.keys.unitStates(unitName)
	}
	from, end := base, prefixEnd(base)
	if after != "" {
		from = r.keys.states() + after + "\x00"
		if from < base {
			from = base
		}
	}
	batch := int64(max(want, 64))
	if machineID != "" {
		batch = max(batch, 1024) // most keys will not match
	}
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(batch)}
		if keysOnly {
			opts = append(opts, clientv3.WithKeysOnly())
		}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := r.cli.Get(ctx, from, opts...)
		if err != nil {
			return storeErr("read unit states", err)
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			u, m, ok := split2(strings.TrimPrefix(string(kv.Key), r.keys.states()))
			if !ok || (machineID != "" && m != machineID) {
				continue
			}
			if !fn(kv, u, m) {
				return nil
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
