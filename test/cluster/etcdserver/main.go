// Command etcdserver runs a single-member etcd (the embedded server) as its
// own process, so that tests can freeze it with SIGSTOP. It prints its client
// URL on the first line of stdout and stops on SIGTERM or SIGINT.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/fleet-next/fleet/registry/etcdembed"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: etcdserver DATA_DIR")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	e, err := etcdembed.Start(ctx, etcdembed.Options{Dir: os.Args[1], Fast: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(e.Endpoint())
	<-ctx.Done()
	e.Close()
}
