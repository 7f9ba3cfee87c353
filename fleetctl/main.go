package fleetctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/fleet-next/fleet/api"
)

// Exit statuses of fleetctl. A command run over SSH exits with the remote
// command's status instead, and status exits with systemctl's
// ExitNotRunning when a unit is not active.
const (
	ExitOK         = 0 // the command did what was asked
	ExitError      = 1 // operational failure: API error, timeout, invalid unit, ...
	ExitUsage      = 2 // unknown command or flag, wrong number of arguments
	ExitNotRunning = 3 // status: a unit is loaded but not active, as systemctl status says
)

// API is the part of the fleet HTTP API client that fleetctl uses.
// *api.Client implements it.
type API interface {
	// Units lists every unit in the cluster.
	Units(ctx context.Context) ([]*api.Unit, error)
	// Unit returns one unit, or nil and no error when it does not exist.
	Unit(ctx context.Context, name string) (*api.Unit, error)
	// CreateUnit creates u, or replaces it when its options differ.
	CreateUnit(ctx context.Context, u *api.Unit) error
	// SetUnitTargetState changes the desired state of an existing unit.
	SetUnitTargetState(ctx context.Context, name, desiredState string) error
	// DestroyUnit removes a unit; api.IsNotFound(err) when it does not exist.
	DestroyUnit(ctx context.Context, name string) error
	// UnitStates lists machine reports; empty filters match everything.
	UnitStates(ctx context.Context, machineID, unitName string) ([]*api.UnitState, error)
	// Machines lists the live machines.
	Machines(ctx context.Context) ([]*api.Machine, error)
	// UnitStatus asks one machine (machineID, or the unit's placement when
	// empty) what systemd says about a unit.
	UnitStatus(ctx context.Context, name, machineID string) (*api.UnitStatusReport, error)
	// Journal streams the journal of a unit on one machine (as UnitStatus)
	// to w until it is written, or with opts.Follow until ctx ends.
	Journal(ctx context.Context, name, machineID string, opts api.JournalOptions, w io.Writer) error
}

var _ API = (*api.Client)(nil)

// Deps is everything fleetctl takes from its environment. Zero fields get
// the process defaults (see withDefaults).
type Deps struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Version is printed by "fleetctl version" and --version.
	Version string
	// Getenv reads the environment: FLEETCTL_* defaults of global flags,
	// SSH_AUTH_SOCK, HOME and TERM.
	Getenv func(string) string
	// NewAPI makes the API client for an endpoint; nil uses api.NewClient.
	NewAPI func(endpoint string, opts api.ClientOptions) (API, error)
	// ReadFile reads a local file of at most limit bytes: unit files
	// (unit.MaxContentBytes) and TLS material. nil reads regular files
	// only, never more than limit+1 bytes, and never blocks on a FIFO or
	// a device (readRegularFile).
	ReadFile func(path string, limit int64) ([]byte, error)
	// Sleep waits between polls of the cluster state and returns early with
	// ctx's error when ctx ends; nil uses a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// IsTerminal reports whether one of Stdin, Stdout or Stderr is a
	// terminal; nil checks the file descriptor of an *os.File.
	IsTerminal func(f any) bool
}

func (d Deps) withDefaults() Deps {
	if d.Stdin == nil {
		d.Stdin = os.Stdin
	}
	if d.Stdout == nil {
		d.Stdout = os.Stdout
	}
	if d.Stderr == nil {
		d.Stderr = os.Stderr
	}
	if d.Version == "" {
		d.Version = "dev"
	}
	if d.Getenv == nil {
		d.Getenv = os.Getenv
	}
	if d.NewAPI == nil {
		d.NewAPI = newHTTPClient
	}
	if d.ReadFile == nil {
		d.ReadFile = readRegularFile
	}
	if d.Sleep == nil {
		d.Sleep = sleep
	}
	if d.IsTerminal == nil {
		d.IsTerminal = isTerminalFile
	}
	return d
}

func newHTTPClient(endpoint string, opts api.ClientOptions) (API, error) {
	c, err := api.NewClient(endpoint, opts)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// isTerminalFile reports whether f is an *os.File open on a terminal.
func isTerminalFile(f any) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// Main runs the command line args (without the program name) and returns
// the process exit status. It is the only place that turns errors into
// messages and exit statuses.
func Main(ctx context.Context, args []string, deps Deps) int {
	c := newCLI(deps)
	root := c.rootCommand()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	c.close()
	return report(c.deps.Stderr, cmd, err)
}

// report prints err once on w and returns the exit status for it.
func report(w io.Writer, cmd *cobra.Command, err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(w, ee.msg)
		}
		return ee.code
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(w, "Error: %s\n", ue.msg)
		path := "fleetctl"
		if cmd != nil && cmd.HasParent() && cmd.Name() != "help" {
			path = cmd.CommandPath()
		}
		fmt.Fprintf(w, "Run '%s --help' for usage.\n", path)
		return ExitUsage
	}
	fmt.Fprintf(w, "Error: %v\n", err)
	return ExitError
}

// usageError is a malformed command line: exit status 2.
type usageError struct {
	msg string
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitError carries the exact text fleetctl prints on stderr for a failed
// command (nothing when msg is empty), the exit status, and the cause for
// errors.Is / errors.As.
type exitError struct {
	code int
	msg  string
	err  error
}

func (e *exitError) Error() string {
	if e.msg == "" {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.msg
}

func (e *exitError) Unwrap() error { return e.err }

// failf returns an exitError with status 1 and the formatted message; a
// %w verb in format makes the wrapped error its cause.
func failf(format string, args ...any) error {
	wrapped := fmt.Errorf(format, args...)
	return &exitError{code: ExitError, msg: wrapped.Error(), err: wrapped}
}

// exitStatus ends a command with status code and nothing more on stderr:
// the command already said what happened (remote command, status).
func exitStatus(code int) error {
	return &exitError{code: code}
}
