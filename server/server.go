package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fleet-next/fleet/agent"
	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/engine"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/systemd"
	"github.com/fleet-next/fleet/systemd/launch"
	"github.com/fleet-next/fleet/unit"
)

// Options are the process-level settings of Run that are not configuration.
type Options struct {
	// Dev runs a whole one-host cluster: embedded etcd, engine, agent, API,
	// and a private systemd --user if no manager is reachable.
	Dev     bool
	Version string
	Logger  *slog.Logger
	// Stdout receives the fleetctl endpoint line in dev mode.
	Stdout io.Writer
	// APIListenSet says api_listen was configured explicitly (dev mode
	// otherwise listens on a socket in its data directory).
	APIListenSet bool
	// DataDirSet says data_dir was configured explicitly (dev mode
	// otherwise uses a temporary directory removed at exit).
	DataDirSet bool
	// Reload delivers a signal whenever the configuration is to be re-read
	// (SIGHUP): LoadConfig is called and metadata and verbosity are
	// applied; other changed keys are logged as needing a restart.
	Reload <-chan os.Signal
	// LoadConfig re-reads the configuration file and environment; nil
	// disables reloading.
	LoadConfig func() (Config, error)
	// Level is the logger's level, changed when a reload changes
	// verbosity; nil leaves it alone.
	Level *slog.LevelVar
}

