package fleetctl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fleet-next/fleet/api"
)

// Defaults of the global flags (spec §2.1).
const (
	defaultEndpoint       = "unix:///var/run/fleet.sock"
	defaultRequestTimeout = 3 * time.Second
	defaultSSHTimeout     = 10 * time.Second
	defaultSSHUser        = "core"
	defaultKnownHostsFile = "~/.fleetctl/known_hosts"
	defaultEtcdKeyPrefix  = "/_coreos.com/fleet/"
	envPrefix             = "FLEETCTL_"
)

// driver is the --driver value: how fleetctl reaches the cluster.
type driver int

const (
	driverAPI  driver = iota // the fleet HTTP API (the only one supported)
	driverEtcd               // fleet's direct etcd access, refused
)

func (d driver) String() string {
	switch d {
	case driverAPI:
		return "API"
	case driverEtcd:
		return "etcd"
	}
	return fmt.Sprintf("driver(%d)", int(d))
}

// driverValue is the --driver flag: "API" or "etcd", case-insensitive.
// Other values are kept and refused when a command needs the cluster, as
// fleet did, so that help and version still work.
type driverValue struct{ raw *string }

func (v driverValue) String() string {
	if v.raw == nil {
		return ""
	}
	return *v.raw
}

func (v driverValue) Set(s string) error {
	*v.raw = s
	return nil
}

func (v driverValue) Type() string { return "string" }

// parseDriver validates a --driver value.
func parseDriver(s string) (driver, error) {
	switch strings.ToLower(s) {
	case "api":
		return driverAPI, nil
	case "etcd":
		return driverEtcd, nil
	}
	return 0, fmt.Errorf("unrecognized driver %q", s)
}

// globalFlags holds the values of the flags every command accepts.
type globalFlags struct {
	endpoint              string
	driver                string
	etcdKeyPrefix         string
	requestTimeout        time.Duration
	debug                 bool
	keyFile               string
	certFile              string
	caFile                string
	tunnel                string
	sshUser               string
	sshTimeout            time.Duration
	knownHostsFile        string
	strictHostKeyChecking bool
	experimentalAPI       bool
}

// cli is the state of one command line: its dependencies, the parsed
// global flags, the API client (made on first use) and what must be
// released when the command ends (SSH tunnels).
type cli struct {
	deps    Deps
	global  globalFlags
	log     *slog.Logger
	client  API
	closers []func() error
}

func newCLI(deps Deps) *cli {
	return &cli{deps: deps.withDefaults(), log: slog.New(slog.DiscardHandler)}
}

// close releases what the command opened, last first.
func (c *cli) close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		if err := c.closers[i](); err != nil {
			c.log.Debug("release resource", "err", err)
		}
	}
	c.closers = nil
}

// rootCommand builds the fleetctl command tree, meant for one Execute.
func (c *cli) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "fleetctl",
		Short:         "fleetctl is a command-line interface to fleet, the cluster-wide CoreOS init system.",
		Version:       c.deps.Version,
		Args:          cobra.ArbitraryArgs,
		SilenceErrors: true,
		SilenceUsage:  true,
		CompletionOptions: cobra.CompletionOptions{
			DisableDefaultCmd: true, // "completion" is ours: see newCompletionCommand
		},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return c.setup(cmd)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			return unknownCommand(cmd, args[0])
		},
	}
	root.SetIn(c.deps.Stdin)
	root.SetOut(c.deps.Stdout)
	root.SetErr(c.deps.Stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &usageError{msg: err.Error()}
	})
	root.SetVersionTemplate("fleetctl version {{.Version}}\n")
	root.SetHelpFunc(func(cmd *cobra.Command, _ []string) {
		fmt.Fprint(cmd.OutOrStdout(), renderHelp(cmd))
	})
	root.Flags().BoolP("version", "v", false, "Print the version and exit")
	c.global.register(root.PersistentFlags())

	help := newHelpCommand()
	root.SetHelpCommand(help)
	root.AddCommand(
		c.newSubmitCommand(),
		c.newLoadCommand(),
		c.newStartCommand(),
		c.newStopCommand(),
		c.newUnloadCommand(),
		c.newDestroyCommand(),
		c.newRestartCommand(),
		c.newListUnitsCommand(),
		c.newListUnitFilesCommand(),
		c.newListMachinesCommand(),
		c.newStatusCommand(),
		c.newJournalCommand(),
		c.newCatCommand(),
		c.newSSHCommand(),
		c.newFDForwardCommand(),
		newVerifyCommand(),
		newCompletionCommand(),
		newVersionCommand(c.deps.Version),
		c.newACLCommand(),
		c.newWhoAmICommand(),
		c.newAuditCommand(),
	)
	root.SetGlobalNormalizationFunc(normalizeFlagName)
	addPrefixAliases(append(root.Commands(), help))
	return root
}

