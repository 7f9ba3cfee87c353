package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleet-next/fleet/internal/pause"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The bridge: one fleetd asks another for an answer through the store, so
// that no fleetd needs a port of its own for it (see docs/architecture.md).
//
//	P bridge/<target>/ask/<id>             the request (RelayRequest JSON)
//	P bridge/<requester>/ans/<id>/<seq>    the answer, chunk by chunk
//
// Every key of one exchange is on a lease the requester grants for it and
// keeps alive while it reads: when the requester ends (or dies), the lease
// goes and takes the request and whatever answer is left with it, and the
// target, which follows its request key, stops answering.
//
// Chunks are numbered from 0; the first byte says what a chunk is:
// 'a' the target took the request, 'h' the status and content type (JSON
// relayHeader), 'd' body bytes, 'e' the end (the rest is an error text, ""
// when the answer is whole).

// Relay limits.
const (
	// RelayChunkBytes is the most body bytes one answer chunk holds.
	RelayChunkBytes = 64 << 10
	// RelayMaxAnswerBytes is the most body bytes an answer that is not a
	// stream may hold; a longer one is cut there and ends with an error.
	RelayMaxAnswerBytes = 1 << 20
	// RelayAckTimeout is how long a requester waits for the target to take
	// its request before giving up with ErrRelayNoAnswer.
	RelayAckTimeout = 5 * time.Second
	// RelayMaxStream is the longest a streamed answer (a followed journal)
	// lasts; the target ends it then.
	RelayMaxStream = time.Hour
	// relayAnswerLife is how long a target may take over an answer that is
	// not a stream.
	relayAnswerLife = time.Minute
	// relayLeaseTTL is the TTL of an exchange's lease, kept alive by the
	// requester.
	relayLeaseTTL = 10
	// relayMaxRequestBytes bounds a request record.
	relayMaxRequestBytes = 8 << 10
	// relayWindow is how many chunks a stream's target may write ahead of
	// its reader: it waits for chunk n-relayWindow to be read (deleted)
	// before writing chunk n, checking every relayWindow/2 chunks, so at
	// most 1.5 × relayWindow chunks (1.5 MiB) wait in the store.
	relayWindow = 16
	// relayMaxActive is how many requests a target serves at once; more
	// are answered 503.
	relayMaxActive = 32
)

// ErrRelayNoAnswer says the target machine did not take a relayed request
// within RelayAckTimeout (its fleetd is down or cut off from the store).
var ErrRelayNoAnswer = errors.New("no answer through the store")

// RelayRequest is a request relayed to another machine's fleetd.
type RelayRequest struct {
	// ID names the exchange; set by Relay.
	ID string `json:"id"`
	// From is the requesting machine; set by Relay.
	From string `json:"from"`
	// Path is the API path with its query that the target serves.
	Path string `json:"path"`
	// Subject is the original caller's identity, opaque here; the target
	// serves the request as that subject.
	Subject string `json:"subject,omitempty"`
	// Stream asks for a stream (no size bound, RelayMaxStream long).
	Stream bool `json:"stream,omitempty"`
}

// RelayAnswer is the start of a relayed answer; Body streams the rest and
// must be closed.
type RelayAnswer struct {
	Code        int
	ContentType string
	Body        io.ReadCloser
}

type relayHeader struct {
	Code        int    `json:"code"`
	ContentType string `json:"contentType,omitempty"`
}

func (k keys) bridge() string                     { return k.prefix + "bridge/" }
func (k keys) relayAsks(machine string) string    { return k.bridge() + machine + "/ask/" }
func (k keys) relayAsk(machine, id string) string { return k.relayAsks(machine) + id }
func (k keys) relayAnswer(machine, id string) string {
	return k.bridge() + machine + "/ans/" + id + "/"
}
func (k keys) relayChunk(machine, id string, seq int) string {
	return k.relayAnswer(machine, id) + fmt.Sprintf("%08d", seq)
}