// Run runs fleetd until ctx ends, then shuts down: with shutdown_purge it
// unloads this host's units and leaves the cluster; without, it leaves its
// units running for the next fleetd to adopt.
func Run(ctx context.Context, cfg Config, opts Options) (err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	loaded := cfg // as configured, before the run-time defaults below
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	stopCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	}

	if opts.Dev && !opts.DataDirSet {
		dir, err := os.MkdirTemp("", "fleetd-dev-")
		if err != nil {
			return fmt.Errorf("create dev data dir: %w", err)
		}
		cfg.DataDir = dir
		cleanups = append(cleanups, func() { _ = os.RemoveAll(dir) })
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if opts.Dev && !opts.APIListenSet {
		cfg.APIListen = []string{"unix://" + filepath.Join(cfg.DataDir, "fleet.sock")}
	}
	if opts.Dev {
		e, err := registry.StartEmbedded(ctx, registry.EmbeddedOptions{Dir: filepath.Join(cfg.DataDir, "etcd"), Logger: log})
		if err != nil {
			return err
		}
		cleanups = append(cleanups, e.Close)
		cfg.EtcdServers = []string{e.Endpoint()}
	}

	machineID, err := resolveMachineID(cfg, opts.Dev)
	if err != nil {
		return err
	}
	instance, err := instanceToken(cfg.DataDir)
	if err != nil {
		return err
	}
	if cfg.PublicIP == "" {
		cfg.PublicIP = detectPublicIP()
	}

	sd, unitsDir, stopSD, err := connectSystemd(ctx, cfg, opts.Dev, log)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, stopSD)
	cfg.UnitsDirectory = unitsDir
	logConfig(log, cfg, machineID)

	metrics := NewMetrics(opts.Version)
	cli, err := registry.Connect(registry.ConnectConfig{Endpoints: cfg.EtcdServers, KeyFile: cfg.EtcdKeyFile,
		CertFile: cfg.EtcdCertFile, CAFile: cfg.EtcdCAFile, Username: cfg.EtcdUsername, Password: cfg.EtcdPassword,
		DialTimeout: 5 * time.Second, Observer: metrics.Registry()})
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() { _ = cli.Close() })
	reg := registry.New(cli, cfg.EtcdKeyPrefix, log.With("component", "registry"))

	me := unit.Machine{ID: machineID, PublicIP: cfg.PublicIP, Metadata: cfg.Metadata, Version: opts.Version}
	pres := &presence{reg: reg, machine: me, instance: instance, ttl: cfg.AgentTTL, log: log.With("component", "presence")}
	ag := agent.New(reg2agent{reg: reg, pres: pres}, reg2agent{reg: reg, pres: pres}, sd, agent.Config{
		MachineID: machineID, Logger: log.With("component", "agent"), Metrics: metrics.Agent()})
	sdNotify := notifier{log: log}
	var readyOnce sync.Once
	pres.onLease = func() {
		ag.Republish()
		readyOnce.Do(func() { sdNotify.notify("READY=1\nSTATUS=registered as machine " + machineID) })
	}

	// API first, so that clients get 503 (not connection refused) while
	// the machine registers.
	handler := api.NewHandler(reg, api.Options{Version: opts.Version, TokenLimit: cfg.TokenLimit,
		Logger: log.With("component", "api"), Ready: pres.Ready, Metrics: metrics.Handler(),
		MachineID: machineID, Local: newLocalUnits(machineID, sd), Stopping: ctx.Done()})
	listeners, activated, err := openAPIListeners(cfg.APIListen, opts.APIListenSet, log)
	if err != nil {
		return err
	}
	servers := serveAPI(listeners, activated, metrics.API(handler), log)
	cleanups = append(cleanups, func() {
		sctx, cancel := stopCtx()
		defer cancel()
		for _, s := range servers {
			_ = s.Shutdown(sctx)
		}
	})

	// Other machines forward unit status and journal requests to this URL;
	// set before presence runs, so the first registration publishes it.
	pres.machine.APIURL = publishedAPIURL(apiAddrs(listeners), cfg.PublicIP)

	compCtx, stopComponents := context.WithCancel(ctx)
	defer stopComponents()
	var wg sync.WaitGroup
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(compCtx); err != nil {
				log.Error("component stopped", "component", name, "err", err)
			}
		}()
	}
	run("presence", pres.run)
	run("agent", ag.Run)
	if !cfg.DisableEngine {
		eng := engine.New(reg2engine{reg: reg, pres: pres}, engine.Config{
			MachineID: machineID, ReconcileInterval: cfg.EngineReconcile, LossGrace: cfg.AgentTTL / 2,
			MaxMovesPerRound: 1000, Logger: log.With("component", "engine"), Metrics: metrics.Engine()})
		run("engine", eng.Run)
	}
	if opts.Dev && opts.Stdout != nil {
		fmt.Fprintf(opts.Stdout, "fleetd is running a one-host cluster (machine %s).\nUse it with:\n\n    fleetctl --endpoint %s list-machines\n\n",
			unit.ShortID(machineID), listeners[0].addr)
	}
	if wd, err := watchdogInterval(); err != nil {
		log.Warn("watchdog disabled", "err", err)
	} else if wd > 0 {
		// Pinged while the presence loop makes progress: a stuck loop gets
		// fleetd restarted, a store outage does not.
		healthy := func() bool { return pres.alive(2*cfg.AgentTTL + wd) }
		run("watchdog", func(ctx context.Context) error {
			runWatchdog(ctx, wd, healthy, sdNotify.notify)
			return nil
		})
	}
	if opts.LoadConfig != nil && opts.Reload != nil {
		rl := &reloader{running: loaded, load: opts.LoadConfig, level: opts.Level, pres: pres, log: log}
		run("reload", func(ctx context.Context) error {
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-opts.Reload:
					rl.reload()
				}
			}
		})
	}
	log.Info("fleetd started", "machine", machineID)

	<-ctx.Done()
	sdNotify.notify("STOPPING=1")
	log.Info("fleetd stopping", "purge", cfg.ShutdownPurge)
	stopComponents()
	wg.Wait()
	if cfg.ShutdownPurge {
		pctx, cancel := stopCtx()
		defer cancel()
		if err := ag.Purge(pctx); err != nil {
			log.Error("unloading units at shutdown", "err", err)
		}
		if l := pres.Lease(); l != 0 {
			if err := reg.Deregister(pctx, l); err != nil {
				log.Warn("leaving the cluster", "err", err)
			}
		}
	}
	return nil
}

