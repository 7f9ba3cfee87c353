package fleetctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/term"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/unit"
)

// defaultSSHPort is the port of --ssh-port.
const defaultSSHPort = 22

// sshFlags are the flags of the ssh command.
type sshFlags struct {
	machine      string
	unit         string
	forwardAgent bool
	port         int
}

func (c *cli) newSSHCommand() *cobra.Command {
	var f sshFlags
	cmd := &cobra.Command{
		Use:   "ssh [-A|--forward-agent] [--ssh-port=N] [--machine=ID|--unit=UNIT|MACHINE|UNIT] [COMMAND...]",
		Short: "Open interactive shell on a machine in the cluster",
		Long: `Open a shell on a machine of the cluster over SSH, or run COMMAND there
(everything after "--" when it is given) and exit with its status.

The machine is named by --machine (a machine ID or a prefix of one), by
--unit (the machine a unit runs on), or by the first argument, tried as
both. A global unit runs on several machines: COMMAND then runs on each
of them in turn under a "==> machine <id>/<ip> <==" header, and a shell
needs --machine.

Keys come from the ssh-agent at SSH_AUTH_SOCK; host keys are checked
against --known-hosts-file.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.machine != "" && f.unit != "" {
				return failf("Both machine and unit flags provided, please specify only one.")
			}
			ctx := cmd.Context()
			client, err := c.api(ctx)
			if err != nil {
				return err
			}
			targets, rest, err := c.sshTargets(ctx, client, f, args)
			if err != nil {
				return failf("Unable to proceed: %w", err)
			}
			command := strings.Join(trimToDashes(rest), " ")
			if command == "" {
				if len(targets) > 1 {
					return failf("Unable to proceed: global unit %s runs on %d machines; choose one with --machine",
						unit.MangleName(firstNonEmpty(f.unit, firstArg(args))), len(targets))
				}
				return c.sshShell(ctx, cmd, targets[0], f)
			}
			return c.sshRun(ctx, cmd, targets, command, f)
		},
		ValidArgsFunction: c.completeMachinesAndUnits,
	}
	fs := cmd.Flags()
	fs.SetInterspersed(false) // flags after the target belong to the remote command
	fs.StringVar(&f.machine, "machine", "", "Open SSH connection to a specific machine (ID or ID prefix).")
	fs.StringVar(&f.unit, "unit", "", "Open SSH connection to the machine running the given unit.")
	fs.BoolVarP(&f.forwardAgent, "forward-agent", "A", false, "Forward local ssh-agent to target machine.")
	fs.BoolVar(&f.forwardAgent, "A", false, "Shorthand for --forward-agent")
	_ = fs.MarkHidden("A") // declared on the line above
	fs.IntVar(&f.port, "ssh-port", defaultSSHPort, "Connect to remote hosts over SSH using this TCP port.")
	_ = cmd.RegisterFlagCompletionFunc("machine", c.completeMachines) // the flag exists
	_ = cmd.RegisterFlagCompletionFunc("unit", c.completeUnits)       // the flag exists
	return cmd
}

func firstArg(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// trimToDashes returns the arguments after "--" if there is one, else all.
func trimToDashes(args []string) []string {
	if i := slices.Index(args, "--"); i >= 0 {
		return args[i+1:]
	}
	return args
}

// sshTargets finds the machines the ssh command connects to and the
// arguments left for the remote command.
func (c *cli) sshTargets(ctx context.Context, client API, f sshFlags, args []string) ([]*api.Machine, []string, error) {
	machines, err := client.Machines(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list machines: %w", err)
	}
	switch {
	case f.machine != "":
		m, err := machineByPrefix(machines, f.machine)
		if err != nil {
			return nil, nil, err
		}
		if m == nil {
			return nil, nil, errors.New("could not find matching machine")
		}
		return []*api.Machine{m}, args, nil
	case f.unit != "":
		ms, err := unitMachines(ctx, client, machines, f.unit)
		if err != nil {
			return nil, nil, err
		}
		return ms, args, nil
	}
	if len(args) == 0 {
		return nil, nil, errors.New("one machine or unit must be provided")
	}
	lookup, rest := args[0], args[1:]
	m, merr := machineByPrefix(machines, lookup)
	ms, uerr := unitMachines(ctx, client, machines, lookup)
	var nf *unitNotFoundError
	switch {
	case m != nil && uerr == nil:
		return nil, nil, fmt.Errorf("ambiguous argument, both machine and unit found for `%s`.\n"+
			"Please use flag `--machine` or `--unit` to refine the search", lookup)
	case m != nil:
		return []*api.Machine{m}, rest, nil
	case uerr == nil:
		return ms, rest, nil
	case !errors.As(uerr, &nf):
		return nil, nil, uerr // the unit exists but cannot be reached
	case merr != nil:
		return nil, nil, merr
	}
	return nil, nil, errors.New("could not find matching unit or machine")
}

// machineByPrefix returns the machine whose ID starts with prefix; nil if
// none does, an error if several do.
func machineByPrefix(machines []*api.Machine, prefix string) (*api.Machine, error) {
	var found *api.Machine
	for _, m := range machines {
		if m == nil || !strings.HasPrefix(m.ID, prefix) {
			continue
		}
		if found != nil {
			return nil, errors.New("found more than one machine")
		}
		found = m
	}
	return found, nil
}

// unitNotFoundError is a unit name that is not in the registry.
type unitNotFoundError struct{ name string }

func (e *unitNotFoundError) Error() string { return fmt.Sprintf("Unit %s does not exist.", e.name) }

// unitMachines returns the machines a unit runs on: its placement, or
// for a global unit every machine that reports a state for it.
func unitMachines(ctx context.Context, client API, machines []*api.Machine, arg string) ([]*api.Machine, error) {
	name := unit.MangleName(arg)
	u, err := client.Unit(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("get unit %s: %w", name, err)
	}
	if u == nil {
		return nil, &unitNotFoundError{name: name}
	}
	byID := make(map[string]*api.Machine, len(machines))
	for _, m := range machines {
		if m != nil {
			byID[m.ID] = m
		}
	}
	var ids []string
	if isGlobal(u) {
		states, err := client.UnitStates(ctx, "", name)
		if err != nil {
			return nil, fmt.Errorf("get states of unit %s: %w", name, err)
		}
		for _, s := range states {
			if s != nil && s.MachineID != "" {
				ids = append(ids, s.MachineID)
			}
		}
	} else if u.MachineID != "" {
		ids = []string{u.MachineID}
	}
	var out []*api.Machine
	for _, id := range slices.Compact(slices.Sorted(slices.Values(ids))) {
		if m := byID[id]; m != nil && m.PrimaryIP != "" {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return nil, &unitNotRunningError{name: name}
	}
	return out, nil
}

// unitNotRunningError is a unit that runs on no machine fleetctl can reach.
type unitNotRunningError struct{ name string }

func (e *unitNotRunningError) Error() string {
	return fmt.Sprintf("Unit %s does not appear to be running.", e.name)
}

// sshRun runs command on each target in turn; the exit status is the
// first non-zero remote one.
func (c *cli) sshRun(ctx context.Context, cmd *cobra.Command, targets []*api.Machine, command string, f sshFlags) error {
	status := ExitOK
	for i, m := range targets {
		if len(targets) > 1 {
			if i > 0 {
				fmt.Fprintln(cmd.OutOrStdout())
			}
			fmt.Fprintf(cmd.OutOrStdout(), "==> machine %s <==\n", machineLegend(m.ID, m.PrimaryIP, false))
		}
		client, err := c.dialSSH(ctx, net.JoinHostPort(m.PrimaryIP, strconv.Itoa(f.port)), false, f.forwardAgent)
		if err != nil {
			return failf("Failed building SSH client: %w", err)
		}
		var stdin io.Reader
		if len(targets) == 1 {
			stdin = c.deps.Stdin
		}
		code, err := runSession(ctx, client, f.forwardAgent, stdin, cmd.OutOrStdout(), cmd.ErrOrStderr(),
			func(s *ssh.Session) (func(), error) { return func() {}, s.Start(command) })
		client.Close()
		if err != nil {
			return failf("Failed running command over SSH: %w", err)
		}
		if status == ExitOK {
			status = code
		}
	}
	if status != ExitOK {
		return exitStatus(status)
	}
	return nil
}

// sshShell opens an interactive shell on m, with a pseudo-terminal when
// stdin is a terminal.
func (c *cli) sshShell(ctx context.Context, cmd *cobra.Command, m *api.Machine, f sshFlags) error {
	client, err := c.dialSSH(ctx, net.JoinHostPort(m.PrimaryIP, strconv.Itoa(f.port)), false, f.forwardAgent)
	if err != nil {
		return failf("Failed building SSH client: %w", err)
	}
	defer client.Close()
	code, err := runSession(ctx, client, f.forwardAgent, c.deps.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr(),
		func(s *ssh.Session) (func(), error) {
			restore := func() {}
			if c.deps.IsTerminal(c.deps.Stdin) {
				var err error
				if restore, err = c.requestPTY(s); err != nil {
					return nil, err
				}
			}
			if err := s.Shell(); err != nil {
				restore()
				return nil, err
			}
			return restore, nil
		})
	if err != nil {
		return failf("Failed opening shell over SSH: %w", err)
	}
	if code != ExitOK {
		return exitStatus(code)
	}
	return nil
}

// requestPTY asks for a remote pseudo-terminal the size of the local one,
// puts the local terminal in raw mode and follows window size changes.
// restore undoes both.
func (c *cli) requestPTY(s *ssh.Session) (restore func(), err error) {
	termName := c.deps.Getenv("TERM")
	if termName == "" {
		termName = "xterm"
	}
	width, height := 80, 24
	out, outIsFile := c.deps.Stdout.(*os.File)
	if outIsFile {
		if w, h, err := term.GetSize(int(out.Fd())); err == nil {
			width, height = w, h
		}
	}
	modes := ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 14400, ssh.TTY_OP_OSPEED: 14400}
	if err := s.RequestPty(termName, height, width, modes); err != nil {
		return nil, fmt.Errorf("request pseudo-terminal: %w", err)
	}
	in, ok := c.deps.Stdin.(*os.File)
	if !ok {
		return func() {}, nil
	}
	state, err := term.MakeRaw(int(in.Fd()))
	if err != nil {
		return nil, fmt.Errorf("set terminal to raw mode: %w", err)
	}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-winch:
				if !outIsFile {
					continue
				}
				if w, h, err := term.GetSize(int(out.Fd())); err == nil {
					_ = s.WindowChange(h, w) // best effort: the session may be ending
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(winch)
		close(done)
		_ = term.Restore(int(in.Fd()), state) // nothing more can be done if it fails
	}, nil
}

// runSession opens a session on client, wires its standard streams,
// starts it with start and waits for it, then runs the cleanup start
// returned. It returns the remote exit
// status; err is for sessions that could not run or ended without one.
// The session is closed when ctx ends.
func runSession(ctx context.Context, client *sshClient, forwardAgent bool, stdin io.Reader, stdout, stderr io.Writer,
	start func(*ssh.Session) (cleanup func(), err error)) (int, error) {
	s, err := client.NewSession()
	if err != nil {
		return ExitError, fmt.Errorf("open session: %w", err)
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	if forwardAgent {
		if err := agent.RequestAgentForwarding(s); err != nil {
			return ExitError, fmt.Errorf("request agent forwarding: %w", err)
		}
	}
	s.Stdin, s.Stdout, s.Stderr = stdin, stdout, stderr
	cleanup, err := start(s)
	if err != nil {
		return ExitError, err
	}
	err = s.Wait()
	cleanup()
	var ee *ssh.ExitError
	switch {
	case err == nil:
		return ExitOK, nil
	case errors.As(err, &ee):
		return ee.ExitStatus(), nil
	case ctx.Err() != nil:
		return ExitError, ctx.Err()
	}
	return ExitError, err
}

func (c *cli) newFDForwardCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "fd-forward SOCKET",
		Short: "Proxy stdin and stdout to a unix domain socket",
		Long: `Copy standard input to the unix domain socket SOCKET and what the socket
sends to standard output, until the socket closes. --tunnel runs it on the
bastion to reach a fleet API that listens on a unix socket.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("Provide a single argument: location of UNIX domain socket")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return fdForward(cmd.Context(), args[0], c.deps.Stdin, cmd.OutOrStdout())
		},
	}
}

// fdForward copies in to the unix socket at path and the socket to out,
// until the socket has nothing more to send or ctx ends.
func fdForward(ctx context.Context, path string, in io.Reader, out io.Writer) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return failf("Unable to connect to UNIX domain socket: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	go func() {
		// Ends at EOF of in, or with an error once conn is closed.
		if _, err := io.Copy(conn, in); err == nil {
			_ = conn.(*net.UnixConn).CloseWrite() // the peer sees EOF; a failure means it is gone
		}
	}()
	if _, err := io.Copy(out, conn); err != nil && ctx.Err() == nil {
		return failf("Error forwarding from UNIX domain socket: %w", err)
	}
	return nil
}

func newVerifyCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "verify UNIT",
		Short:  "DEPRECATED: No longer works",
		Hidden: true,
		Args:   cobra.ArbitraryArgs,
		RunE: func(*cobra.Command, []string) error {
			return &exitError{code: ExitUsage,
				msg: "WARNING: The signed/verified units feature is DEPRECATED and cannot be used."}
		},
	}
}
