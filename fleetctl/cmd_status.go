package fleetctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/unit"
)

// defaultJournalLines is the default of journal --lines.
const defaultJournalLines = 10

func (c *cli) newStatusCommand() *cobra.Command {
	var (
		output  outputFormat
		sshPort int
		block   blockFlags
	)
	cmd := &cobra.Command{
		Use:   "status [-o json|yaml] UNIT...",
		Short: "Output the status of one or more units in the cluster",
		Long: `Print what systemd says about each unit on its machine, as "systemctl
status" prints it: the unit line, the Loaded:, Active: and Main PID: lines
and the unit's last log lines where the machine has a journal. The
machine's own fleetd answers through the fleet API; no SSH is needed.

Several units are separated by a blank line. A global unit is shown for
every machine that reports it, each under a "==> machine <id>/<ip> <=="
header. Like systemctl status, the command exits with status 3 when a unit
is not active (text output only).

With -o json or -o yaml, a list of the API's unit status reports (name,
machineID, systemdLoadState, systemdActiveState, systemdSubState, mainPID,
text, journalError).`,
		Args: requireUnits,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			client, err := c.api(ctx)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var reports []*api.UnitStatusReport
			notActive := false
			for i, arg := range args {
				name := unit.MangleName(arg)
				reps, global, err := unitStatus(ctx, client, name)
				if err != nil {
					return err
				}
				if err := addReasons(ctx, client, name, reps); err != nil {
					return err
				}
				for _, r := range reps {
					notActive = notActive || r.SystemdActiveState != systemdActive
				}
				reports = append(reports, reps...)
				if output != outputText {
					continue
				}
				if i > 0 {
					fmt.Fprintln(out)
				}
				if err := printStatus(ctx, out, client, reps, global); err != nil {
					return err
				}
			}
			if output != outputText {
				return writeStructured(out, output, reports)
			}
			if notActive {
				return exitStatus(ExitNotRunning)
			}
			return nil
		},
		ValidArgsFunction: c.completeUnits,
	}
	fs := cmd.Flags()
	registerOutput(fs, &output, "as systemctl status prints it", "the API's status reports")
	fs.IntVar(&sshPort, "ssh-port", defaultSSHPort, "Accepted for compatibility; status does not use SSH.")
	block.register(fs, "reported")
	for _, name := range []string{"block-attempts", "no-block"} {
		fs.Lookup(name).Usage = "Accepted for compatibility; status does not wait."
	}
	return cmd
}

// unitStatus asks the machines of a unit for its status: its placement,
// or every machine that reports a global unit.
func unitStatus(ctx context.Context, client API, name string) (reps []*api.UnitStatusReport, global bool, err error) {
	u, err := client.Unit(ctx, name)
	if err != nil {
		return nil, false, failf("Error retrieving unit %s: %w", name, err)
	}
	if u == nil {
		return nil, false, failf("Unit %s does not exist.", name)
	}
	if !isGlobal(u) {
		if u.MachineID == "" || u.CurrentState == stateInactive {
			msg := fmt.Sprintf("Unit %s does not appear to be loaded.", name)
			if u.Reason != "" {
				msg += fmt.Sprintf("\nUnit %s cannot be placed: %s", name, u.Reason)
			}
			if states, err := client.UnitStates(ctx, "", name); err == nil {
				for _, s := range sortedStates(states) {
					if s.Reason != "" {
						msg += fmt.Sprintf("\nUnit %s failed on machine %s: %s", name, s.MachineID, s.Reason)
					}
				}
			}
			return nil, false, &exitError{code: ExitError, msg: msg}
		}
		rep, err := client.UnitStatus(ctx, name, "")
		if err != nil {
			return nil, false, failf("Unable to retrieve status of unit %s: %s", name, apiMessage(err))
		}
		return []*api.UnitStatusReport{rep}, false, nil
	}
	machines, err := reportingMachines(ctx, client, name)
	if err != nil {
		return nil, true, failf("Error retrieving states of unit %s: %w", name, err)
	}
	if len(machines) == 0 {
		return nil, true, failf("Unit %s does not appear to be loaded.", name)
	}
	for _, m := range machines {
		rep, err := client.UnitStatus(ctx, name, m)
		if err != nil {
			return nil, true, failf("Unable to retrieve status of unit %s on machine %s: %s", name, m, apiMessage(err))
		}
		reps = append(reps, rep)
	}
	return reps, true, nil
}

