package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Exit codes of Main.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// Main runs the fleet-bench command: the benchmark suite, or one of the
// child roles the suite starts (etcd, engine, agents). It returns the exit
// code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := run(ctx, args, stdin, stdout, stderr)
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "fleet-bench:", err)
		return exitUsage
	case errors.Is(err, flag.ErrHelp):
		return exitUsage
	default:
		fmt.Fprintln(stderr, "fleet-bench:", err)
		return exitFail
	}
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	childLog := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if len(args) > 0 {
		switch args[0] {
		case "etcd":
			return runEtcdChild(ctx, args[1:], stdin, stdout)
		case "engine":
			return runEngineChild(ctx, args[1:], stdin, stdout, childLog.With("role", "engine"))
		case "agents":
			return runAgentsChild(ctx, args[1:], stdin, stdout, childLog.With("role", "agents"))
		}
	}
	return runSuite(ctx, args, stdout, stderr)
}

// suiteConfig is the command line of the suite.
type suiteConfig struct {
	scenarios map[string]bool
	control   controlConfig
	agents    []int
	systemd   systemdConfig
	cli       cliConfig
	out       string
	verbose   bool
}

// Scenario names for -run.
const (
	scenControl = "control"
	scenCeiling = "ceiling"
	scenSystemd = "systemd"
	scenCLI     = "cli"
)

func parseSuite(args []string, stderr io.Writer) (suiteConfig, error) {
	var c suiteConfig
	fs := flag.NewFlagSet("fleet-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scen := fs.String("run", "control,ceiling,systemd,cli", "scenarios to run")
	agents := fs.String("agents", "100,1000", "simulated agent counts of the control-plane runs")
	fs.IntVar(&c.control.Units, "units", 10000, "units of the control-plane burst (and of its backlog)")
	fs.IntVar(&c.control.Submitters, "submitters", 8, "goroutines submitting units")
	fs.DurationVar(&c.control.Idle, "idle", 30*time.Second, "length of each idle window")
	fs.DurationVar(&c.control.TTL, "agent-ttl", 30*time.Second, "agent_ttl of simulated agents and real hosts")
	fs.IntVar(&c.control.PerConn, "per-conn", 1, "simulated agents sharing one etcd connection")
	fs.IntVar(&c.systemd.Hosts, "hosts", 5, "hosts of the real-systemd run")
	fs.IntVar(&c.systemd.Units, "sd-units", 250, "units started in one fleetctl command")
	fs.IntVar(&c.systemd.HostUnits, "host-units", 1000, "units loaded on one host for the footprint")
	fs.DurationVar(&c.systemd.Idle, "host-idle", 60*time.Second, "window over which the loaded host's CPU is measured")
	cliUnits := fs.String("cli-units", "10000,50000", "unit counts of the CLI runs")
	fs.StringVar(&c.control.ProfileDir, "profile", "", "write CPU profiles of the engine and agents processes to this directory")
	fs.StringVar(&c.out, "o", "", "also write the results (markdown) to this file")
	fs.BoolVar(&c.verbose, "v", false, "log progress details")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	c.scenarios = map[string]bool{}
	for _, s := range strings.Split(*scen, ",") {
		switch s = strings.TrimSpace(s); s {
		case scenControl, scenCeiling, scenSystemd, scenCLI:
			c.scenarios[s] = true
		case "":
		default:
			return c, usageError{fmt.Sprintf("unknown scenario %q", s)}
		}
	}
	var err error
	if c.agents, err = intList(*agents); err != nil {
		return c, usageError{"-agents: " + err.Error()}
	}
	if c.cli.Units, err = intList(*cliUnits); err != nil {
		return c, usageError{"-cli-units: " + err.Error()}
	}
	c.systemd.TTL = c.control.TTL
	return c, nil
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}
