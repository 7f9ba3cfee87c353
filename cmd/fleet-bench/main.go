// Command fleet-bench runs fleet's benchmark suite and prints a results
// table: the control plane at scale with simulated agents, real systemd
// hosts, and the CLI at scale. See docs/benchmarks.md.
//
//	make bench
//	go run ./cmd/fleet-bench -run control -agents 100
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/fleet-next/fleet/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := bench.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
