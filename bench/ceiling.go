package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ceilingResult is what the etcd member takes, measured with the same
// settings as the control-plane runs.
type ceilingResult struct {
	SinglePutsSerial     float64 // puts/s, one request at a time
	SinglePutsConcurrent float64 // puts/s, single-put requests from many goroutines
	BatchedPuts          float64 // puts/s in transactions of ceilingBatch puts
	BatchedTxns          float64 // transactions/s of the same run
	Concurrency          int
}

// ceilingBatch is the size of the batched transactions: etcd's default
// --max-txn-ops, the batch size of the engine's writes.
const ceilingBatch = 128

// ceilingValue is the size of a placement record of a benchmark unit.
var ceilingValue = strings.Repeat("x", 200)

// runCeiling measures a fresh etcd member (same settings as the
// control-plane runs) for each of the three write patterns.
func runCeiling(ctx context.Context, per time.Duration, concurrency int, log *slog.Logger) (ceilingResult, error) {
	res := ceilingResult{Concurrency: concurrency}
	dir, err := os.MkdirTemp("", "fleet-bench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	var er etcdReady
	etcd, err := startChild(ctx, "etcd", []string{"-dir", filepath.Join(dir, "etcd")}, &er)
	if err != nil {
		return res, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := etcd.stop(sctx); err != nil {
			log.Warn("stopping etcd", "err", err)
		}
	}()
	cli, err := connect(er.Endpoint, newRequestCounter())
	if err != nil {
		return res, err
	}
	defer cli.Close()
	runs := []struct {
		name    string
		workers int
		batch   int
		dst     *float64
	}{
		{"single puts, serial", 1, 1, &res.SinglePutsSerial},
		{"single puts, concurrent", concurrency, 1, &res.SinglePutsConcurrent},
		{"batched puts", concurrency, ceilingBatch, &res.BatchedPuts},
	}
	for _, r := range runs {
		log.Info("etcd ceiling", "run", r.name)
		puts, err := putLoad(ctx, cli, r.name, per, r.workers, r.batch)
		if err != nil {
			return res, err
		}
		*r.dst = puts
	}
	res.BatchedTxns = res.BatchedPuts / ceilingBatch
	return res, nil
}

// putLoad writes as fast as it can for d and returns puts per second.
func putLoad(ctx context.Context, cli *clientv3.Client, name string, d time.Duration, workers, batch int) (float64, error) {
	prefix := "/bench-ceiling/" + strings.ReplaceAll(name, " ", "-") + "/"
	var puts atomic.Int64
	var (
		mu       sync.Mutex // guards firstErr
		firstErr error
	)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			ops := make([]clientv3.Op, batch)
			for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				var err error
				if batch == 1 {
					_, err = cli.Put(ctx, fmt.Sprintf("%s%d/%d", prefix, w, i), ceilingValue)
				} else {
					for j := range ops {
						ops[j] = clientv3.OpPut(fmt.Sprintf("%s%d/%d/%d", prefix, w, i, j), ceilingValue)
					}
					_, err = cli.Txn(ctx).Then(ops...).Commit()
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("%s: %w", name, err)
					}
					mu.Unlock()
					return
				}
				puts.Add(int64(batch))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return 0, firstErr
	}
	if _, err := cli.Delete(ctx, prefix, clientv3.WithPrefix()); err != nil {
		return 0, fmt.Errorf("%s: clean up: %w", name, err)
	}
	return float64(puts.Load()) / elapsed.Seconds(), ctx.Err()
}
