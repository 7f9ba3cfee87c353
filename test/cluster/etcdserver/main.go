// Command etcdserver runs etcd as its own process for the test harness, so
// that tests can freeze it (SIGSTOP), kill it (SIGKILL) and restart it on its
// data. It is etcd's own server (go.etcd.io/etcd/server/v3/embed, which the
// etcd binary wraps), built from the module's dependencies.
//
//	etcdserver -name m0 -data DIR -peer unix://m0-peer:1 -client unix://m0-client:1 \
//	    -cluster m0=unix://m0-peer:1,m1=unix://m1-peer:1,m2=unix://m2-peer:1 [-fast]
//
// runs one member of a cluster (of one member or more). Its peer and client
// URLs are unix sockets named relative to the working directory, so that a
// member killed and started again listens where its peers and the harness's
// proxies expect it, without reserving TCP ports. A member whose data
// directory holds a write-ahead log rejoins with it; -cluster only
// bootstraps a new cluster. Raft runs with etcd's default timing (100 ms
// heartbeat, 1 s election timeout), or ten times faster with -fast.
//
// The first line of stdout is the client URL, printed once the member
// serves (which needs a quorum of its cluster); SIGTERM or SIGINT stops it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "etcdserver:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("etcdserver", flag.ContinueOnError)
	name := fs.String("name", "", "member name")
	dir := fs.String("data", "", "data directory")
	peer := fs.String("peer", "", "peer URL (listened on and advertised)")
	client := fs.String("client", "", "client URL (listened on and advertised)")
	initial := fs.String("cluster", "", "initial cluster: name=peerURL,...")
	fast := fs.Bool("fast", false, "10 ms heartbeat, 100 ms election timeout")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if *name == "" || *dir == "" || *peer == "" || *client == "" || *initial == "" {
		return errors.New("usage: etcdserver -name N -data DIR -peer URL -client URL -cluster N=URL,... [-fast]")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	e, err := startMember(ctx, member{name: *name, dir: *dir, peer: *peer, client: *client, initial: *initial, fast: *fast})
	if err != nil {
		return err
	}
	fmt.Println(*client)
	select {
	case <-ctx.Done():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("etcd member %s: %w", *name, err)
	}
	e.Close()
	return nil
}

// member is what startMember needs to know.
type member struct {
	name, dir, peer, client, initial string
	fast                             bool
}

// startMember starts one member and waits until it serves.
func startMember(ctx context.Context, m member) (*embed.Etcd, error) {
	name := m.name
	pu, err := url.Parse(m.peer)
	if err != nil {
		return nil, fmt.Errorf("parse peer URL: %w", err)
	}
	cu, err := url.Parse(m.client)
	if err != nil {
		return nil, fmt.Errorf("parse client URL: %w", err)
	}
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = name, m.dir
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.InitialCluster = m.initial
	cfg.InitialClusterToken = "fleet-test"
	cfg.ClusterState = embed.ClusterStateFlagNew
	// Losing unsynced writes needs a machine crash, which tests do not make;
	// a killed process keeps everything it wrote.
	cfg.UnsafeNoFsync = true
	if m.fast {
		cfg.TickMs, cfg.ElectionMs = 10, 100
	}
	// Warnings and errors go to stderr, which the harness keeps in a file.
	cfg.LogLevel, cfg.LogOutputs = "warn", []string{embed.StdErrLogOutput}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd member %s: %w", name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd member %s: %w", name, err)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("start etcd member %s: %w", name, ctx.Err())
	case <-time.After(2 * time.Minute):
		e.Close()
		return nil, fmt.Errorf("start etcd member %s: not ready after 2m", name)
	}
}
