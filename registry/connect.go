package registry

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// reconnect is how the client redials an etcd member it lost. gRPC's default
// backoff grows to 120 s, so after a partition of a minute a host whose link
// is back can wait another minute before it tries again, and meanwhile keeps
// running units the cluster has moved elsewhere. Redialing at most every
// 2 s (jittered) costs a refused connection per host and member every 2 s
// while a member is down.
var reconnect = grpc.ConnectParams{
	Backoff: backoff.Config{
		BaseDelay:  250 * time.Millisecond,
		Multiplier: 1.6,
		Jitter:     0.2,
		MaxDelay:   2 * time.Second,
	},
	// One attempt may take this long (a loaded host's TLS handshake).
	MinConnectTimeout: 5 * time.Second,
}

// ConnectConfig says how to reach etcd.
type ConnectConfig struct {
	Endpoints          []string
	KeyFile, CertFile  string // client certificate (both or neither)
	CAFile             string // verify the server against this CA; "" = system roots
	Username, Password string
	DialTimeout        time.Duration
	// Observer, if set, receives a report of every etcd request (see
	// Instrument).
	Observer Observer
	// RequestTimeout bounds every request (etcd_request_timeout); watches
	// and lease keep-alive streams are not requests. 0 = unbounded.
	RequestTimeout time.Duration
	// Prefix is the key prefix ("" = DefaultPrefix).
	Prefix string
	Logger *slog.Logger
}

// Connect returns a registry on a new etcd client; Close releases it. It
// does not wait for the cluster to be reachable: the client connects in the
// background and retries.
func Connect(cfg ConnectConfig) (*Etcd, error) {
	cc := clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		Username:    cfg.Username,
		Password:    cfg.Password,
		Logger:      zap.NewNop(),
		// Keep connections healthy across partitions: detect a dead peer in
		// seconds rather than at the TCP timeout.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		DialOptions:          []grpc.DialOption{grpc.WithConnectParams(reconnect)},
	}
	if cfg.CAFile != "" || cfg.CertFile != "" {
		// Never skip verification (fleet did when no client cert was given).
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("read etcd CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("etcd CA file %s holds no PEM certificate", cfg.CAFile)
			}
			tc.RootCAs = pool
		}
		if cfg.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("load etcd client certificate: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		cc.TLS = tc
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("create etcd client: %w", err)
	}
	if cfg.RequestTimeout > 0 {
		bound(cli, cfg.RequestTimeout)
	}
	if cfg.Observer != nil {
		Instrument(cli, cfg.Observer)
	}
	r := FromClient(cli, cfg.Prefix, cfg.Logger)
	r.owned = true
	r.tls, r.endpoints = cc.TLS, cfg.Endpoints
	return r, nil
}
