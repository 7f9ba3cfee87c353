package fleetctl

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
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
	envPrefix             = "FLEETCTL_"
)

// globalFlags holds the values of the flags every command accepts.
type globalFlags struct {
	endpoint       string
	requestTimeout time.Duration
	debug          bool
	keyFile        string
	certFile       string
	caFile         string
}

// cli is the state of one command tree: its dependencies, the parsed
// global flags and the API client, made on first use.
type cli struct {
	deps   Deps
	global globalFlags
	log    *slog.Logger
	client API
}

// NewRootCommand builds the fleetctl command tree. The tree is meant for one
// Execute; build a new one per command line.
func NewRootCommand(deps Deps) *cobra.Command {
	c := &cli{deps: deps.withDefaults(), log: slog.New(slog.DiscardHandler)}
	root := &cobra.Command{
		Use:               "fleetctl",
		Short:             "fleetctl is a command-line interface to fleet, the cluster-wide CoreOS init system.",
		Version:           c.deps.Version,
		Args:              cobra.ArbitraryArgs,
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
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
		c.newListUnitsCommand(),
		c.newListUnitFilesCommand(),
		c.newListMachinesCommand(),
		c.newCatCommand(),
		newVersionCommand(c.deps.Version),
	)
	root.SetGlobalNormalizationFunc(normalizeFlagName)
	addPrefixAliases(append(root.Commands(), help))
	return root
}

// register declares the global flags on fs.
func (g *globalFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&g.endpoint, "endpoint", defaultEndpoint,
		"Location of the fleet API (http://, https:// or unix://). Only the first of a comma-separated list is used.")
	g.requestTimeout = defaultRequestTimeout
	fs.Var(durationValue{&g.requestTimeout}, "request-timeout",
		"Amount of time allowed for a single request to the fleet API, in seconds (3.0) or as a duration (3s)")
	fs.BoolVar(&g.debug, "debug", false, "Print out more debug information to stderr")
	fs.StringVar(&g.keyFile, "key-file", "", "Location of the client TLS key file")
	fs.StringVar(&g.certFile, "cert-file", "", "Location of the client TLS certificate file")
	fs.StringVar(&g.caFile, "ca-file", "", "Location of the TLS CA file used to verify the server")
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
		if serr := fs.Set(f.Name, v); serr != nil {
			err = usagef("invalid value %q for %s: %v", v, key, serr)
		}
	})
	return err
}

// api returns the API client, making it on first use.
func (c *cli) api() (API, error) {
	if c.client != nil {
		return c.client, nil
	}
	endpoint := c.global.endpoint
	if first, _, many := strings.Cut(endpoint, ","); many {
		fmt.Fprintf(c.deps.Stderr, "WARNING: multiple endpoints given, only the first one is used: %s\n", first)
		endpoint = first
	}
	tlsConf, err := tlsConfig(c.deps.ReadFile, c.global.keyFile, c.global.certFile, c.global.caFile)
	if err != nil {
		return nil, failf("Unable to initialize client: %w", err)
	}
	client, err := c.deps.NewAPI(endpoint, api.ClientOptions{
		Timeout: c.global.requestTimeout,
		TLS:     tlsConf,
		Logger:  c.log,
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

// addPrefixAliases lets every unambiguous prefix of a command name select
// that command ("list-m" for list-machines), as fleetctl always allowed.
// It must see the complete list of commands.
func addPrefixAliases(cmds []*cobra.Command) {
	for _, cmd := range cmds {
		name := cmd.Name()
		for n := 1; n < len(name); n++ {
			prefix := name[:n]
			matches := 0
			for _, other := range cmds {
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
