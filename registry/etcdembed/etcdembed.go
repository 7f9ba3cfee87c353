// Package etcdembed runs a single-member etcd inside the process: the store
// of fleetd --dev and of tests. Production points fleetd at an etcd cluster
// instead; nothing else in fleetd imports this package.
package etcdembed

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Options configures an in-process single-member etcd.
type Options struct {
	Dir string // data directory; created if missing
	// ClientURL to listen on; "" = http://127.0.0.1:0 (a free port).
	ClientURL string
	// Fast uses short raft ticks (tests): leader in tens of milliseconds.
	Fast   bool
	Logger *slog.Logger
}

// Server is a running in-process etcd member.
type Server struct {
	e         *embed.Etcd
	endpoint  string
	closeOnce sync.Once
}

// Start starts a single-member etcd and waits until it serves.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create etcd data dir: %w", err)
	}
	cfg := embed.NewConfig()
	cfg.Dir = opts.Dir
	cfg.Name = "fleet"
	client := opts.ClientURL
	if client == "" {
		client = "http://127.0.0.1:0"
	}
	cu, err := url.Parse(client)
	if err != nil {
		return nil, fmt.Errorf("parse etcd client URL %q: %w", client, err)
	}
	pu, _ := url.Parse("http://127.0.0.1:0")
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	if opts.Fast {
		cfg.TickMs, cfg.ElectionMs = 10, 100
		cfg.UnsafeNoFsync = true
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("start embedded etcd: %w", ctx.Err())
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("start embedded etcd: not ready after 60s")
	}
	return &Server{e: e, endpoint: "http://" + e.Clients[0].Addr().String()}, nil
}

// Endpoint is the client URL, e.g. http://127.0.0.1:43817.
func (m *Server) Endpoint() string { return m.endpoint }

// NewClient connects a client to the member.
func (m *Server) NewClient() (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.endpoint}, DialTimeout: 5 * time.Second,
		Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("connect to embedded etcd: %w", err)
	}
	return cli, nil
}

// Close stops the member. Close clients first, or it waits for them.
// Idempotent.
func (m *Server) Close() {
	m.closeOnce.Do(m.e.Close)
}
