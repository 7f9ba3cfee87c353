package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fleet-next/fleet/internal/pause"
	"github.com/fleet-next/fleet/internal/retry"
	"github.com/fleet-next/fleet/unit"
)

// WatchSchedule follows one machine's schedule: it reads it once, then
// applies watch events from the next revision on (the client resumes the
// watch at the last seen revision after a reconnect; only a compaction
// forces a re-read). Each value sent is the complete schedule; a slow
// reader gets the latest one, never a backlog. The channel closes when ctx
// ends.
func (r *Etcd) WatchSchedule(ctx context.Context, machineID string) <-chan map[string]unit.Placement {
	out := make(chan map[string]unit.Placement, 1)
	go func() {
		defer close(out)
		prefix := r.keys.schedule(machineID)
		backoff := retry.Backoff(250*time.Millisecond, 10*time.Second)
		for ctx.Err() == nil {
			cur, rev, err := r.readSchedule(ctx, prefix, machineID)
			if err != nil {
				d := backoff.NextBackOff()
				r.log.Warn("reading machine schedule failed; retrying", "err", err, "in", d)
				_ = pause.For(ctx, d)
				continue
			}
			backoff.Reset()
			sendLatest(out, maps.Clone(cur))
			err = r.watchPrefix(ctx, prefix, rev+1, func(evs []*clientv3.Event) {
				for _, ev := range evs {
					name := strings.TrimPrefix(string(ev.Kv.Key), prefix)
					if ev.Type == mvccpb.DELETE {
						delete(cur, name)
						continue
					}
					p, err := decodePlacement(machineID, name, ev.Kv.Value)
					if err != nil {
						r.log.Warn("skipping undecodable placement", "key", string(ev.Kv.Key), "err", err)
						continue
					}
					cur[name] = p
				}
				sendLatest(out, maps.Clone(cur))
			})
			if err != nil && ctx.Err() == nil {
				r.log.Warn("schedule watch ended; re-reading", "err", err)
			}
		}
	}()
	return out
}

func (r *Etcd) readSchedule(ctx context.Context, prefix, machineID string) (map[string]unit.Placement, int64, error) {
	resp, err := r.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, storeErr("read schedule", err)
	}
	cur := make(map[string]unit.Placement, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		name := strings.TrimPrefix(string(kv.Key), prefix)
		p, err := decodePlacement(machineID, name, kv.Value)
		if err != nil {
			r.log.Warn("skipping undecodable placement", "key", string(kv.Key), "err", err)
			continue
		}
		cur[name] = p
	}
	return cur, resp.Header.Revision, nil
}

// watchPrefix calls fn with the events of each watch response until ctx
// ends (nil) or the watch fails (compaction, cancellation: an error).
func (r *Etcd) watchPrefix(ctx context.Context, prefix string, rev int64, fn func([]*clientv3.Event)) error {
	return r.watchRange(ctx, prefix, prefixEnd(prefix), rev, func(resp clientv3.WatchResponse) { fn(resp.Events) })
}

func (r *Etcd) watchRange(ctx context.Context, from, end string, rev int64, fn func(clientv3.WatchResponse)) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := r.cli.Watch(wctx, from, clientv3.WithRange(end), clientv3.WithRev(rev), clientv3.WithProgressNotify())
	for resp := range wch {
		if err := resp.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				return fmt.Errorf("watch from revision %d: %w", rev, err)
			}
			return fmt.Errorf("watch: %w", err)
		}
		if len(resp.Events) > 0 || resp.IsProgressNotify() {
			fn(resp)
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("watch channel closed")
}

// sendLatest replaces any unread value in a 1-buffered channel with v.
func sendLatest[T any](ch chan T, v T) {
	for {
		select {
		case ch <- v:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}