// connectSystemd picks the systemd manager to drive. Outside dev mode it is
// the one systemd_user selects. In dev mode: the system manager if
// reachable, else the user's, else a private systemd --user started here.
func connectSystemd(ctx context.Context, cfg Config, dev bool, log *slog.Logger) (*systemd.Manager, string, func(), error) {
	unitsDir := func(def string) string {
		if cfg.UnitsDirectory != "" {
			return cfg.UnitsDirectory
		}
		return def
	}
	userDir := func() string { return filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "fleet", "units") }
	sdLog := log.With("component", "systemd")
	connect := func(c systemd.Config) (*systemd.Manager, string, func(), error) {
		m, err := systemd.New(ctx, c)
		if err != nil {
			return nil, "", nil, fmt.Errorf("connect to systemd: %w", err)
		}
		return m, c.UnitsDir, func() { _ = m.Close() }, nil
	}
	if !dev {
		if cfg.SystemdUser {
			return connect(systemd.Config{UnitsDir: unitsDir(userDir()), User: true, Logger: sdLog})
		}
		return connect(systemd.Config{UnitsDir: unitsDir("/run/fleet/units"), Logger: sdLog})
	}
	if !cfg.SystemdUser && os.Geteuid() == 0 && systemd.Reachable(ctx, false) {
		log.Info("dev mode: using the system manager")
		return connect(systemd.Config{UnitsDir: unitsDir("/run/fleet/units"), Logger: sdLog})
	}
	if os.Getenv("XDG_RUNTIME_DIR") != "" && systemd.Reachable(ctx, true) {
		log.Info("dev mode: using the user manager")
		return connect(systemd.Config{UnitsDir: unitsDir(userDir()), User: true, Logger: sdLog})
	}
	log.Info("dev mode: no systemd manager reachable over D-Bus; starting a private systemd --user")
	lm, err := launch.Start(ctx, launch.Options{Logger: sdLog})
	if err != nil {
		return nil, "", nil, fmt.Errorf("start a private systemd --user: %w", err)
	}
	stopLM := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := lm.Stop(sctx); err != nil {
			log.Warn("stopping the private systemd", "err", err)
		}
	}
	m, dir, closeM, err := connect(systemd.Config{UnitsDir: unitsDir(filepath.Join(lm.RuntimeDir(), "fleet", "units")),
		PrivateSocket: lm.PrivateSocket(), Logger: sdLog})
	if err != nil {
		stopLM()
		return nil, "", nil, err
	}
	return m, dir, func() { closeM(); stopLM() }, nil
}

func resolveMachineID(cfg Config, dev bool) (string, error) {
	if cfg.MachineID != "" {
		return cfg.MachineID, nil
	}
	b, err := os.ReadFile("/etc/machine-id")
	if id := strings.TrimSpace(string(b)); err == nil && id != "" {
		return id, nil
	}
	if !dev {
		return "", fmt.Errorf("unable to determine local machine ID: set machine_id or provide /etc/machine-id")
	}
	p := filepath.Join(cfg.DataDir, "machine-id")
	if b, err := os.ReadFile(p); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	id := randomHex(16)
	if err := os.WriteFile(p, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("store machine ID: %w", err)
	}
	return id, nil
}

// instanceToken identifies this installation across restarts (it lives in
// data_dir), so a restarted fleetd can take over its own registration.
func instanceToken(dataDir string) (string, error) {
	p := filepath.Join(dataDir, "instance")
	if b, err := os.ReadFile(p); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	tok := randomHex(16)
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("store instance token: %w", err)
	}
	return tok, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// detectPublicIP returns the first global unicast IPv4 address, or "".
func detectPublicIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.String()
		}
	}
	return ""
}

func logConfig(log *slog.Logger, c Config, machineID string) {
	log.Info("effective configuration",
		"machine_id", machineID, "etcd_servers", strings.Join(c.EtcdServers, ","), "etcd_key_prefix", c.EtcdKeyPrefix,
		"etcd_cafile", c.EtcdCAFile, "etcd_certfile", c.EtcdCertFile, "etcd_keyfile", c.EtcdKeyFile,
		"etcd_username", c.EtcdUsername, "etcd_request_timeout", c.EtcdRequestTimeout,
		"public_ip", c.PublicIP, "metadata", c.Metadata, "agent_ttl", c.AgentTTL,
		"engine_reconcile_interval", c.EngineReconcile, "units_directory", c.UnitsDirectory,
		"systemd_user", c.SystemdUser, "token_limit", c.TokenLimit, "disable_engine", c.DisableEngine,
		"verbosity", c.Verbosity, "api_listen", strings.Join(c.APIListen, ","), "data_dir", c.DataDir,
		"shutdown_purge", c.ShutdownPurge)
}
