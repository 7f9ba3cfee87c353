// Command fleetd is the fleet daemon: one per host, running the agent, an
// engine candidate and the HTTP API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/fleet-next/fleet/internal/fleetd"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

func run(args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fleetd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "path to the configuration file (default /etc/fleet/fleet.conf if it exists)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	dev := fs.Bool("dev", false, "run a complete one-host cluster: embedded etcd, engine, agent and API")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() == 1 && fs.Arg(0) == "version" {
		*showVersion = true
	} else if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fleetd: %s takes no arguments. Did you mean to invoke fleetctl instead?\n", os.Args[0])
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "fleetd version %s\n", version)
		return 0
	}
	path := *configPath
	if path == "" {
		if st, err := os.Stat("/etc/fleet/fleet.conf"); err == nil && !st.IsDir() {
			path = "/etc/fleet/fleet.conf"
		}
	}
	cfg, ignored, err := fleetd.LoadConfig(path, environ)
	if err != nil {
		fmt.Fprintf(stderr, "fleetd: %v\n", err)
		return 1
	}
	level := new(slog.LevelVar)
	level.Set(fleetd.LogLevel(cfg.Verbosity))
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	for _, k := range ignored {
		log.Warn("configuration key has no effect", "key", k)
	}
	set := setKeys(path, environ)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := func() (fleetd.Config, error) {
		c, _, err := fleetd.LoadConfig(path, environ)
		return c, err
	}
	err = fleetd.Run(ctx, cfg, fleetd.Options{Dev: *dev, Version: version, Logger: log, Stdout: stdout,
		APIListenSet: set["api_listen"], DataDirSet: set["data_dir"],
		Reload: hup, LoadConfig: reload, Level: level})
	if err != nil {
		log.Error("fleetd failed", "err", err)
		return 1
	}
	return 0
}

// setKeys reports which keys the file or environment set explicitly.
func setKeys(path string, environ []string) map[string]bool {
	out := map[string]bool{}
	for _, k := range fleetd.ExplicitKeys(path, environ) {
		out[k] = true
	}
	return out
}