// reportingMachines lists the machines that report a state for a unit,
// sorted by ID.
func reportingMachines(ctx context.Context, client API, name string) ([]string, error) {
	states, err := client.UnitStates(ctx, "", name)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, s := range sortedStates(states) {
		if s.MachineID != "" && (len(ids) == 0 || ids[len(ids)-1] != s.MachineID) {
			ids = append(ids, s.MachineID)
		}
	}
	return ids, nil
}

// addReasons sets on each report the reason its machine gives for not
// having applied the unit's last change, if any.
func addReasons(ctx context.Context, client API, name string, reps []*api.UnitStatusReport) error {
	states, err := client.UnitStates(ctx, "", name)
	if err != nil {
		return failf("Error retrieving states of unit %s: %w", name, err)
	}
	reasons := map[string]string{}
	for _, s := range states {
		if s.Name == name && s.Reason != "" {
			reasons[s.MachineID] = s.Reason
		}
	}
	for _, r := range reps {
		r.Reason = reasons[r.MachineID]
	}
	return nil
}

// apiMessage is the API's own message in err when the API answered, else
// err's text.
func apiMessage(err error) string {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Error()
	}
	return err.Error()
}

// printStatus writes the reports' text; those of a global unit each under
// a machine header.
func printStatus(ctx context.Context, w io.Writer, client API, reps []*api.UnitStatusReport, global bool) error {
	var ips map[string]string
	if global {
		machines, err := client.Machines(ctx)
		if err != nil {
			return failf("Error retrieving list of active machines: %w", err)
		}
		ips = machineIPs(machines)
	}
	for i, r := range reps {
		if global {
			if i > 0 {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "==> machine %s <==\n", machineLegend(r.MachineID, ips[r.MachineID], false))
		}
		fmt.Fprint(w, r.Text)
		if !strings.HasSuffix(r.Text, "\n") {
			fmt.Fprintln(w)
		}
		if r.JournalError != "" {
			fmt.Fprintf(w, "Warning: no log lines: %s\n", r.JournalError)
		}
		if r.Reason != "" {
			fmt.Fprintf(w, "Failed: %s\n", r.Reason)
		}
	}
	return nil
}