// Relay sends req from machine from to machine target and returns the
// answer once its status is known. ErrRelayNoAnswer: the target did not
// take the request in time. Ending ctx, or closing the body, ends the
// exchange and removes its keys.
func (r *Etcd) Relay(ctx context.Context, from, target string, req RelayRequest) (*RelayAnswer, error) {
	var idb [12]byte
	_, _ = rand.Read(idb[:])
	req.ID, req.From = hex.EncodeToString(idb[:]), from
	val, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode relay request: %w", err)
	}
	if len(val) > relayMaxRequestBytes {
		return nil, fmt.Errorf("relay request of %d bytes exceeds %d", len(val), relayMaxRequestBytes)
	}
	grant, err := r.cli.Grant(ctx, relayLeaseTTL)
	if err != nil {
		return nil, storeErr("grant relay lease", err)
	}
	// A whole answer is due within the time the target gives it; a stream
	// lasts as long as ctx.
	var cancel context.CancelFunc
	if req.Stream {
		ctx, cancel = context.WithCancel(ctx)
	} else {
		ctx, cancel = context.WithTimeout(ctx, relayAnswerLife+RelayAckTimeout)
	}
	ex := &exchange{r: r, ctx: ctx, cancel: cancel, lease: grant.ID, prefix: r.keys.relayAnswer(from, req.ID)}
	ok := false
	defer func() {
		if !ok {
			ex.Close()
		}
	}()
	if _, err := r.cli.KeepAlive(ctx, grant.ID); err != nil {
		return nil, storeErr("keep relay lease alive", err)
	}
	put, err := r.cli.Put(ctx, r.keys.relayAsk(target, req.ID), string(val), clientv3.WithLease(grant.ID))
	if err != nil {
		return nil, storeErr("put relay request", err)
	}
	ex.events = r.cli.Watch(clientv3.WithRequireLeader(ctx), ex.prefix, clientv3.WithPrefix(),
		clientv3.WithRev(put.Header.Revision+1))
	if req.Stream {
		// A stream has no end of its own: it ends when the target's
		// machine record goes (its fleetd died and its lease expired).
		gone := r.cli.Watch(ctx, r.keys.machine(target), clientv3.WithRev(put.Header.Revision+1),
			clientv3.WithFilterPut())
		go func() {
			for wr := range gone {
				if len(wr.Events) > 0 {
					ex.targetGone.Store(true)
					cancel()
					return
				}
			}
		}()
	}

	ackCtx, ackCancel := context.WithTimeout(ctx, RelayAckTimeout)
	kind, _, err := ex.next(ackCtx)
	ackCancel()
	switch {
	case err != nil && ctx.Err() == nil && ackCtx.Err() != nil:
		return nil, ErrRelayNoAnswer
	case err != nil:
		return nil, err
	case kind != 'a':
		return nil, fmt.Errorf("relay answer starts with chunk %q, want the acknowledgement", kind)
	}
	kind, data, err := ex.next(ctx)
	switch {
	case err != nil:
		return nil, err
	case kind == 'e':
		return nil, fmt.Errorf("machine %s failed to answer: %s", target, data)
	case kind != 'h':
		return nil, fmt.Errorf("relay answer holds chunk %q before its header", kind)
	}
	var h relayHeader
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, fmt.Errorf("decode relay answer header: %w", err)
	}
	ok = true
	return &RelayAnswer{Code: h.Code, ContentType: h.ContentType, Body: ex}, nil
}

// exchange is the requester's side of one relayed request; as the answer's
// body it reads the data chunks in order.
type exchange struct {
	r      *Etcd
	ctx    context.Context
	cancel context.CancelFunc
	lease  clientv3.LeaseID
	prefix string
	events clientv3.WatchChan

	pending []*mvccpb.KeyValue // chunks received, not yet read
	seq     int                // the chunk expected next
	rest    []byte             // unread bytes of the current data chunk
	err     error              // the end, once reached (io.EOF when whole)
	once    sync.Once

	targetGone atomic.Bool // the target left the cluster while streaming
}

// next returns the next chunk in order, deleting it from the store.
func (ex *exchange) next(ctx context.Context) (byte, []byte, error) {
	for {
		for i, kv := range ex.pending {
			seq, err := strconv.Atoi(strings.TrimPrefix(string(kv.Key), ex.prefix))
			if err != nil || seq != ex.seq {
				continue
			}
			ex.pending = append(ex.pending[:i], ex.pending[i+1:]...)
			ex.seq++
			// Read chunks go at once, so that a long stream holds only
			// what is not read yet.
			if _, err := ex.r.cli.Delete(ctx, string(kv.Key)); err != nil {
				return 0, nil, storeErr("delete relay chunk", err)
			}
			if len(kv.Value) == 0 {
				return 0, nil, errors.New("empty relay chunk")
			}
			return kv.Value[0], kv.Value[1:], nil
		}
		select {
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		case wr, ok := <-ex.events:
			if !ok {
				return 0, nil, errors.New("relay watch ended")
			}
			if err := wr.Err(); err != nil {
				return 0, nil, storeErr("watch relay answer", err)
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypePut {
					ex.pending = append(ex.pending, ev.Kv)
				}
			}
		}
	}
}

