// Package cluster runs real multi-host fleet clusters on one machine for
// tests: every host is a real fleetd process with its own machine ID, API
// socket, public IP label, metadata and its own isolated systemd --user
// (own cgroup subtree and XDG directories), all against one real etcd (in
// the test process, or as one or more member processes), each host through
// TCP proxies the test can cut to simulate a partition. Faults a test can
// inject: fleetd killed or stopped and started again, a host's systemd
// manager restarted, a host cut from etcd and healed, an etcd member killed
// and restarted on its data, every etcd member frozen. Everything is torn
// down by PID and path in t.Cleanup, also when a test fails.
package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/registry/etcdembed"
	"github.com/fleet-next/fleet/systemd"
	"github.com/fleet-next/fleet/systemd/launch"
	"github.com/fleet-next/fleet/unit"
)

// T is the part of testing.TB the harness uses, so that it also runs
// outside tests (see fleet-cluster).
type T interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Failed() bool
	Cleanup(func())
	TempDir() string
}

// Options shape a cluster.
type Options struct {
	Hosts    int
	AgentTTL time.Duration // default 3s
	// Metadata returns host i's metadata ("k=v,k2=v2"); nil = "host=<i>".
	Metadata func(i int) string
	// Env adds FLEET_* settings to every host.
	Env []string
	// UnixOnly makes every host's API listen on its unix socket only (no
	// tcp:// listener, no published API URL).
	UnixOnly bool
	// EtcdTLS makes etcd serve TLS only and require client certificates
	// (etcdembed's Private member); hosts get etcd_cafile, etcd_certfile
	// and etcd_keyfile. In-process etcd only.
	EtcdTLS bool
	// EtcdAuth turns on etcd's user/password authentication; hosts get
	// etcd_username and etcd_password (EtcdUser, EtcdPassword).
	// In-process etcd only.
	EtcdAuth bool
	// EtcdProcess runs etcd as a separate process (see FreezeEtcd) instead
	// of in the test process: one member with short raft ticks.
	EtcdProcess bool
	// EtcdMembers > 0 runs an etcd cluster of that many member processes
	// with etcd's default raft timing, as production runs it (see
	// Cluster.Members); every host reaches every member through its own
	// proxy.
	EtcdMembers int
	// LogTail bounds how much of each fleetd's log (its end) a failed test
	// prints; 0 prints all of it.
	LogTail int
	// LogDir, if set, receives a copy of each fleetd's log at cleanup
	// (host-<i>.log), also when the test passes.
	LogDir string
}

// Cluster is a running test cluster.
type Cluster struct {
	t        T
	Hosts    []*Host
	Endpoint string // an etcd client URL (the first of Endpoints)
	// Endpoints are etcd client URLs, one per member, that no fault cuts:
	// the harness's own way to the store.
	Endpoints []string
	// Members are the etcd member processes; empty with the embedded etcd.
	Members []*EtcdMember
	bins    string
	opts    Options
	etcdDir string // the members' working directory
	sec     etcdSecurity
}

// Host is one simulated machine.
type Host struct {
	c         *Cluster
	Index     int
	MachineID string
	IP        string // label published as the machine's public IP
	Dir       string
	Socket    string // API unix socket
	Endpoint  string // unix:///.../fleet.sock for fleetctl
	// SD is the host's systemd manager. RestartSystemd replaces it: tests
	// that restart it read it through Systemd.
	SD *launch.Manager
	// Proxy links the host to every etcd member; Cut partitions it.
	Proxy *ProxySet
	env   []string
	sdOpt launch.Options

	sdMu sync.Mutex // guards SD; held for the whole of RestartSystemd
	mu   sync.Mutex // guards cmd, exited and log
	cmd  *exec.Cmd
	// exited is closed once cmd has been reaped.
	exited chan struct{}
	log    *bytes.Buffer
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Binaries builds fleetd and fleetctl once per test process and returns
// their directory.
func Binaries(t T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fleet-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildDir = dir
		root := moduleRoot()
		for b, pkg := range map[string]string{"fleetd": "./cmd/fleetd", "fleetctl": "./cmd/fleetctl", "etcdserver": "./test/cluster/etcdserver"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b), pkg)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", b, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildDir
}