// register declares the global flags on fs.
func (g *globalFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&g.endpoint, "endpoint", defaultEndpoint,
		"Location of the fleet API (http://, https:// or unix://). Only the first of a comma-separated list is used.")
	g.driver = driverAPI.String()
	fs.Var(driverValue{&g.driver}, "driver",
		"How to reach the cluster. Only \"API\" is supported; \"etcd\" is refused.")
	fs.StringVar(&g.etcdKeyPrefix, "etcd-key-prefix", defaultEtcdKeyPrefix,
		"Keyspace of fleet data in etcd. Only used by the etcd driver, which is not supported; accepted for compatibility.")
	g.requestTimeout = defaultRequestTimeout
	fs.Var(durationValue{&g.requestTimeout}, "request-timeout",
		"Amount of time allowed for a single request to the fleet API, in seconds (3.0) or as a duration (3s)")
	fs.BoolVar(&g.debug, "debug", false, "Print out more debug information to stderr")
	fs.StringVar(&g.keyFile, "key-file", "", "Location of the client TLS key file")
	fs.StringVar(&g.certFile, "cert-file", "", "Location of the client TLS certificate file")
	fs.StringVar(&g.caFile, "ca-file", "", "Location of the TLS CA file used to verify the server")
	fs.StringVar(&g.tunnel, "tunnel", "",
		"Reach the fleet API and the machines through an SSH bastion host[:port] (port 22 if not given)")
	fs.StringVar(&g.sshUser, "ssh-username", defaultSSHUser, "Username to use when connecting over SSH")
	g.sshTimeout = defaultSSHTimeout
	fs.Var(durationValue{&g.sshTimeout}, "ssh-timeout",
		"Amount of time allowed to establish an SSH connection, in seconds (10.0) or as a duration (10s)")
	fs.StringVar(&g.knownHostsFile, "known-hosts-file", defaultKnownHostsFile,
		"File used to store remote machine fingerprints. Ignored if strict host key checking is disabled.")
	fs.BoolVar(&g.strictHostKeyChecking, "strict-host-key-checking", true,
		"Verify host keys presented by remote machines before initiating SSH connections.")
	fs.BoolVar(&g.experimentalAPI, "experimental-api", true, "Deprecated and ignored: the fleet API is always used.")
	_ = fs.MarkHidden("experimental-api") // declared on the line above
}

// normalizeFlagName maps fleet's deprecated flag spellings to the current ones.
func normalizeFlagName(_ *pflag.FlagSet, name string) pflag.NormalizedName {
	switch name {
	case "etcd-keyfile":
		name = "key-file"
	case "etcd-certfile":
		name = "cert-file"
	case "etcd-cafile":
		name = "ca-file"
	}
	return pflag.NormalizedName(name)
}