// Read reads the answer's body.
func (ex *exchange) Read(p []byte) (int, error) {
	for len(ex.rest) == 0 {
		if ex.err != nil {
			return 0, ex.err
		}
		kind, data, err := ex.next(ex.ctx)
		switch {
		case err != nil && ex.targetGone.Load():
			ex.err = errors.New("the machine answering left the cluster")
		case err != nil:
			ex.err = err
		case kind == 'd':
			ex.rest = data
		case kind == 'e' && len(data) == 0:
			ex.err = io.EOF
		case kind == 'e':
			ex.err = fmt.Errorf("relayed answer: %s", data)
		default:
			ex.err = fmt.Errorf("relay answer holds chunk %q in its body", kind)
		}
	}
	n := copy(p, ex.rest)
	ex.rest = ex.rest[n:]
	return n, nil
}

// Close ends the exchange: the lease goes, and with it every key left.
func (ex *exchange) Close() error {
	ex.once.Do(func() {
		ex.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// A lease that cannot be revoked expires within relayLeaseTTL.
		_, _ = ex.r.cli.Revoke(ctx, ex.lease)
	})
	return nil
}

// RelayWriter answers one relayed request: Header once, then Write and
// Flush, then End. It is not safe for concurrent use.
type RelayWriter struct {
	r       *Etcd
	key     func(seq int) string
	lease   clientv3.LeaseID
	seq     int
	buf     []byte
	sent    int
	limit   int // 0: unbounded
	headed  bool
	ended   bool
	failure error
}

func (w *RelayWriter) put(ctx context.Context, kind byte, data []byte) error {
	if w.failure != nil {
		return w.failure
	}
	if err := w.waitWindow(ctx); err != nil {
		return err
	}
	val := make([]byte, 1+len(data))
	val[0] = kind
	copy(val[1:], data)
	// Only while the request is there: once the requester has gone, its
	// lease has, and nothing is written after it.
	if _, err := w.r.cli.Put(ctx, w.key(w.seq), string(val), clientv3.WithLease(w.lease)); err != nil {
		err = storeErr("put relay answer", err)
		if ctx.Err() == nil {
			w.failure = err // the store's answer: nothing more goes
		}
		return err
	}
	w.seq++
	return nil
}

// waitWindow waits, every relayWindow/2 chunks, until the reader has
// taken chunk seq-relayWindow.
func (w *RelayWriter) waitWindow(ctx context.Context) error {
	if w.seq < relayWindow || w.seq%(relayWindow/2) != 0 {
		return nil
	}
	key := w.key(w.seq - relayWindow)
	for {
		resp, err := w.r.cli.Get(ctx, key, clientv3.WithCountOnly())
		if err != nil {
			return storeErr("check relay reader", err)
		}
		if resp.Count == 0 {
			return nil
		}
		if err := w.waitDeleted(ctx, key, resp.Header.Revision+1); err != nil {
			return err
		}
	}
}

// waitDeleted waits until key is deleted at or after revision rev.
func (w *RelayWriter) waitDeleted(ctx context.Context, key string, rev int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range w.r.cli.Watch(clientv3.WithRequireLeader(ctx), key, clientv3.WithRev(rev), clientv3.WithFilterPut()) {
		if err := wr.Err(); err != nil {
			return storeErr("watch relay reader", err)
		}
		if len(wr.Events) > 0 {
			return nil
		}
	}
	return ctx.Err()
}

// Header sends the answer's status code and content type.
func (w *RelayWriter) Header(ctx context.Context, code int, contentType string) error {
	if w.headed {
		return nil
	}
	w.headed = true
	b, _ := json.Marshal(relayHeader{Code: code, ContentType: contentType})
	return w.put(ctx, 'h', b)
}

// ErrRelayTooLarge is returned by Write once an answer that is not a stream
// exceeds RelayMaxAnswerBytes.
var ErrRelayTooLarge = fmt.Errorf("answer exceeds %d bytes", RelayMaxAnswerBytes)

// Write adds body bytes, sending full chunks.
func (w *RelayWriter) Write(ctx context.Context, p []byte) (int, error) {
	if w.limit > 0 && w.sent+len(w.buf)+len(p) > w.limit {
		return 0, ErrRelayTooLarge
	}
	w.buf = append(w.buf, p...)
	for len(w.buf) >= RelayChunkBytes {
		if err := w.put(ctx, 'd', w.buf[:RelayChunkBytes]); err != nil {
			return 0, err
		}
		w.sent += RelayChunkBytes
		w.buf = append(w.buf[:0], w.buf[RelayChunkBytes:]...)
	}
	return len(p), nil
}

