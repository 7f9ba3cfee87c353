package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/fleet-next/fleet/registry/etcdembed"
)

// etcdReady is the etcd child's ready message.
type etcdReady struct {
	Endpoint string
}

// runEtcdChild is the "etcd" child: one etcd member (etcdembed.Start)
// until stdin closes. Its Prometheus metrics are at <endpoint>/metrics.
func runEtcdChild(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("etcd", flag.ContinueOnError)
	dir := fs.String("dir", "", "data directory")
	fast := fs.Bool("fast", false, "short raft ticks and no fsync (test settings)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("etcd: -dir is required")
	}
	e, err := etcdembed.Start(ctx, etcdembed.Options{Dir: *dir, Fast: *fast})
	if err != nil {
		return err
	}
	defer e.Close()
	return serveChild(ctx, stdin, stdout, etcdReady{Endpoint: e.Endpoint()}, func(context.Context, string) (any, error) {
		return nil, fmt.Errorf("etcd: no commands")
	})
}
