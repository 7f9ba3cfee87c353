package registry_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/registry/registrytest"
	"github.com/fleet-next/fleet/unit"
)

// serveRelay runs ServeRelay for machine until the test ends.
func serveRelay(t *testing.T, r *registry.Etcd, machine string, h registry.RelayHandler) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.ServeRelay(ctx, machine, h) }()
	t.Cleanup(func() { cancel(); <-done })
}

// bridgeKeys counts the keys of the bridge left in the store.
func bridgeKeys(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	resp, err := cli.Get(ctxT(t), registry.DefaultPrefix+"bridge/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// An answer of several chunks arrives whole and in order, with the
// request's path and subject delivered, and nothing is left in the store
// once the requester closes it.
func TestRelayCarriesAWholeAnswerAndLeavesNothing(t *testing.T) {
	e := registrytest.StartEtcd(t)
	target, requester, cli := e.Registry(t), e.Registry(t), e.Client(t)
	body := bytes.Repeat([]byte("0123456789abcdef"), 3*registry.RelayChunkBytes/16+100) // four chunks
	got := make(chan registry.RelayRequest, 1)
	serveRelay(t, target, "m2", func(ctx context.Context, req registry.RelayRequest, w *registry.RelayWriter) {
		got <- req
		if err := w.Header(ctx, 203, "text/plain"); err != nil {
			t.Error(err)
		}
		for b := body; len(b) > 0; b = b[min(len(b), 1000):] {
			if _, err := w.Write(ctx, b[:min(len(b), 1000)]); err != nil {
				t.Error(err)
			}
		}
		if err := w.End(ctx, nil); err != nil {
			t.Error(err)
		}
	})
	ans, err := requester.Relay(ctxT(t), "m1", "m2", registry.RelayRequest{Path: "/fleet/v1/units/a.service/status", Subject: "user:alice"})
	if err != nil {
		t.Fatal(err)
	}
	if ans.Code != 203 || ans.ContentType != "text/plain" {
		t.Errorf("answer = %d %q, want 203 text/plain", ans.Code, ans.ContentType)
	}
	read, err := io.ReadAll(ans.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read, body) {
		t.Errorf("body: %d bytes, want the %d sent", len(read), len(body))
	}
	req := <-got
	if req.From != "m1" || req.Path != "/fleet/v1/units/a.service/status" || req.Subject != "user:alice" || req.ID == "" {
		t.Errorf("target got %+v", req)
	}
	_ = ans.Body.Close()
	if n := bridgeKeys(t, cli); n != 0 {
		t.Errorf("%d bridge keys left after the exchange", n)
	}
}

// An answer that is not a stream stops at RelayMaxAnswerBytes, and the
// requester learns it is cut.
func TestRelayBoundsAnAnswer(t *testing.T) {
	e := registrytest.StartEtcd(t)
	target, requester := e.Registry(t), e.Registry(t)
	serveRelay(t, target, "m2", func(ctx context.Context, _ registry.RelayRequest, w *registry.RelayWriter) {
		_ = w.Header(ctx, 200, "")
		chunk := make([]byte, 100<<10)
		var err error
		for err == nil {
			_, err = w.Write(ctx, chunk)
		}
		if !errors.Is(err, registry.ErrRelayTooLarge) {
			t.Errorf("write past the bound: %v, want ErrRelayTooLarge", err)
		}
		_ = w.End(ctx, err)
	})
	ans, err := requester.Relay(ctxT(t), "m1", "m2", registry.RelayRequest{Path: "/x"})
	if err != nil {
		t.Fatal(err)
	}
	defer ans.Body.Close()
	read, err := io.ReadAll(ans.Body)
	if err == nil || !strings.Contains(err.Error(), "answer exceeds 1048576 bytes") {
		t.Errorf("read of a cut answer: %v, want it to say the answer exceeds the bound", err)
	}
	if len(read) > registry.RelayMaxAnswerBytes {
		t.Errorf("read %d bytes, more than the bound %d", len(read), registry.RelayMaxAnswerBytes)
	}
}

// A stream flows until the requester closes it; then the target's
// context ends and the store holds nothing of it.
func TestRelayStreamEndsWithTheRequester(t *testing.T) {
	e := registrytest.StartEtcd(t)
	target, requester, cli := e.Registry(t), e.Registry(t), e.Client(t)
	ended := make(chan struct{})
	serveRelay(t, target, "m2", func(ctx context.Context, _ registry.RelayRequest, w *registry.RelayWriter) {
		defer close(ended)
		_ = w.Header(ctx, 200, "text/plain")
		for i := 0; ctx.Err() == nil; i++ {
			if _, err := w.Write(ctx, []byte("line\n")); err != nil {
				return
			}
			if err := w.Flush(ctx); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	ans, err := requester.Relay(ctxT(t), "m1", "m2", registry.RelayRequest{Path: "/x", Stream: true})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5*10)
	if _, err := io.ReadFull(ans.Body, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != strings.Repeat("line\n", 10) {
		t.Errorf("stream = %q", buf)
	}
	_ = ans.Body.Close()
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the target still streams 30s after the requester closed")
	}
	if n := bridgeKeys(t, cli); n != 0 {
		t.Errorf("%d bridge keys left after the stream", n)
	}
}

// A machine whose fleetd does not serve the bridge gives ErrRelayNoAnswer,
// and its request does not stay behind.
func TestRelayToNobodyIsNoAnswer(t *testing.T) {
	e := registrytest.StartEtcd(t)
	requester, cli := e.Registry(t), e.Client(t)
	_, err := requester.Relay(ctxT(t), "m1", "m2", registry.RelayRequest{Path: "/x"})
	if !errors.Is(err, registry.ErrRelayNoAnswer) {
		t.Fatalf("relay to a machine that does not answer: %v, want ErrRelayNoAnswer", err)
	}
	if n := bridgeKeys(t, cli); n != 0 {
		t.Errorf("%d bridge keys left after no answer", n)
	}
}

// A stream whose target machine leaves the cluster (its lease expires: its
// fleetd died) ends with an error saying so rather than waiting forever.
func TestRelayStreamEndsWhenTheTargetLeaves(t *testing.T) {
	e := registrytest.StartEtcd(t)
	target, requester, cli := e.Registry(t), e.Registry(t), e.Client(t)
	lease, err := target.Register(ctxT(t), unit.Machine{ID: "m2"}, "i2", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	serveRelay(t, target, "m2", func(ctx context.Context, _ registry.RelayRequest, w *registry.RelayWriter) {
		_ = w.Header(ctx, 200, "text/plain")
		_, _ = w.Write(ctx, []byte("first\n"))
		_ = w.Flush(ctx)
		<-ctx.Done() // a follower waiting for lines that never come
	})
	ans, err := requester.Relay(ctxT(t), "m1", "m2", registry.RelayRequest{Path: "/x", Stream: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ans.Body.Close()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(ans.Body, buf); err != nil || string(buf) != "first\n" {
		t.Fatalf("first line: %q, %v", buf, err)
	}
	if _, err := cli.Revoke(ctxT(t), clientv3.LeaseID(lease)); err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(ans.Body)
	if err == nil || !strings.Contains(err.Error(), "left the cluster") {
		t.Errorf("read after the target left: %v, want an error saying it left the cluster", err)
	}
}

// A stream's target does not write further ahead of a slow reader than the
// window: what waits in the store stays bounded.
func TestRelayStreamWaitsForASlowReader(t *testing.T) {
	e := registrytest.StartEtcd(t)
	target, requester, cli := e.Registry(t), e.Registry(t), e.Client(t)
	const chunks = 48
	maxWaiting := make(chan int64, 1)
	serveRelay(t, target, "m2", func(ctx context.Context, _ registry.RelayRequest, w *registry.RelayWriter) {
		var most int64
		_ = w.Header(ctx, 200, "")
		chunk := bytes.Repeat([]byte{'x'}, registry.RelayChunkBytes)
		for range chunks {
			if _, err := w.Write(ctx, chunk); err != nil {
				t.Error(err)
				break
			}
			most = max(most, bridgeKeys(t, cli)-1) // less the request
		}
		_ = w.End(ctx, nil)
		maxWaiting <- most
	})
	ans, err := requester.Relay(ctxT(t), "m1", "m2", registry.RelayRequest{Path: "/x", Stream: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ans.Body.Close()
	var n int
	buf := make([]byte, registry.RelayChunkBytes)
	for {
		time.Sleep(5 * time.Millisecond) // a slow reader
		k, err := io.ReadFull(ans.Body, buf)
		n += k
		if err != nil {
			break
		}
	}
	if n != chunks*registry.RelayChunkBytes {
		t.Errorf("read %d bytes, want %d", n, chunks*registry.RelayChunkBytes)
	}
	if most := <-maxWaiting; most > 24 {
		t.Errorf("up to %d chunks waited in the store, want at most 24", most)
	}
}