// setup runs before every subcommand: it fills global flags from the
// environment and configures debug logging.
func (c *cli) setup(cmd *cobra.Command) error {
	if cmd.Root().PersistentFlags().Changed("experimental-api") {
		fmt.Fprintln(c.deps.Stderr, "WARNING: --experimental-api is deprecated and ignored: the fleet API is always used")
	}
	if err := applyEnv(cmd.Root().PersistentFlags(), c.deps.Getenv); err != nil {
		return err
	}
	if c.global.debug {
		c.log = slog.New(slog.NewTextHandler(c.deps.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// envName is the environment variable that sets a global flag.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnv sets every flag of fs not given on the command line from its
// FLEETCTL_<NAME> environment variable, when that is non-empty.
func applyEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		key := envName(f.Name)
		v := getenv(key)
		if v == "" {
			return
		}
		if serr := f.Value.Set(v); serr != nil {
			err = usagef("invalid value %q for %s: %v", v, key, serr)
			return
		}
		f.Changed = true
	})
	return err
}

// api returns the API client, making it on first use: through an SSH
// tunnel when --tunnel is set.
func (c *cli) api(ctx context.Context) (API, error) {
	if c.client != nil {
		return c.client, nil
	}
	d, err := parseDriver(c.global.driver)
	if err != nil {
		return nil, failf("Unable to initialize client: %w", err)
	}
	if d == driverEtcd {
		return nil, failf("Unable to initialize client: the etcd driver is unsupported: " +
			"fleetctl only talks to the fleet API (--driver=API, --endpoint)")
	}
	endpoint := c.global.endpoint
	if first, _, many := strings.Cut(endpoint, ","); many {
		fmt.Fprintf(c.deps.Stderr, "WARNING: multiple endpoints given, only the first one is used: %s\n", first)
		endpoint = first
	}
	readTLS := func(path string) ([]byte, error) { return c.deps.ReadFile(path, maxTLSFileBytes) }
	tlsConf, err := tlsConfig(readTLS, c.global.keyFile, c.global.certFile, c.global.caFile)
	if err != nil {
		return nil, failf("Unable to initialize client: %w", err)
	}
	host := ""
	if c.global.tunnel != "" {
		// The remote API answers to its own name, not to the tunnel's
		// local end.
		if u, err := url.Parse(endpoint); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
			host = u.Host
		}
		endpoint, tlsConf, err = c.openAPITunnel(ctx, endpoint, tlsConf)
		if err != nil {
			return nil, failf("Unable to initialize client: %w", err)
		}
	}
	client, err := c.deps.NewAPI(endpoint, api.ClientOptions{
		Timeout: c.global.requestTimeout,
		TLS:     tlsConf,
		Logger:  c.log,
		Host:    host,
	})
	if err != nil {
		return nil, failf("Unable to initialize client: %w", err)
	}
	c.client = client
	return client, nil
}

// tlsConfig builds the client TLS configuration from PEM files; nil when
// no file is given. The server certificate is always verified.
func tlsConfig(readFile func(string) ([]byte, error), keyFile, certFile, caFile string) (*tls.Config, error) {
	if keyFile == "" && certFile == "" && caFile == "" {
		return nil, nil
	}
	if (keyFile == "") != (certFile == "") {
		return nil, fmt.Errorf("load client certificate: --key-file and --cert-file must be given together")
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if certFile != "" {
		certPEM, err := readFile(certFile)
		if err != nil {
			return nil, fmt.Errorf("read certificate: %w", err)
		}
		keyPEM, err := readFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("read key: %w", err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
		// Sent whatever CAs the server names: a certificate the server does
		// not trust fails the handshake with a clear error, rather than the
		// caller going on anonymously.
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	if caFile != "" {
		caPEM, err := readFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("load CA file %s: no PEM certificate found", caFile)
		}
		conf.RootCAs = pool
	}
	return conf, nil
}

// durationValue is a duration flag that also accepts fleet's plain
// seconds, e.g. "3.0" or "0.5".
type durationValue struct{ d *time.Duration }

func (v durationValue) String() string {
	if v.d == nil {
		return ""
	}
	return v.d.String()
}

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		secs, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil {
			return fmt.Errorf("parse %q: want seconds (3.0) or a duration (3s)", s)
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d <= 0 {
		return fmt.Errorf("parse %q: must be positive", s)
	}
	*v.d = d
	return nil
}

func (v durationValue) Type() string { return "duration" }

// unknownCommand is the usage error for an argument that names no command.
func unknownCommand(cmd *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, cmd.CommandPath())
	if s := cmd.SuggestionsFor(name); len(s) > 0 {
		msg += fmt.Sprintf("; did you mean %s?", strings.Join(s, " or "))
	}
	return &usageError{msg: msg}
}

// addPrefixAliases lets every unambiguous prefix of a visible command's
// name select that command ("list-m" for list-machines), as fleetctl
// always allowed. Hidden commands take part only by their full name. It
// must see the complete list of commands.
func addPrefixAliases(cmds []*cobra.Command) {
	visible := slices.DeleteFunc(slices.Clone(cmds), func(c *cobra.Command) bool { return c.Hidden })
	for _, cmd := range visible {
		name := cmd.Name()
		for n := 1; n < len(name); n++ {
			prefix := name[:n]
			matches := 0
			for _, other := range visible {
				if strings.HasPrefix(other.Name(), prefix) {
					matches++
				}
			}
			if matches == 1 {
				cmd.Aliases = append(cmd.Aliases, prefix)
			}
		}
	}
}
