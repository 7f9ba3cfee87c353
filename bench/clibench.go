package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/test/cluster"
	"github.com/fleet-next/fleet/unit"
)

// cliConfig configures the CLI benchmark.
type cliConfig struct {
	Units    []int         // unit counts, each measured in turn
	Machines int           // machines the units are spread over
	Limit    time.Duration // a command running longer is stopped
	TTL      time.Duration // lease TTL of the machines
}

// cliRow is one unit count of the CLI benchmark.
type cliRow struct {
	Units         int
	ListUnits     cliRun
	ListUnitFiles cliRun
}

// cliRun is one timed fleetctl command.
type cliRun struct {
	Wall     time.Duration
	Lines    int  // lines printed
	TimedOut bool // stopped after cliConfig.Limit
}

// cliResult is one run of the CLI benchmark.
type cliResult struct {
	Config cliConfig
	Rows   []cliRow
}

// runCLI writes units, placements and states straight into the store of a
// one-host cluster whose fleetd runs no engine, and times the real
// fleetctl against that fleetd's API.
func runCLI(ctx context.Context, cfg cliConfig, log *slog.Logger) (cliResult, error) {
	res := cliResult{Config: cfg}
	h := &harness{log: log}
	err := h.run(func() error {
		c := cluster.New(h, cluster.Options{Hosts: 1, AgentTTL: cfg.TTL, Env: []string{"FLEET_DISABLE_ENGINE=true"}})
		fleetctl := filepath.Join(cluster.Binaries(h), "fleetctl")
		w, err := newCLIWriter(ctx, h, c.Registry(), cfg)
		if err != nil {
			return err
		}
		counts := slices.Sorted(slices.Values(cfg.Units))
		for _, n := range counts {
			log.Info("writing units", "units", n)
			if err := w.grow(ctx, n); err != nil {
				return err
			}
			row := cliRow{Units: n}
			for _, run := range []struct {
				cmd string
				dst *cliRun
			}{{"list-units", &row.ListUnits}, {"list-unit-files", &row.ListUnitFiles}} {
				log.Info("timing fleetctl", "command", run.cmd, "units", n)
				r, err := timeFleetctl(ctx, fleetctl, c.Hosts[0].Endpoint, run.cmd, cfg.Limit)
				if err != nil {
					return err
				}
				*run.dst = r
			}
			res.Rows = append(res.Rows, row)
		}
		return nil
	})
	return res, err
}

// cliWriter fills the store with launched units, each placed on one of a
// set of machines that report it running.
type cliWriter struct {
	reg      *registry.Etcd
	leader   *registry.Leader
	machines []string
	leases   []registry.LeaseID
	have     int
}

func newCLIWriter(ctx context.Context, h *harness, reg *registry.Etcd, cfg cliConfig) (*cliWriter, error) {
	w := &cliWriter{reg: reg}
	kctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	h.Cleanup(stop)
	for i := range max(1, cfg.Machines) {
		id := machineID(i)
		m := unit.Machine{ID: id, PublicIP: fmt.Sprintf("10.1.%d.%d", i>>8&255, i&255), Metadata: map[string]string{"bench": "true"}}
		lease, err := reg.Register(ctx, m, "bench-"+id, cfg.TTL)
		if err != nil {
			return nil, err
		}
		ka, err := reg.KeepAlive(kctx, lease)
		if err != nil {
			return nil, err
		}
		go func() {
			for range ka {
			}
		}()
		w.machines, w.leases = append(w.machines, id), append(w.leases, lease)
	}
	// The placements are written by a leader of our own, as the engine
	// would write them: fenced, in batched transactions.
	leader, err := reg.Campaign(ctx, "bench-cli", 0, 10*time.Second)
	if err != nil {
		return nil, err
	}
	w.leader = leader
	return w, nil
}

// grow adds units until there are n.
func (w *cliWriter) grow(ctx context.Context, n int) error {
	names := unitNames("cli", n)[w.have:]
	if len(names) == 0 {
		return nil
	}
	units := make([]unit.Unit, len(names))
	for i, name := range names {
		u, err := benchUnit(name, "", unit.StateLaunched)
		if err != nil {
			return err
		}
		units[i] = u
	}
	machineOf := func(i int) int { return (w.have + i) % len(w.machines) }
	if err := parallel(ctx, len(units), func(i int) error { return w.reg.CreateUnit(ctx, units[i]) }); err != nil {
		return err
	}
	changes := make([]registry.ScheduleChange, len(units))
	for i, u := range units {
		changes[i] = registry.Place(unit.Placement{Unit: u.Name, Machine: w.machines[machineOf(i)],
			Hash: u.Hash, Desired: u.Desired, Content: u.Content})
	}
	if _, err := w.leader.Apply(ctx, changes); err != nil {
		return err
	}
	now := time.Now()
	err := parallel(ctx, len(units), func(i int) error {
		m := machineOf(i)
		return w.reg.PublishState(ctx, w.leases[m], unit.State{Name: units[i].Name, MachineID: w.machines[m],
			Hash: units[i].Hash, Current: unit.StateLaunched, Since: now,
			SystemdState: unit.SystemdState{LoadState: "loaded", ActiveState: "active", SubState: "running", MainPID: uint32(1000 + i)}})
	})
	if err != nil {
		return err
	}
	w.have = n
	return nil
}

// parallel runs f(0..n-1) on 16 goroutines and returns the first error.
func parallel(ctx context.Context, n int, f func(i int) error) error {
	var next atomic.Int64
	var (
		mu       sync.Mutex // guards firstErr
		firstErr error
	)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// timeFleetctl runs `fleetctl --endpoint endpoint command` and times it.
func timeFleetctl(ctx context.Context, fleetctl, endpoint, command string, limit time.Duration) (cliRun, error) {
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(cctx, fleetctl, "--endpoint", endpoint, command)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := cliRun{Wall: time.Since(start), Lines: bytes.Count(out.Bytes(), []byte("\n"))}
	if cctx.Err() != nil && ctx.Err() == nil {
		r.TimedOut = true
		return r, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return r, fmt.Errorf("fleetctl %s: %w: %s", command, err, errb.String())
	}
	if err != nil {
		return r, fmt.Errorf("fleetctl %s: %w", command, err)
	}
	return r, nil
}
