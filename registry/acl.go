package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fleet-next/fleet/access"
)

// Grants and the audit trail live under acl/ and audit/, which sort before
// machines/: outside the range the engine follows (keys.go).

// grantKey is the key of a grant: a digest of its fields, so that granting
// twice stores one key.
func (k keys) grant(g access.Grant) string {
	sum := sha256.Sum256([]byte(string(g.Role) + "\x00" + g.Subject + "\x00" + g.Units))
	return k.acl() + hex.EncodeToString(sum[:16])
}

// Grants returns every grant, sorted by role, subject then units. It reads
// the store each time, so that a grant or revoke applies at once on every
// host.
func (r *Etcd) Grants(ctx context.Context) ([]access.Grant, error) {
	resp, err := r.cli.Get(ctx, r.keys.acl(), clientv3.WithPrefix())
	if err != nil {
		return nil, storeErr("read grants", err)
	}
	out := make([]access.Grant, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var g access.Grant
		if err := json.Unmarshal(kv.Value, &g); err != nil {
			r.log.Warn("ignoring an unreadable grant", "key", string(kv.Key), "err", err)
			continue
		}
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Role != b.Role {
			return a.Role < b.Role
		}
		if a.Subject != b.Subject {
			return a.Subject < b.Subject
		}
		return a.Units < b.Units
	})
	return out, nil
}

// AddGrant stores g; it reports whether g was new.
func (r *Etcd) AddGrant(ctx context.Context, g access.Grant) (bool, error) {
	b, err := json.Marshal(g)
	if err != nil {
		return false, fmt.Errorf("encode grant: %w", err)
	}
	key := r.keys.grant(g)
	resp, err := r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).
		Commit()
	if err != nil {
		return false, storeErr("store grant", err)
	}
	return resp.Succeeded, nil
}

// RemoveGrant deletes g; a grant that is not stored is a not-found error.
func (r *Etcd) RemoveGrant(ctx context.Context, g access.Grant) error {
	resp, err := r.cli.Delete(ctx, r.keys.grant(g))
	if err != nil {
		return storeErr("remove grant", err)
	}
	if resp.Deleted == 0 {
		return &notFoundError{what: "grant " + g.String()}
	}
	return nil
}

// AuditLimits bound the audit trail: entries older than Retention, and the
// oldest beyond MaxEntries, are dropped whenever an entry is added.
type AuditLimits struct {
	Retention  time.Duration
	MaxEntries int
}

// auditKey orders entries by time: audit/<unix nanoseconds, 20
// digits>-<random>, the random part keeping entries of the same
// nanosecond on two hosts apart.
func (k keys) auditKey(t time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s%020d-%s", k.audit(), t.UnixNano(), hex.EncodeToString(b[:]))
}

// auditFrom is the first key of entries at or after t.
func (k keys) auditFrom(t time.Time) string {
	if t.IsZero() || t.UnixNano() <= 0 {
		return k.audit()
	}
	return fmt.Sprintf("%s%020d", k.audit(), t.UnixNano())
}

// AppendAudit adds e to the audit trail, then drops what lim no longer
// keeps.
func (r *Etcd) AppendAudit(ctx context.Context, e access.Entry, lim AuditLimits) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode audit entry: %w", err)
	}
	if _, err := r.cli.Put(ctx, r.keys.auditKey(e.Time), string(b)); err != nil {
		return storeErr("store audit entry", err)
	}
	return r.trimAudit(ctx, e.Time, lim)
}

// trimAudit drops entries older than now-Retention and the oldest beyond
// MaxEntries.
func (r *Etcd) trimAudit(ctx context.Context, now time.Time, lim AuditLimits) error {
	start := r.keys.audit()
	if lim.Retention > 0 {
		if _, err := r.cli.Delete(ctx, start, clientv3.WithRange(r.keys.auditFrom(now.Add(-lim.Retention)))); err != nil {
			return storeErr("drop expired audit entries", err)
		}
	}
	if lim.MaxEntries <= 0 {
		return nil
	}
	resp, err := r.cli.Get(ctx, start, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return storeErr("count audit entries", err)
	}
	excess := resp.Count - int64(lim.MaxEntries)
	if excess <= 0 {
		return nil
	}
	old, err := r.cli.Get(ctx, start, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(excess))
	if err != nil {
		return storeErr("find the oldest audit entries", err)
	}
	if len(old.Kvs) == 0 {
		return nil
	}
	last := string(old.Kvs[len(old.Kvs)-1].Key)
	if _, err := r.cli.Delete(ctx, start, clientv3.WithRange(last+"\x00")); err != nil {
		return storeErr("drop the oldest audit entries", err)
	}
	return nil
}

// AuditPage returns at most limit entries passing f, oldest first, that
// come after the entry whose cursor is after ("" = from the first), and
// the cursor of the last one returned when more may follow ("" = none).
func (r *Etcd) AuditPage(ctx context.Context, f access.AuditFilter, after string, limit int) ([]access.Entry, string, error) {
	from := r.keys.auditFrom(f.Since)
	if after != "" {
		if strings.ContainsRune(after, '/') {
			return nil, "", fmt.Errorf("invalid audit cursor %q", after)
		}
		if k := r.keys.audit() + after + "\x00"; k > from {
			from = k
		}
	}
	end := prefixEnd(r.keys.audit())
	var out []access.Entry
	const batch = 500
	for {
		resp, err := r.cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(batch))
		if err != nil {
			return nil, "", storeErr("read audit entries", err)
		}
		for _, kv := range resp.Kvs {
			var e access.Entry
			if err := json.Unmarshal(kv.Value, &e); err != nil {
				r.log.Warn("ignoring an unreadable audit entry", "key", string(kv.Key), "err", err)
				continue
			}
			if !f.Match(e) {
				continue
			}
			out = append(out, e)
			if len(out) == limit {
				return out, strings.TrimPrefix(string(kv.Key), r.keys.audit()), nil
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, "", nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