// CleanupBinaries removes the built binaries; call it from TestMain.
func CleanupBinaries() {
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// New starts etcd and opts.Hosts hosts and waits until every machine is
// registered.
func New(t T, opts Options) *Cluster {
	t.Helper()
	if opts.Hosts <= 0 {
		opts.Hosts = 1
	}
	if opts.AgentTTL == 0 {
		opts.AgentTTL = 3 * time.Second
	}
	c := &Cluster{t: t, bins: Binaries(t), opts: opts}
	switch {
	case opts.EtcdMembers > 0:
		c.startEtcdProcesses(opts.EtcdMembers)
	case opts.EtcdProcess:
		c.startEtcdProcesses(1)
	default:
		c.startEmbeddedEtcd()
	}
	for i := range opts.Hosts {
		c.Hosts = append(c.Hosts, c.newHost(i))
	}
	for _, h := range c.Hosts {
		h.Start()
	}
	c.WaitMachines(opts.Hosts)
	return c
}

// AddHost starts one more host (with machineID, or a fresh one if "") and
// returns it without waiting for it to register.
func (c *Cluster) AddHost(machineID string) *Host {
	h := c.newHost(len(c.Hosts))
	if machineID != "" {
		h.MachineID = machineID
		h.SetEnv("FLEET_MACHINE_ID", machineID)
	}
	c.Hosts = append(c.Hosts, h)
	h.Start()
	return h
}

// SetEnv sets a variable of the host's fleetd for its next Start.
func (h *Host) SetEnv(key, value string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, kv := range h.env {
		if strings.HasPrefix(kv, key+"=") {
			h.env[i] = key + "=" + value
			return
		}
	}
	h.env = append(h.env, key+"="+value)
}

// Running reports whether the host's fleetd process was started and not stopped.
func (h *Host) Running() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cmd != nil
}

// PID is the process ID of the host's running fleetd, or 0 if it is not
// running.
func (h *Host) PID() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil || h.cmd.Process == nil {
		return 0
	}
	return h.cmd.Process.Pid
}

// Units asks the host's own systemd for the state of names.
func (h *Host) Units(names ...string) map[string]unit.SystemdState {
	h.c.t.Helper()
	st, err := h.UnitsErr(names...)
	if err != nil {
		h.c.t.Fatalf("host %d: %v", h.Index, err)
	}
	return st
}

// UnitsErr is Units returning errors instead of failing the test.
func (h *Host) UnitsErr(names ...string) (map[string]unit.SystemdState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return h.UnitsCtx(ctx, names...)
}

// UnitsCtx is UnitsErr bounded by ctx.
func (h *Host) UnitsCtx(ctx context.Context, names ...string) (map[string]unit.SystemdState, error) {
	type result struct {
		st  map[string]unit.SystemdState
		err error
	}
	ch := make(chan result, 1)
	go func() {
		st, err := h.units(ctx, names)
		ch <- result{st, err}
	}()
	select {
	case r := <-ch:
		return r.st, r.err
	case <-ctx.Done():
		// Connecting can block past ctx: godbus (v5.2.4) never completes a
		// call sent with FlagNoReplyExpected on a connection that closed
		// under it, which is what a manager being restarted does to the
		// ping that systemd.New sends. The connection is closed by then;
		// only the goroutine stays behind.
		return nil, fmt.Errorf("host %d: systemd states: %w", h.Index, ctx.Err())
	}
}

func (h *Host) units(ctx context.Context, names []string) (map[string]unit.SystemdState, error) {
	m, err := systemd.New(ctx, systemd.Config{UnitsDir: filepath.Join(h.Dir, "probe"), PrivateSocket: h.privateSocket()})
	if err != nil {
		return nil, fmt.Errorf("connect to systemd: %w", err)
	}
	defer m.Close()
	st, err := m.States(ctx, names)
	if err != nil {
		return nil, fmt.Errorf("systemd states: %w", err)
	}
	return st, nil
}

