// Command fleetctl is the command-line client of fleet.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/fleet-next/fleet/fleetctl"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// signalGrace is how long a command may take to end once SIGINT or SIGTERM
// cancelled its context, before fleetctl exits anyway.
const signalGrace = 5 * time.Second

// main runs the command under a context that SIGINT and SIGTERM cancel.
// Every command ends with its context; should one not (a read that cannot
// be interrupted), fleetctl exits signalGrace after the signal, and a
// second signal ends it at once (the default action is restored after
// the first).
func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	done := make(chan int, 1)
	go func() {
		done <- fleetctl.Main(ctx, os.Args[1:], fleetctl.Deps{
			Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Version: version, Getenv: os.Getenv,
		})
	}()
	select {
	case code := <-done:
		stop()
		os.Exit(code)
	case <-ctx.Done():
	}
	stop()
	select {
	case code := <-done:
		os.Exit(code)
	case <-time.After(signalGrace):
		fmt.Fprintln(os.Stderr, "fleetctl: interrupted")
		os.Exit(130)
	}
}