func (c *cli) newJournalCommand() *cobra.Command {
	var (
		opts    api.JournalOptions
		sudo    bool
		sshPort int
	)
	cmd := &cobra.Command{
		Use:   "journal [--lines=N] [-f|--follow] [--output=STRING] UNIT",
		Short: "Print the journal of a unit in the cluster to stdout",
		Long: `Print the last log lines of a unit from the journal of its machine, as
"journalctl --unit" prints them; with --follow, keep printing new lines
until interrupted. The machine's own fleetd reads its journal and streams
it through the fleet API; no SSH is needed. A machine without journald
says so.

A global unit's journal is read on every machine that reports it, each
under a "==> machine <id>/<ip> <==" header; followed, the header is
repeated whenever the lines switch machine.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("One unit file must be provided.")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Lines < 0 {
				return usagef("--lines must not be negative, got %d", opts.Lines)
			}
			ctx := cmd.Context()
			client, err := c.api(ctx)
			if err != nil {
				return err
			}
			return journal(ctx, client, unit.MangleName(args[0]), opts, cmd.OutOrStdout())
		},
		ValidArgsFunction: c.completeOneUnit,
	}
	fs := cmd.Flags()
	fs.IntVarP(&opts.Lines, "lines", "n", defaultJournalLines, "Number of recent journal entries to display.")
	fs.BoolVarP(&opts.Follow, "follow", "f", false, "Continuously print new entries as they are appended to the journal.")
	fs.BoolVar(&opts.Follow, "f", false, "Shorthand for --follow")
	_ = fs.MarkHidden("f") // declared on the line above
	fs.StringVar(&opts.Output, "output", "short", "Output mode, as journalctl --output (short, cat, json, verbose, ...).")
	fs.BoolVar(&sudo, "sudo", false, "Accepted for compatibility; the machine's fleetd reads its journal.")
	fs.IntVar(&sshPort, "ssh-port", defaultSSHPort, "Accepted for compatibility; journal does not use SSH.")
	return cmd
}

// journal writes the journal of a unit to w: from its machine, or from
// every machine that reports a global unit.
func journal(ctx context.Context, client API, name string, opts api.JournalOptions, w io.Writer) error {
	u, err := client.Unit(ctx, name)
	if err != nil {
		return failf("Error retrieving unit %s: %w", name, err)
	}
	if u == nil {
		return failf("Unit %s does not exist.", name)
	}
	if !isGlobal(u) {
		if u.MachineID == "" || u.CurrentState == stateInactive {
			return failf("Unit %s does not appear to be running.", name)
		}
		if err := client.Journal(ctx, name, "", opts, w); err != nil {
			return failf("Unable to retrieve journal of unit %s: %s", name, apiMessage(err))
		}
		return nil
	}
	ids, err := reportingMachines(ctx, client, name)
	if err != nil {
		return failf("Error retrieving states of unit %s: %w", name, err)
	}
	if len(ids) == 0 {
		return failf("Unit %s does not appear to be running.", name)
	}
	machines, err := client.Machines(ctx)
	if err != nil {
		return failf("Error retrieving list of active machines: %w", err)
	}
	ips := machineIPs(machines)
	mux := &headerMux{w: w}
	if !opts.Follow {
		for _, id := range ids {
			hw := mux.writer(machineLegend(id, ips[id], false))
			err := client.Journal(ctx, name, id, opts, hw)
			if ferr := hw.flush(err == nil); err == nil {
				err = ferr
			}
			if err != nil {
				return failf("Unable to retrieve journal of unit %s on machine %s: %s", name, id, apiMessage(err))
			}
		}
		return nil
	}
	return followAll(ctx, client, name, ids, ips, opts, mux)
}

// followAll follows the journal of a unit on several machines at once;
// the first failure stops them all.
func followAll(ctx context.Context, client API, name string, ids []string, ips map[string]string,
	opts api.JournalOptions, mux *headerMux) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, id := range ids {
		hw := mux.writer(machineLegend(id, ips[id], false))
		wg.Go(func() {
			err := client.Journal(ctx, name, id, opts, hw)
			if ferr := hw.flush(false); err == nil {
				err = ferr
			}
			if err != nil {
				cancel(failf("Unable to retrieve journal of unit %s on machine %s: %s", name, id, apiMessage(err)))
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && ctx.Err() != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// headerMux interleaves the output of several machines on one writer by
// whole lines, writing "==> machine <legend> <==" whenever the machine
// changes, with a blank line before every header but the first.
type headerMux struct {
	mu   sync.Mutex
	w    io.Writer
	last *headerWriter // the writer of the last lines written
}

// writer returns the writer of one machine.
func (m *headerMux) writer(legend string) *headerWriter {
	return &headerWriter{mux: m, header: "==> machine " + legend + " <==\n"}
}

// headerWriter buffers a machine's output up to the end of its last
// complete line. It is used by one goroutine at a time.
type headerWriter struct {
	mux     *headerMux
	header  string
	pending []byte
	wrote   bool // the header was written at least once
}

func (h *headerWriter) Write(p []byte) (int, error) {
	h.pending = append(h.pending, p...)
	i := bytes.LastIndexByte(h.pending, '\n')
	if i < 0 {
		return len(p), nil
	}
	if err := h.emit(h.pending[:i+1]); err != nil {
		return 0, err
	}
	h.pending = append(h.pending[:0], h.pending[i+1:]...)
	return len(p), nil
}

// flush writes what remains after the last newline, ending it with one.
// When the machine sent nothing at all, emptyHeader writes its header
// alone, so that every machine read shows up.
func (h *headerWriter) flush(emptyHeader bool) error {
	if len(h.pending) == 0 {
		if h.wrote || !emptyHeader {
			return nil
		}
		return h.emit(nil)
	}
	rest := append(h.pending, '\n')
	h.pending = nil
	return h.emit(rest)
}

// emit writes whole lines under this machine's header.
func (h *headerWriter) emit(lines []byte) error {
	m := h.mux
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.last != h {
		if m.last != nil {
			if _, err := io.WriteString(m.w, "\n"); err != nil {
				return err
			}
		}
		if _, err := io.WriteString(m.w, h.header); err != nil {
			return err
		}
		m.last, h.wrote = h, true
	}
	if len(lines) == 0 {
		return nil
	}
	_, err := m.w.Write(lines)
	return err
}
