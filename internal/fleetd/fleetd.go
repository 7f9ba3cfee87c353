package fleetd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fleet-next/fleet/access"
	"github.com/fleet-next/fleet/agent"
	"github.com/fleet-next/fleet/agent/agentstore"
	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/api/localunits"
	"github.com/fleet-next/fleet/engine"
	"github.com/fleet-next/fleet/engine/enginestore"
	"github.com/fleet-next/fleet/presence"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/registry/etcdembed"
	"github.com/fleet-next/fleet/systemd"
	"github.com/fleet-next/fleet/systemd/launch"
	"github.com/fleet-next/fleet/unit"
	"golang.org/x/sync/errgroup"
)

// electionTTL is the engine election lease: how long a killed leader keeps
// leading before another candidate takes over.
const electionTTL = 3 * time.Second

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
// units running for the next fleetd to adopt. It returns an error when
// fleetd cannot start, or when one of its components ends by itself: a
// fleetd that stopped doing its work exits non-zero rather than looking
// healthy.
func Run(ctx context.Context, cfg Config, opts Options) (err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	d := &node{cfg: cfg, loaded: cfg, opts: opts, log: opts.Logger}
	defer d.cleanup()
	if err := d.start(ctx); err != nil {
		return err
	}
	runErr := d.supervise(ctx)
	d.shutdown(ctx)
	return runErr
}

// node is one fleetd between start and shutdown.
type node struct {
	cfg    Config // effective: run-time defaults applied
	loaded Config // as configured, for reloads
	opts   Options
	log    *slog.Logger

	cleanups  []func() // run in reverse order at exit
	machineID string
	sd        *systemd.Manager
	metrics   *Metrics
	reg       *registry.Etcd
	pres      *presence.Presence
	agent     *agent.Agent
	listeners []apiListener
	api       http.Handler // as the listeners serve it
	notify    notifier
	ready     chan struct{} // closed once the machine first registered
}

func (d *node) cleanup() {
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		d.cleanups[i]()
	}
}

// stopCtx bounds a shutdown step; it outlives ctx's cancellation.
func stopCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

