package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fleet-next/fleet/unit"
)

// Units returns every unit sorted by name with its placement and current
// state (see UnitsPage).
func (r *Etcd) Units(ctx context.Context) ([]unit.UnitStatus, error) {
	return r.unitStatuses(ctx, r.keys.units(), prefixEnd(r.keys.units()), 0)
}

// Unit returns one unit with its placement and current state.
func (r *Etcd) Unit(ctx context.Context, name string) (unit.UnitStatus, error) {
	key := r.keys.unit(name)
	us, err := r.unitStatuses(ctx, key, key+"\x00", 1)
	if err != nil {
		return unit.UnitStatus{}, err
	}
	if len(us) == 0 {
		return unit.UnitStatus{}, &notFoundError{what: fmt.Sprintf("unit %q", name)}
	}
	st := us[0]
	if st.Global {
		return st, nil
	}
	// For one unit, name the engine's placement even before its machine
	// reports the unit: status and journal requests go there.
	target, err := r.placementOf(ctx, name)
	if err != nil {
		return unit.UnitStatus{}, err
	}
	if target != st.Target {
		st.Target, st.Current = target, unit.StateInactive
		if target != "" {
			if s, err := r.States(ctx, name, target); err == nil && len(s) == 1 && s[0].Current != "" {
				st.Current = s[0].Current
			}
		}
	}
	return st, nil
}

