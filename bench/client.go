package bench

import (
	"context"
	"fmt"
	"path"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// requestCounter counts the etcd requests one process sends, by gRPC
// method, as etcd counts them: one per unary call, one per stream message.
// It lets the suite split etcd's totals between the engine, the bench
// driver and the agents.
type requestCounter struct {
	mu sync.Mutex // guards n
	n  requests
}

func newRequestCounter() *requestCounter { return &requestCounter{n: requests{}} }

func (c *requestCounter) add(fullMethod string) {
	m := path.Base(fullMethod)
	c.mu.Lock()
	c.n[m]++
	c.mu.Unlock()
}

// Snapshot returns the counts so far.
func (c *requestCounter) Snapshot() requests {
	c.mu.Lock()
	defer c.mu.Unlock()
	return requests{}.Add(c.n)
}

func (c *requestCounter) dialOptions() []grpc.DialOption {
	unary := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		c.add(method)
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	stream := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, err
		}
		return &countedStream{ClientStream: s, count: func() { c.add(method) }}, nil
	}
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(unary), grpc.WithChainStreamInterceptor(stream)}
}

type countedStream struct {
	grpc.ClientStream
	count func()
}

func (s *countedStream) SendMsg(m any) error {
	err := s.ClientStream.SendMsg(m)
	if err == nil {
		s.count()
	}
	return err
}

// connect makes an etcd client with fleetd's connection settings
// (registry.Connect) that counts its requests in c.
func connect(endpoint string, c *requestCounter) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            []string{endpoint},
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Logger:               zap.NewNop(),
		DialOptions:          c.dialOptions(),
	})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd: %w", err)
	}
	return cli, nil
}