func (c *Cluster) newHost(i int) *Host {
	t := c.t
	dir, err := os.MkdirTemp("", "fh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sdOpt := launch.Options{Dir: filepath.Join(dir, "rt"),
		CgroupName: fmt.Sprintf("fleettest/%d-%s-h%d", os.Getpid(), filepath.Base(dir), i)}
	sd, err := launch.Start(ctx, sdOpt)
	if err != nil {
		t.Fatalf("host %d: start systemd: %v", i, err)
	}
	h := &Host{c: c, Index: i, MachineID: fmt.Sprintf("%032x", 0xf1ee7000+i), IP: fmt.Sprintf("127.0.0.%d", 10+i),
		Dir: dir, Socket: filepath.Join(dir, "fleet.sock"), SD: sd, sdOpt: sdOpt}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := h.Systemd().Stop(sctx); err != nil {
			t.Errorf("host %d: stop systemd: %v", i, err)
		}
	})
	targets := []string{c.etcdHostPort()}
	if len(c.Members) > 0 {
		targets = targets[:0]
		for _, m := range c.Members {
			targets = append(targets, "unix:"+m.Socket)
		}
	}
	proxies, err := newProxySet(targets)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxies.Close)
	h.Proxy = proxies
	h.Endpoint = "unix://" + h.Socket
	listen := h.Endpoint + ",tcp://127.0.0.1:0" // TCP too: an API URL to publish
	if c.opts.UnixOnly {
		listen = h.Endpoint
	}
	md := fmt.Sprintf("host=%d", i)
	if c.opts.Metadata != nil {
		md = c.opts.Metadata(i)
	}
	h.env = append(append([]string{}, sd.Env()...),
		"FLEET_SYSTEMD_USER=true",
		"FLEET_MACHINE_ID="+h.MachineID,
		"FLEET_PUBLIC_IP="+h.IP,
		"FLEET_METADATA="+md,
		"FLEET_API_LISTEN="+listen,
		"FLEET_DATA_DIR="+filepath.Join(dir, "data"),
		"FLEET_AGENT_TTL="+c.opts.AgentTTL.String(),
		"FLEET_ENGINE_RECONCILE_INTERVAL=0.5",
		"FLEET_VERBOSITY=1",
		"PATH="+os.Getenv("PATH"),
	)
	h.env = append(h.env, c.etcdEnv(proxies)...)
	h.env = append(h.env, c.opts.Env...)
	t.Cleanup(func() {
		h.Kill()
		log := h.Log()
		if c.opts.LogDir != "" {
			if err := os.WriteFile(filepath.Join(c.opts.LogDir, fmt.Sprintf("host-%d.log", i)), []byte(log), 0o644); err != nil {
				t.Errorf("host %d: keep log: %v", i, err)
			}
		}
		if t.Failed() {
			if n := c.opts.LogTail; n > 0 && len(log) > n {
				log = "[...]" + log[len(log)-n:]
			}
			t.Logf("--- fleetd log of host %d ---\n%s", i, log)
		}
	})
	return h
}

// Start starts the host's fleetd.
func (h *Host) Start() {
	h.c.t.Helper()
	if err := h.TryStart(); err != nil {
		h.c.t.Fatal(err)
	}
}

// TryStart is Start returning errors instead of failing the test.
func (h *Host) TryStart() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd != nil {
		return fmt.Errorf("host %d: fleetd already running", h.Index)
	}
	if h.log == nil {
		h.log = &bytes.Buffer{}
	}
	cmd := exec.Command(filepath.Join(h.c.bins, "fleetd"))
	cmd.Env = h.env
	w := &lockedWriter{mu: &h.mu, buf: h.log}
	cmd.Stdout, cmd.Stderr = w, w
	// Its own process group; killed with the test process if that dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("host %d: start fleetd: %w", h.Index, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	h.cmd, h.exited = cmd, exited
	return nil
}

// Stop sends sig to fleetd and waits for it to exit.
func (h *Host) Stop(sig syscall.Signal) {
	if err := h.TryStop(sig, 60*time.Second); err != nil {
		h.c.t.Errorf("%v", err)
	}
}

// TryStop sends sig to fleetd and waits for it to exit; after timeout it
// kills it and returns an error saying so. A fleetd that is not running is
// left alone.
func (h *Host) TryStop(sig syscall.Signal, timeout time.Duration) error {
	h.mu.Lock()
	cmd, exited := h.cmd, h.exited
	h.cmd = nil
	h.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("host %d: fleetd did not exit on %v within %s", h.Index, sig, timeout)
	}
}

// Exited reports whether the host's fleetd was started and has ended on its
// own (without Stop or Kill), and how.
func (h *Host) Exited() (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil {
		return false, ""
	}
	select {
	case <-h.exited:
		return true, h.cmd.ProcessState.String()
	default:
		return false, ""
	}
}

// Systemd returns the host's current systemd manager.
func (h *Host) Systemd() *launch.Manager {
	h.sdMu.Lock()
	defer h.sdMu.Unlock()
	return h.SD
}

func (h *Host) privateSocket() string {
	return filepath.Join(h.sdOpt.Dir, "systemd", "private")
}

// RestartSystemd stops the host's systemd manager (which stops every unit
// it runs) and starts it again with the same directories and cgroup, as a
// restart of a host's manager or of its bus does; fleetd keeps running and
// sees its connection drop.
func (h *Host) RestartSystemd() {
	h.c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.TryRestartSystemd(ctx); err != nil {
		h.c.t.Fatal(err)
	}
}