// start prepares every component: data directory, store, systemd, presence,
// agent and the API listeners, which answer (503) while the machine
// registers.
func (d *node) start(ctx context.Context) error {
	cfg, opts, log := &d.cfg, d.opts, d.log
	if opts.Dev && !opts.DataDirSet {
		clearDevDebris(ctx, log)
		dir, err := makeDevDir()
		if err != nil {
			return err
		}
		cfg.DataDir = dir
		d.cleanups = append(d.cleanups, func() { _ = os.RemoveAll(dir) })
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if opts.Dev && !opts.APIListenSet {
		cfg.APIListen = []string{"unix://" + filepath.Join(cfg.DataDir, "fleet.sock")}
	}
	if opts.Dev {
		// Private: TLS with client certificates whose keys only this
		// data directory's owner can read, so no other local user reaches
		// the store.
		e, err := etcdembed.Start(ctx, etcdembed.Options{Dir: filepath.Join(cfg.DataDir, "etcd"), Private: true, Logger: log})
		if err != nil {
			return err
		}
		d.cleanups = append(d.cleanups, e.Close)
		cfg.EtcdServers = []string{e.Endpoint()}
		tls := e.TLS()
		cfg.EtcdCAFile, cfg.EtcdCertFile, cfg.EtcdKeyFile = tls.CAFile, tls.CertFile, tls.KeyFile
	}

	machineID, err := resolveMachineID(*cfg, opts.Dev)
	if err != nil {
		return err
	}
	d.machineID = machineID
	instance, err := instanceToken(cfg.DataDir)
	if err != nil {
		return err
	}
	if cfg.PublicIP == "" {
		cfg.PublicIP = detectPublicIP()
	}

	sd, unitsDir, stopSD, err := connectSystemd(ctx, *cfg, opts.Dev, log)
	if err != nil {
		return err
	}
	d.sd = sd
	d.cleanups = append(d.cleanups, stopSD)
	cfg.UnitsDirectory = unitsDir
	logConfig(log, *cfg, machineID)

	d.metrics = NewMetrics(opts.Version)
	d.reg, err = registry.Connect(registry.ConnectConfig{Endpoints: cfg.EtcdServers, KeyFile: cfg.EtcdKeyFile,
		CertFile: cfg.EtcdCertFile, CAFile: cfg.EtcdCAFile, Username: cfg.EtcdUsername, Password: cfg.EtcdPassword,
		DialTimeout: 5 * time.Second, RequestTimeout: cfg.EtcdRequestTimeout, Observer: d.metrics.Registry(),
		Prefix: cfg.EtcdKeyPrefix,
		Logger: log.With("component", "registry")})
	if err != nil {
		return err
	}
	d.cleanups = append(d.cleanups, func() { _ = d.reg.Close() })

	d.notify = notifier{log: log}
	d.ready = make(chan struct{})

	// The API's sockets first, so that clients queue (rather than being
	// refused) while fleetd starts; served below, answering 503 until the
	// machine registers.
	tlsConf, err := apiTLSConfig(*cfg)
	if err != nil {
		return err
	}
	listeners, activated, err := openAPIListeners(cfg.APIListen, opts.APIListenSet,
		socketPerm{mode: cfg.APISocketMode, group: cfg.APISocketGroup}, log)
	if err != nil {
		return err
	}
	d.listeners = listeners

	var readyOnce sync.Once
	d.pres = presence.New(d.reg, presence.Config{
		Machine: unit.Machine{ID: machineID, PublicIP: cfg.PublicIP, Metadata: cfg.Metadata, Version: opts.Version,
			// Other machines forward unit status and journal requests here.
			APIURL: publishedURL(apiAddrs(listeners), cfg.PublicIP, tlsConf != nil)},
		Instance: instance, TTL: cfg.AgentTTL, Logger: log.With("component", "presence"),
		OnLease: func(registry.LeaseID) {
			d.agent.Republish()
			readyOnce.Do(func() { close(d.ready) })
		}})
	store := agentstore.Store{Reg: d.reg, Leases: d.pres, MachineID: machineID}
	d.agent = agent.New(store, store, sd, agent.Config{
		MachineID: machineID, Logger: log.With("component", "agent"), Metrics: d.metrics.Agent()})

	handler := api.NewHandler(d.reg, api.Options{Version: opts.Version, TokenLimit: cfg.TokenLimit,
		Logger: log.With("component", "api"), Ready: d.readyWait, Healthy: d.agent.Healthy,
		Metrics: d.metrics.Handler(), MachineID: machineID, Local: localunits.New(machineID, sd),
		Relay: storeRelay{reg: d.reg, machineID: machineID}, Stopping: ctx.Done(),
		Access: accessStore{Etcd: d.reg, lim: registry.AuditLimits{Retention: cfg.AuditRetention, MaxEntries: cfg.AuditMaxEntries}}})
	d.api = d.metrics.API(handler)
	servers := serveAPI(listeners, activated, d.api, cfg.APIAllowedHosts, tlsConf, log)
	d.cleanups = append(d.cleanups, func() {
		sctx, cancel := stopCtx(ctx)
		defer cancel()
		for _, s := range servers {
			_ = s.Shutdown(sctx)
		}
	})
	return nil
}

// accessStore is the registry as the API's access store, its audit trail
// bounded by lim.
type accessStore struct {
	*registry.Etcd
	lim registry.AuditLimits
}

func (s accessStore) AppendAudit(ctx context.Context, e access.Entry) error {
	return s.Etcd.AppendAudit(ctx, e, s.lim)
}

// publishedURL is publishedAPIURL, with https when the TCP listeners
// serve TLS.
func publishedURL(addrs []net.Addr, publicIP string, tls bool) string {
	u := publishedAPIURL(addrs, publicIP)
	if tls {
		u = strings.Replace(u, "http://", "https://", 1)
	}
	return u
}

// readyWait is the API's readiness: nil while the machine is registered.
// Before the first registration a request waits for it, up to
// etcd_request_timeout, rather than failing while fleetd starts.
func (d *node) readyWait() error {
	select {
	case <-d.ready:
	default:
		t := time.NewTimer(d.cfg.EtcdRequestTimeout)
		select {
		case <-d.ready:
		case <-t.C:
		}
		t.Stop()
	}
	return d.pres.Ready()
}

// supervise runs every component until ctx ends. A component that returns
// before then, with or without an error, ends the others and makes Run
// fail.
func (d *node) supervise(ctx context.Context) error {
	cfg, log := d.cfg, d.log
	g, gctx := errgroup.WithContext(ctx)
	run := func(name string, f func(context.Context) error) {
		g.Go(func() error {
			err := f(gctx)
			if ctx.Err() != nil {
				return nil // shutting down
			}
			if err == nil {
				err = errors.New("stopped unexpectedly")
			}
			return fmt.Errorf("%s: %w", name, err)
		})
	}
	run("presence", d.pres.Run)
	run("agent", d.agent.Run)
	// Status and journal requests other machines relay here (see storeRelay).
	serve := serveRelayed(d.api, log.With("component", "bridge"))
	run("bridge", func(ctx context.Context) error { return d.reg.ServeRelay(ctx, d.machineID, serve) })
	if !cfg.DisableEngine {
		// A dead leader is replaced within 3 s (agent_ttl if shorter), not
		// after its machine's agent_ttl: only the leader pays for the
		// shorter lease's keep-alives.
		election := enginestore.Store{Reg: d.reg, Leases: d.pres, ElectionTTL: min(cfg.AgentTTL, electionTTL)}
		eng := engine.New(election, engine.Config{
			MachineID: d.machineID, ReconcileInterval: cfg.EngineReconcile, LossGrace: cfg.AgentTTL / 2,
			MaxMovesPerRound: 1000, Logger: log.With("component", "engine"), Metrics: d.metrics.Engine()})
		run("engine", eng.Run)
	}
	run("readiness", d.announce)
	if wd, err := watchdogInterval(); err != nil {
		log.Warn("watchdog disabled", "err", err)
	} else if wd > 0 {
		// Pinged while the presence loop makes progress: a stuck loop gets
		// fleetd restarted, a store outage does not.
		// It stops while the agent cannot reach systemd, so a host whose
		// fleetd cannot recover gets it restarted.
		healthy := func() bool { return d.pres.Alive(2*cfg.AgentTTL+wd) && d.agent.Healthy() == nil }
		run("watchdog", func(ctx context.Context) error {
			runWatchdog(ctx, wd, healthy, d.notify.notify)
			return nil
		})
	}
	if d.opts.LoadConfig != nil && d.opts.Reload != nil {
		rl := &reloader{running: d.loaded, load: d.opts.LoadConfig, level: d.opts.Level, machine: d.pres, log: log}
		run("reload", func(ctx context.Context) error {
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-d.opts.Reload:
					rl.reload()
				}
			}
		})
	}
	log.Info("fleetd started", "machine", d.machineID)
	err := g.Wait()
	if err != nil {
		log.Error("fleetd component failed; stopping", "err", err)
	}
	return err
}

