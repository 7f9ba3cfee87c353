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
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
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
	Fast bool
	// Private makes the member reachable only by whoever can read Dir: it
	// serves TLS only, on 127.0.0.1, to clients presenting a certificate
	// of a CA it generates in Dir (see TLS); its peer listener likewise.
	// ClientURL is ignored.
	Private bool
	Logger  *slog.Logger
}

// Server is a running in-process etcd member.
type Server struct {
	e         *embed.Etcd
	endpoint  string
	tls       TLSFiles
	closeOnce sync.Once
}

// Start starts a single-member etcd and waits until it serves.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create etcd data dir: %w", err)
	}
	cfg := embed.NewConfig()
	cfg.Dir = filepath.Join(opts.Dir, "data")
	cfg.Name = "fleet"
	client, peer := opts.ClientURL, "http://127.0.0.1:0"
	if client == "" {
		client = "http://127.0.0.1:0"
	}
	var files TLSFiles
	if opts.Private {
		var err error
		if files, err = makeTLS(filepath.Join(opts.Dir, "tls")); err != nil {
			return nil, err
		}
		info := transport.TLSInfo{CertFile: files.CertFile, KeyFile: files.KeyFile, TrustedCAFile: files.CAFile,
			ClientCertAuth: true}
		cfg.ClientTLSInfo, cfg.PeerTLSInfo = info, info
		client, peer = "https://127.0.0.1:0", "https://127.0.0.1:0"
	}
	cu, err := url.Parse(client)
	if err != nil {
		return nil, fmt.Errorf("parse etcd client URL %q: %w", client, err)
	}
	pu, _ := url.Parse(peer)
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
	scheme := "http://"
	if opts.Private {
		scheme = "https://"
	}
	return &Server{e: e, endpoint: scheme + e.Clients[0].Addr().String(), tls: files}, nil
}

// Endpoint is the client URL, e.g. http://127.0.0.1:43817.
func (m *Server) Endpoint() string { return m.endpoint }

// TLS are the files a client of a Private member presents and verifies it
// with; zero for a member that is not private.
func (m *Server) TLS() TLSFiles { return m.tls }

// NewClient connects a client to the member.
func (m *Server) NewClient() (*clientv3.Client, error) {
	cfg := clientv3.Config{Endpoints: []string{m.endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if m.tls.CAFile != "" {
		info := transport.TLSInfo{CertFile: m.tls.CertFile, KeyFile: m.tls.KeyFile, TrustedCAFile: m.tls.CAFile}
		tc, err := info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("connect to embedded etcd: %w", err)
		}
		cfg.TLS = tc
	}
	cli, err := clientv3.New(cfg)
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