// TryRestartSystemd is RestartSystemd returning errors instead of failing
// the test.
func (h *Host) TryRestartSystemd(ctx context.Context) error {
	h.sdMu.Lock()
	defer h.sdMu.Unlock()
	if err := h.stopSystemd(ctx); err != nil {
		return err
	}
	return h.startSystemd(ctx)
}

// StopSystemd stops the host's systemd manager and every unit it runs.
func (h *Host) StopSystemd() {
	h.c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h.sdMu.Lock()
	defer h.sdMu.Unlock()
	if err := h.stopSystemd(ctx); err != nil {
		h.c.t.Fatal(err)
	}
}

// StartSystemd starts the host's systemd manager again after StopSystemd.
func (h *Host) StartSystemd() {
	h.c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h.sdMu.Lock()
	defer h.sdMu.Unlock()
	if err := h.startSystemd(ctx); err != nil {
		h.c.t.Fatal(err)
	}
}

func (h *Host) stopSystemd(ctx context.Context) error {
	if err := h.SD.Stop(ctx); err != nil {
		return fmt.Errorf("host %d: stop systemd: %w", h.Index, err)
	}
	return nil
}

// startSystemd starts a new manager; h.sdMu is held.
func (h *Host) startSystemd(ctx context.Context) error {
	sd, err := launch.Start(ctx, h.sdOpt)
	if err != nil {
		return fmt.Errorf("host %d: start systemd again: %w", h.Index, err)
	}
	h.SD = sd
	return nil
}

// Kill stops fleetd with SIGKILL (no purge).
func (h *Host) Kill() { h.Stop(syscall.SIGKILL) }

// Log returns what fleetd printed so far.
func (h *Host) Log() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.log == nil {
		return ""
	}
	return h.log.String()
}

type lockedWriter struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// Result is the outcome of one fleetctl run.
type Result struct {
	Stdout, Stderr string
	Exit           int
}

// Fleetctl runs fleetctl against host h's API.
func (h *Host) Fleetctl(args ...string) Result {
	h.c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := h.FleetctlCtx(ctx, args...)
	if err != nil {
		h.c.t.Fatal(err)
	}
	return res
}

// FleetctlCtx runs fleetctl against host h's API until it exits or ctx
// ends; an error means it could not be run or was cut short by ctx.
func (h *Host) FleetctlCtx(ctx context.Context, args ...string) (Result, error) {
	return Run(ctx, append([]string{filepath.Join(h.c.bins, "fleetctl"), "--endpoint", h.Endpoint}, args...)...)
}

// Run runs argv with only PATH in its environment until it exits or ctx
// ends, and returns its output and exit code; an error means it could not
// be run or was cut short by ctx.
func Run(ctx context.Context, argv ...string) (Result, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := Result{Stdout: out.String(), Stderr: errb.String()}
	if ctx.Err() != nil {
		return res, fmt.Errorf("%v: %w", argv, ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.Exit = ee.ExitCode()
	} else if err != nil {
		return res, fmt.Errorf("run %v: %w", argv, err)
	}
	return res, nil
}

// Registry returns a registry client on etcd that no fault cuts off (on
// every member when etcd runs as processes), closed at cleanup.
func (c *Cluster) Registry() *registry.Etcd {
	reg, err := registry.Connect(c.connectConfig())
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = reg.Close() })
	return reg
}

func (c *Cluster) startEmbeddedEtcd() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := etcdembed.Start(ctx, etcdembed.Options{Dir: c.t.TempDir(), Fast: true, Private: c.opts.EtcdTLS})
	if err != nil {
		c.t.Fatalf("start etcd: %v", err)
	}
	c.t.Cleanup(e.Close) // first registered, so it runs after every client's cleanup
	c.Endpoint = e.Endpoint()
	c.Endpoints = []string{c.Endpoint}
	c.secure(e)
}

// WaitMachines waits until n machines are registered.
func (c *Cluster) WaitMachines(n int) {
	c.t.Helper()
	reg := c.Registry()
	Eventually(c.t, 60*time.Second, fmt.Sprintf("%d machines registered", n), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ms, err := reg.Machines(ctx)
		return err == nil && len(ms) == n
	})
}

// Eventually polls cond every 100ms until it holds or timeout passes.
// It is a wait with a generous bound, not a timing assertion.
func Eventually(t T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