// placementOf returns the machine the engine placed a non-global unit on,
// or "". It reads the schedule's keys only.
func (r *Etcd) placementOf(ctx context.Context, name string) (string, error) {
	resp, err := r.cli.Get(ctx, r.keys.schedules(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return "", storeErr("read schedule", err)
	}
	for _, kv := range resp.Kvs {
		if m, u, ok := split2(strings.TrimPrefix(string(kv.Key), r.keys.schedules())); ok && u == name {
			return m, nil
		}
	}
	return "", nil
}

// UnitsPage returns at most limit units sorted by name, starting after the
// unit named after ("" = from the first), reading only that span.
func (r *Etcd) UnitsPage(ctx context.Context, after string, limit int) ([]unit.UnitStatus, error) {
	from := r.keys.units()
	if after != "" {
		from = r.keys.unit(after) + "\x00"
	}
	return r.unitStatuses(ctx, from, prefixEnd(r.keys.units()), limit)
}

// UnitNameAt returns the name of the unit at 0-based position i in name
// order, or "" if there are fewer units. It reads keys only.
func (r *Etcd) UnitNameAt(ctx context.Context, i int) (string, error) {
	resp, err := r.cli.Get(ctx, r.keys.units(), clientv3.WithRange(prefixEnd(r.keys.units())),
		clientv3.WithKeysOnly(), clientv3.WithLimit(int64(i+1)))
	if err != nil {
		return "", storeErr("read unit names", err)
	}
	if len(resp.Kvs) <= i {
		return "", nil
	}
	return strings.TrimPrefix(string(resp.Kvs[i].Key), r.keys.units()), nil
}

// unitStatuses reads the units in [from, end) (at most limit; 0 = all) and
// then, at the same revision, the agent states and reasons of just that
// span of names. A non-global unit's target and current state come from
// the state its machine publishes: the machine running it reports it as
// loaded or launched; with no report the unit is inactive.
func (r *Etcd) unitStatuses(ctx context.Context, from, end string, limit int) ([]unit.UnitStatus, error) {
	opts := []clientv3.OpOption{clientv3.WithRange(end)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(int64(limit)))
	}
	resp, err := r.cli.Get(ctx, from, opts...)
	if err != nil {
		return nil, storeErr("read units", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	rev := resp.Header.Revision
	first := strings.TrimPrefix(string(resp.Kvs[0].Key), r.keys.units())
	last := strings.TrimPrefix(string(resp.Kvs[len(resp.Kvs)-1].Key), r.keys.units())
	side, err := r.cli.Txn(ctx).Then(
		clientv3.OpGet(r.keys.unitStates(first), clientv3.WithRange(prefixEnd(r.keys.unitStates(last))), clientv3.WithRev(rev)),
		clientv3.OpGet(r.keys.reason(first), clientv3.WithRange(r.keys.reason(last)+"\x00"), clientv3.WithRev(rev)),
	).Commit()
	if err != nil {
		return nil, storeErr("read unit states", err)
	}
	type report struct {
		machine string
		current unit.FleetState
	}
	reports := make(map[string][]report)
	for _, kv := range side.Responses[0].GetResponseRange().Kvs {
		u, m, ok := split2(strings.TrimPrefix(string(kv.Key), r.keys.states()))
		if !ok {
			continue
		}
		s, err := decodeState(u, m, kv.Value)
		if err != nil {
			r.log.Warn("skipping undecodable unit state", "key", string(kv.Key), "err", err)
			continue
		}
		reports[u] = append(reports[u], report{machine: m, current: s.Current})
	}
	reasons := make(map[string]string)
	for _, kv := range side.Responses[1].GetResponseRange().Kvs {
		reasons[strings.TrimPrefix(string(kv.Key), r.keys.reasons())] = string(kv.Value)
	}
	out := make([]unit.UnitStatus, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		u, err := decodeUnit(kv.Value, kv.CreateRevision)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", kv.Key, err)
		}
		st := unit.UnitStatus{Unit: u, Reason: reasons[u.Name]}
		if !u.Global {
			st.Current = unit.StateInactive
			// Normally one machine reports a non-global unit; while it moves,
			// the old machine may still report it: prefer the higher state,
			// then the lower machine ID (reports are in machine order).
			for _, rep := range reports[u.Name] {
				if rep.current != "" && (st.Target == "" || rep.current.Rank() > st.Current.Rank()) {
					st.Target, st.Current = rep.machine, rep.current
				}
			}
		}
		out = append(out, st)
	}
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
func (r *Etcd) SetDesiredState(ctx context.Context, name string, s unit.FleetState) error {
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

// CreateUnitIf stores u, replacing any unit of the same name, if check
// accepts the units stored now (all of them, the one named u.Name
// included). The check and the write are one transaction: the write
// happens only if no unit was stored or replaced since the read the check
// saw, and otherwise the units are read and checked again. So two writers
// can never both pass a check that the other's write would have failed
// (two units replacing each other, stored at once). check must not block;
// its error is returned as it is.
func (r *Etcd) CreateUnitIf(ctx context.Context, u unit.Unit, check func(stored []unit.Unit) error) error {
	if u.Desired == "" {
		u.Desired = unit.StateInactive
	}
	b, err := encodeUnit(u)
	if err != nil {
		return fmt.Errorf("encode unit %s: %w", u.Name, err)
	}
	for {
		resp, err := r.cli.Get(ctx, r.keys.units(), clientv3.WithPrefix())
		if err != nil {
			return storeErr("read units", err)
		}
		stored := make([]unit.Unit, 0, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			su, err := decodeUnit(kv.Value, kv.CreateRevision)
			if err != nil {
				return fmt.Errorf("key %s: %w", kv.Key, err)
			}
			stored = append(stored, su)
		}
		if err := check(stored); err != nil {
			return err
		}
		unchanged := clientv3.Compare(clientv3.ModRevision(r.keys.units()), "<", resp.Header.Revision+1).
			WithPrefix()
		tr, err := r.cli.Txn(ctx).If(unchanged).Then(clientv3.OpPut(r.keys.unit(u.Name), string(b))).Commit()
		if err != nil {
			return storeErr("store unit "+u.Name, err)
		}
		if tr.Succeeded {
			return nil
		}
	}
}

// setMachineMetadata writes ops in one transaction that also requires
// every machine they name to be registered. A key changed twice takes the
// last change.
func (r *Etcd) setMachineMetadata(ctx context.Context, ops []unit.MetadataChange) error {
	var machines []string
	for _, op := range ops {
		if !slices.Contains(machines, op.MachineID) {
			machines = append(machines, op.MachineID)
		}
	}
	conds := make([]clientv3.Cmp, 0, len(machines))
	reads := make([]clientv3.Op, 0, len(machines))
	for _, id := range machines {
		conds = append(conds, clientv3.Compare(clientv3.CreateRevision(r.keys.machine(id)), ">", 0))
		reads = append(reads, clientv3.OpGet(r.keys.machine(id), clientv3.WithKeysOnly()))
	}
	// A key changed twice takes the last change, as if the changes were
	// applied in order (etcd refuses a transaction writing a key twice).
	puts := make([]clientv3.Op, 0, len(ops))
	at := make(map[string]int, len(ops))
	for _, op := range ops {
		key := r.keys.metadataKey(op.MachineID, op.Key)
		put := clientv3.OpPut(key, op.Value)
		if i, seen := at[key]; seen {
			puts[i] = put
			continue
		}
		at[key] = len(puts)
		puts = append(puts, put)
	}
	tr, err := r.cli.Txn(ctx).If(conds...).Then(puts...).Else(reads...).Commit()
	if err != nil {
		return storeErr("store machine metadata", err)
	}
	if tr.Succeeded {
		return nil
	}
	for i, id := range machines {
		if len(tr.Responses[i].GetResponseRange().Kvs) == 0 {
			return &notFoundError{what: fmt.Sprintf("machine %s", id)}
		}
	}
	// The comparisons and the reads see one revision.
	return errors.New("store machine metadata: a machine was missing, yet every machine was read")
}
