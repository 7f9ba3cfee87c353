package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/fleet-next/fleet/test/cluster"
)

// Settings of the suite that have no flag.
const (
	ceilingPerRun      = 3 * time.Second  // length of each etcd ceiling run
	ceilingConcurrency = 16               // writers of the etcd ceiling runs
	cliMachines        = 100              // machines the CLI runs' units are spread over
	cliLimit           = 60 * time.Second // a fleetctl list taking longer is stopped
)

func runSuite(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseSuite(args, stderr)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if cfg.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	defer cluster.CleanupBinaries()
	res := suiteResults{Machine: describeMachine(), Started: time.Now()}
	fail := func(name string, err error) {
		log.Error("scenario failed", "scenario", name, "err", err)
		res.Failures = append(res.Failures, fmt.Sprintf("%s: %v", name, err))
	}
	if cfg.scenarios[scenControl] {
		for _, n := range cfg.agents {
			c := cfg.control
			c.Agents = n
			r, err := runControl(ctx, c, log)
			if err != nil {
				fail(fmt.Sprintf("control plane, %d agents", n), err)
				continue
			}
			res.Control = append(res.Control, r)
		}
	}
	if cfg.scenarios[scenCeiling] && ctx.Err() == nil {
		log.Info("etcd ceiling")
		if r, err := runCeiling(ctx, ceilingPerRun, ceilingConcurrency, log); err != nil {
			fail("etcd ceiling", err)
		} else {
			res.Ceiling = &r
		}
	}
	if cfg.scenarios[scenSystemd] && ctx.Err() == nil {
		if r, err := runSystemd(ctx, cfg.systemd, log); err != nil {
			fail("real systemd", err)
		} else {
			res.Systemd = &r
		}
	}
	if cfg.scenarios[scenCLI] && ctx.Err() == nil {
		c := cfg.cli
		c.Machines, c.Limit, c.TTL = cliMachines, cliLimit, cfg.control.TTL
		if r, err := runCLI(ctx, c, log); err != nil {
			fail("CLI", err)
		} else {
			res.CLI = &r
		}
	}
	res.Took = time.Since(res.Started)
	res.writeMarkdown(stdout)
	if cfg.out != "" {
		f, err := os.Create(cfg.out)
		if err != nil {
			return fmt.Errorf("write results: %w", err)
		}
		res.writeMarkdown(f)
		if err := f.Close(); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
	}
	if len(res.Failures) > 0 {
		return fmt.Errorf("%d scenario(s) failed", len(res.Failures))
	}
	return ctx.Err()
}
