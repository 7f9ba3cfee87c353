// Command fleet-cluster runs a multi-host test cluster by hand: N hosts, each
// a real fleetd with its own private systemd --user, against one etcd, all on
// loopback. It prints each host's fleetctl endpoint and tears everything
// down on Ctrl-C or SIGTERM.
//
//	go run ./test/cluster/fleet-cluster -n 3
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/fleet-next/fleet/test/cluster"
)

func main() {
	n := flag.Int("n", 3, "number of hosts")
	ttl := flag.Duration("agent-ttl", 10*time.Second, "agent_ttl of every host")
	flag.Parse()
	r := &runner{}
	code := r.run(*n, *ttl)
	r.cleanup()
	cluster.CleanupBinaries()
	os.Exit(code)
}

// runner implements cluster.T for a command-line program.
type runner struct {
	mu       sync.Mutex // guards cleanups and failed
	cleanups []func()
	failed   bool
}

type fatal struct{}

func (r *runner) run(n int, ttl time.Duration) (code int) {
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(fatal); !ok {
				panic(v)
			}
			code = 1
		}
	}()
	c := cluster.New(r, cluster.Options{Hosts: n, AgentTTL: ttl})
	fmt.Printf("cluster of %d hosts is up (etcd %s)\n\n", n, c.Endpoint)
	for _, h := range c.Hosts {
		fmt.Printf("host %d  machine %s  ip %s\n    fleetctl --endpoint %s list-machines\n", h.Index, h.MachineID, h.IP, h.Endpoint)
	}
	fmt.Println("\nCtrl-C tears it down.")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	fmt.Println("tearing down")
	return 0
}

func (r *runner) cleanup() {
	r.mu.Lock()
	cs := r.cleanups
	r.cleanups = nil
	r.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

func (r *runner) Helper()                           {}
func (r *runner) Logf(format string, args ...any)   { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (r *runner) Errorf(format string, args ...any) { r.setFailed(); r.Logf(format, args...) }
func (r *runner) Fatal(args ...any)                 { r.setFailed(); fmt.Fprintln(os.Stderr, args...); panic(fatal{}) }
func (r *runner) Fatalf(format string, args ...any) { r.Errorf(format, args...); panic(fatal{}) }
func (r *runner) setFailed() {
	r.mu.Lock()
	r.failed = true
	r.mu.Unlock()
}

func (r *runner) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

func (r *runner) Cleanup(f func()) {
	r.mu.Lock()
	r.cleanups = append(r.cleanups, f)
	r.mu.Unlock()
}

func (r *runner) TempDir() string {
	dir, err := os.MkdirTemp("", "fleet-cluster-")
	if err != nil {
		r.Fatal(err)
	}
	r.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