// Flush sends the buffered body bytes.
func (w *RelayWriter) Flush(ctx context.Context) error {
	if len(w.buf) == 0 {
		return w.failure
	}
	if err := w.put(ctx, 'd', w.buf); err != nil {
		return err
	}
	w.sent += len(w.buf)
	w.buf = w.buf[:0]
	return nil
}

// End sends what is buffered and the end of the answer; failure, if not
// nil, tells the requester that the answer is not whole.
func (w *RelayWriter) End(ctx context.Context, failure error) error {
	if w.ended {
		return nil
	}
	w.ended = true
	if failure == nil {
		failure = w.Flush(ctx)
	}
	text := ""
	if failure != nil {
		text = failure.Error()
	}
	if w.failure != nil {
		return w.failure
	}
	return w.put(ctx, 'e', []byte(text))
}

// RelayHandler answers one relayed request through w. ctx ends when the
// requester goes away or the answer's time is up.
type RelayHandler func(ctx context.Context, req RelayRequest, w *RelayWriter)

// ServeRelay answers the requests relayed to machine until ctx ends, each
// with h in a goroutine of its own (at most relayMaxActive at once; more
// are answered 503). It returns ctx's error, or the store's when it cannot
// follow the requests.
func (r *Etcd) ServeRelay(ctx context.Context, machine string, h RelayHandler) error {
	prefix := r.keys.relayAsks(machine)
	var wg sync.WaitGroup
	defer wg.Wait()
	active := make(chan struct{}, relayMaxActive)
	seen := map[string]bool{} // requests taken, by key; pruned as they go
	var mu sync.Mutex
	take := func(kv *mvccpb.KeyValue) {
		key := string(kv.Key)
		mu.Lock()
		dup := seen[key]
		seen[key] = true
		mu.Unlock()
		if dup {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { mu.Lock(); delete(seen, key); mu.Unlock() }()
			r.answer(ctx, kv, active, h)
		}()
	}
	for ctx.Err() == nil {
		get, err := r.cli.Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			r.log.Warn("read relayed requests", "err", err)
			_ = pause.For(ctx, time.Second)
			continue
		}
		for _, kv := range get.Kvs {
			take(kv)
		}
		wch := r.cli.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(),
			clientv3.WithRev(get.Header.Revision+1))
		for wr := range wch {
			if err := wr.Err(); err != nil {
				r.log.Warn("watch relayed requests", "err", err)
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypePut && ev.IsCreate() {
					take(ev.Kv)
				}
			}
		}
		_ = pause.For(ctx, 200*time.Millisecond)
	}
	return ctx.Err()
}

// answer serves one request: acknowledged at once, then h, under a
// context that ends when the request key goes.
func (r *Etcd) answer(ctx context.Context, kv *mvccpb.KeyValue, active chan struct{}, h RelayHandler) {
	var req RelayRequest
	if len(kv.Value) > relayMaxRequestBytes || json.Unmarshal(kv.Value, &req) != nil || req.ID == "" ||
		req.From == "" || strings.Contains(req.From, "/") || strings.Contains(req.ID, "/") || kv.Lease == 0 {
		r.log.Warn("ignored a malformed relayed request", "key", string(kv.Key))
		return
	}
	limit := RelayMaxAnswerBytes
	life := relayAnswerLife
	if req.Stream {
		limit, life = 0, RelayMaxStream
	}
	ctx, cancel := context.WithTimeout(ctx, life)
	defer cancel()
	w := &RelayWriter{r: r, lease: clientv3.LeaseID(kv.Lease), limit: limit,
		key: func(seq int) string { return r.keys.relayChunk(req.From, req.ID, seq) }}
	if err := w.put(ctx, 'a', nil); err != nil {
		r.log.Debug("relayed request gone before it was taken", "id", req.ID, "err", err)
		return
	}
	select {
	case active <- struct{}{}:
		defer func() { <-active }()
	default:
		_ = w.Header(ctx, 503, "application/json")
		_, _ = w.Write(ctx, []byte(`{"error":{"code":503,"message":"too many relayed requests at once"}}`))
		_ = w.End(ctx, nil)
		return
	}
	// The requester's going (its lease, and so the request key) ends the answer.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go func() {
		defer cancel()
		for wr := range r.cli.Watch(clientv3.WithRequireLeader(wctx), string(kv.Key), clientv3.WithRev(kv.ModRevision+1)) {
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete {
					return
				}
			}
			if wr.Err() != nil {
				return
			}
		}
	}()
	h(ctx, req, w)
}
