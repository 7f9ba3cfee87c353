// Command fleetctl is the command-line client of fleet.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/fleet-next/fleet/fleetctl"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := fleetctl.Main(ctx, os.Args[1:], fleetctl.Deps{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Version: version, Getenv: os.Getenv,
	})
	stop()
	os.Exit(code)
}