// announce tells systemd (READY=1) and, in dev mode, the user that fleetd
// serves, once the machine is registered and its agent reached systemd:
// the printed command works, and /health answers ok, from the moment it is
// printed. It then waits for ctx.
func (d *node) announce(ctx context.Context) error {
	for _, ready := range []<-chan struct{}{d.ready, d.agent.Connected()} {
		select {
		case <-ctx.Done():
			return nil
		case <-ready:
		}
	}
	d.notify.notify("READY=1\nSTATUS=registered as machine " + d.machineID)
	if d.opts.Dev && d.opts.Stdout != nil {
		fmt.Fprintf(d.opts.Stdout, "fleetd is running a one-host cluster (machine %s).\nUse it with:\n\n    fleetctl --endpoint %s list-machines\n\n",
			unit.ShortID(d.machineID), d.listeners[0].addr)
	}
	<-ctx.Done()
	return nil
}

// shutdown leaves the cluster as configured: with shutdown_purge, unload
// every unit of this host, then revoke the machine lease so that the engine
// moves its units at once.
func (d *node) shutdown(ctx context.Context) {
	d.notify.notify("STOPPING=1")
	d.log.Info("fleetd stopping", "purge", d.cfg.ShutdownPurge)
	if !d.cfg.ShutdownPurge {
		return
	}
	pctx, cancel := stopCtx(ctx)
	defer cancel()
	if err := d.agent.Purge(pctx); err != nil {
		d.log.Error("unloading units at shutdown", "err", err)
	}
	if err := d.pres.Leave(pctx); err != nil {
		d.log.Warn("leaving the cluster", "err", err)
	}
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
	lm, err := launch.Start(ctx, launch.Options{Logger: sdLog, Dir: devRuntimeDir(cfg.DataDir), CgroupName: devCgroup(cfg.DataDir)})
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
	id, err := storedToken(filepath.Join(cfg.DataDir, "machine-id"))
	if err != nil {
		return "", fmt.Errorf("store machine ID: %w", err)
	}
	return id, nil
}

// instanceToken identifies this installation across restarts (it lives in
// data_dir), so a restarted fleetd can take over its own registration.
func instanceToken(dataDir string) (string, error) {
	tok, err := storedToken(filepath.Join(dataDir, "instance"))
	if err != nil {
		return "", fmt.Errorf("store instance token: %w", err)
	}
	return tok, nil
}

// storedToken returns the token kept in the file p, first writing a new
// random one there if p holds none.
func storedToken(p string) (string, error) {
	if b, err := os.ReadFile(p); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	tok := randomHex(16)
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		return "", err
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
	log.Info("effective configuration", c.logAttrs(machineID)...)
}
