package fleetd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/internal/testenv"
	"github.com/fleet-next/fleet/registry/registrytest"
	"github.com/fleet-next/fleet/systemd/launch"
	"github.com/fleet-next/fleet/test/cluster"
)

// fleetd is a fleetd process started the way systemd starts it: with an
// activated socket as fd 3 (LISTEN_FDS=1, LISTEN_PID its own PID) and a
// NOTIFY_SOCKET the test reads.
type fleetd struct {
	t      *testing.T
	dir    string
	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has exited
	log    *cluster.SyncBuffer
	notify chan string // sd_notify datagrams, in order
}

type fleetdOptions struct {
	activated net.Listener
	env       []string // FLEET_* settings
	args      []string
	watchdog  time.Duration
}

// shortDir makes a directory short enough for the sockets below it.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// buildFleetd builds the fleetd binary into dir.
func buildFleetd(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "fleetd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/fleetd")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build fleetd: %v\n%s", err, out)
	}
	return bin
}

func startFleetd(t *testing.T, dir string, o fleetdOptions) *fleetd {
	t.Helper()
	bin := buildFleetd(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sd, err := launch.Start(ctx, launch.Options{Dir: filepath.Join(dir, "rt"),
		CgroupName: fmt.Sprintf("fleettest/%d-%s", os.Getpid(), filepath.Base(dir))})
	if err != nil {
		t.Fatalf("start systemd: %v", err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := sd.Stop(sctx); err != nil {
			t.Errorf("stop systemd: %v", err)
		}
	})

	notifyPath := filepath.Join(dir, "notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Net: "unixgram", Name: notifyPath})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	f := &fleetd{t: t, dir: dir, done: make(chan struct{}), log: &cluster.SyncBuffer{}, notify: make(chan string, 1024)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := nc.Read(buf)
			if err != nil {
				return
			}
			select {
			case f.notify <- string(buf[:n]):
			default:
			}
		}
	}()

	lf, err := o.activated.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close() // the child has its own copy
	// The shell sets LISTEN_PID to its own PID, which fleetd keeps by exec.
	args := append([]string{"-c", `export LISTEN_PID=$$; exec "$0" "$@"`, bin}, o.args...)
	cmd := exec.Command("/bin/sh", args...)
	cmd.ExtraFiles = []*os.File{lf} // fd 3
	cmd.Env = append(append(sd.Env(), "PATH="+os.Getenv("PATH"), "LISTEN_FDS=1", "NOTIFY_SOCKET="+notifyPath,
		"FLEET_SYSTEMD_USER=true", "FLEET_DATA_DIR="+filepath.Join(dir, "data")), o.env...)
	if o.watchdog > 0 {
		cmd.Env = append(cmd.Env, "WATCHDOG_USEC="+strconv.FormatInt(o.watchdog.Microseconds(), 10))
	}
	cmd.Stdout, cmd.Stderr = f.log, f.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start fleetd: %v", err)
	}
	f.cmd = cmd
	go func() {
		_ = cmd.Wait()
		close(f.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-f.done
		if t.Failed() {
			t.Logf("--- fleetd log ---\n%s", f.log.String())
		}
	})
	return f
}

// waitNotify waits for a datagram containing want and returns it.
func (f *fleetd) waitNotify(want string, timeout time.Duration) string {
	f.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-f.notify:
			if strings.Contains(m, want) {
				return m
			}
		case <-deadline:
			f.t.Fatalf("no %q from fleetd within %s", want, timeout)
		case <-f.done:
			f.t.Fatalf("fleetd exited before sending %q", want)
		}
	}
}

// notified returns the datagrams received so far.
func (f *fleetd) notified() []string {
	var out []string
	for {
		select {
		case m := <-f.notify:
			out = append(out, m)
		default:
			return out
		}
	}
}

// stop sends SIGTERM, expects STOPPING=1 and a clean exit.
func (f *fleetd) stop() {
	f.t.Helper()
	if err := f.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		f.t.Fatal(err)
	}
	f.waitNotify("STOPPING=1", 30*time.Second)
	select {
	case <-f.done:
	case <-time.After(60 * time.Second):
		f.t.Fatal("fleetd did not exit within 60s of SIGTERM")
	}
	if code := f.cmd.ProcessState.ExitCode(); code != 0 {
		f.t.Errorf("fleetd exit code %d, want 0", code)
	}
}

// httpClient dials network/addr whatever the URL's host.
func httpClient(network, addr string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}}
}

func get(t *testing.T, c *http.Client, path string) (int, string) {
	t.Helper()
	resp, err := c.Get("http://localhost" + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// scrape returns the samples of /metrics by series ("name{labels}").
func scrape(t *testing.T, c *http.Client) map[string]float64 {
	t.Helper()
	code, body := get(t, c, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func writeConfig(t *testing.T, path string, kv ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(kv, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func machineMetadata(t *testing.T, c *api.Client) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ms, err := c.Machines(ctx)
	if err != nil || len(ms) != 1 {
		t.Fatalf("machines: %v, %v", ms, err)
	}
	return ms[0].Metadata
}

// TestActivatedFleetd runs fleetd under the protocols systemd uses: the API
// is served on the activated socket and on api_listen, READY=1 follows
// registration, the watchdog is pinged, /metrics reflects a unit started
// through the API, SIGHUP applies metadata and verbosity, and SIGTERM sends
// STOPPING=1.
func TestActivatedFleetd(t *testing.T) {
	testenv.RequireSystemd(t) // fleetd drives a private systemd --user
	begin := time.Now()
	etcd := registrytest.StartEtcd(t)
	dir := shortDir(t)
	act, err := net.Listen("unix", filepath.Join(dir, "act.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer act.Close()
	apiSock := filepath.Join(dir, "api.sock")
	conf := filepath.Join(dir, "fleet.conf")
	common := []string{
		"etcd_servers=" + etcd.Endpoint(),
		"machine_id=5e7f1ee7000000000000000000000001",
		"api_listen=unix://" + apiSock,
		"agent_ttl=5s",
		"engine_reconcile_interval=0.5",
	}
	writeConfig(t, conf, append(common, "metadata=role=web")...)
	f := startFleetd(t, dir, fleetdOptions{activated: act, args: []string{"--config", conf}, watchdog: time.Second})

	ready := f.waitNotify("READY=1", time.Minute)
	if !strings.Contains(ready, "STATUS=registered as machine 5e7f1ee7000000000000000000000001") {
		t.Errorf("READY message %q lacks the status line", ready)
	}
	actHTTP, apiHTTP := httpClient("unix", act.Addr().String()), httpClient("unix", apiSock)
	for name, c := range map[string]*http.Client{"activated": actHTTP, "api_listen": apiHTTP} {
		if code, body := get(t, c, "/health"); code != http.StatusOK || !strings.Contains(body, `"ok"`) {
			t.Errorf("%s socket: GET /health = %d %s, want 200 ok", name, code, body)
		}
	}
	f.waitNotify("WATCHDOG=1", 30*time.Second)

	cli, err := api.NewClient("unix://"+act.Addr().String(), api.ClientOptions{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if md := machineMetadata(t, cli); !maps.Equal(md, map[string]string{"role": "web"}) {
		t.Errorf("metadata = %v, want role=web", md)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cli.CreateUnit(ctx, &api.Unit{Name: "hello.service", DesiredState: "launched", Options: []*api.UnitOption{
		{Section: "Service", Name: "ExecStart", Value: "/bin/sleep 3600"}}}); err != nil {
		t.Fatal(err)
	}
	cluster.Eventually(t, time.Minute, "hello.service active", func() bool {
		s, err := cli.UnitState(ctx, "hello.service")
		return err == nil && s != nil && s.SystemdActiveState == "active"
	})
	var m map[string]float64
	cluster.Eventually(t, 30*time.Second, "the agent counts hello.service launched", func() bool {
		m = scrape(t, actHTTP)
		return m[`fleet_agent_units{state="launched"}`] == 1
	})
	if v := m["fleet_engine_leader_start_time_seconds"]; v < float64(begin.Unix()) || v > float64(time.Now().Unix()+1) {
		t.Errorf("leader start time %v, want between %d and now", v, begin.Unix())
	}
	atLeast := map[string]float64{
		`fleet_engine_changes_applied_total{kind="place"}`:                                 1,
		`fleet_engine_reconcile_rounds_total{result="applied"}`:                            1,
		`fleet_engine_reconcile_duration_seconds_count`:                                    1,
		`fleet_agent_plans_total`:                                                          1,
		`fleet_agent_actions_total{kind="start"}`:                                          1,
		`fleet_agent_actions_total{kind="write-file"}`:                                     1,
		`fleet_agent_states_published_total`:                                               1,
		`fleet_registry_requests_total{op="txn"}`:                                          1,
		`fleet_registry_requests_total{op="lease_grant"}`:                                  1,
		`fleet_registry_request_duration_seconds_count{op="put"}`:                          1,
		`fleet_api_requests_total{code="200",method="GET",route="/fleet/v1/state/{name}"}`: 1,
		`fleet_api_requests_total{code="200",method="GET",route="/fleet/v1/machines"}`:     1,
		`go_goroutines`:                   1,
		`process_start_time_seconds`:      float64(begin.Unix() - 1),
		`fleet_build_info{version="dev"}`: 1,
	}
	for series, min := range atLeast {
		if v, ok := m[series]; !ok || v < min {
			t.Errorf("%s = %v (present %v), want at least %v", series, v, ok, min)
		}
	}
	exact := map[string]float64{
		`fleet_api_requests_total{code="201",method="PUT",route="/fleet/v1/units/{name}"}`: 1,
		`fleet_agent_action_failures_total{kind="start"}`:                                  0,
		`fleet_engine_unplaceable_units`:                                                   0,
		`fleet_agent_units{state="loaded"}`:                                                0,
	}
	for series, want := range exact {
		if v := m[series]; v != want {
			t.Errorf("%s = %v, want %v", series, v, want)
		}
	}

	// SIGHUP: metadata and verbosity apply at once; agent_ttl needs a restart.
	if strings.Contains(f.log.String(), "level=DEBUG") {
		t.Fatal("debug lines logged at verbosity 0")
	}
	writeConfig(t, conf, append(common[:3], "agent_ttl=6s", "engine_reconcile_interval=0.5",
		"metadata=role=db,disk=ssd", "verbosity=1")...)
	if err := f.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	cluster.Eventually(t, 30*time.Second, "metadata role=db,disk=ssd", func() bool {
		return maps.Equal(machineMetadata(t, cli), map[string]string{"role": "db", "disk": "ssd"})
	})
	log := f.log.String()
	for _, want := range []string{"Reloading configuration", "need a restart", "keys=[agent_ttl]"} {
		if !strings.Contains(log, want) {
			t.Errorf("log after SIGHUP lacks %q", want)
		}
	}
	// Debug logging is on now: a schedule change logs a debug line.
	if err := cli.SetUnitTargetState(ctx, "hello.service", "loaded"); err != nil {
		t.Fatal(err)
	}
	cluster.Eventually(t, 30*time.Second, "a debug line after SIGHUP raised the verbosity", func() bool {
		return strings.Contains(f.log.String(), "level=DEBUG")
	})
	f.stop()
}

// TestActivatedSocketAloneWhileUnregistered starts fleetd with a TCP
// socket from socket activation, api_listen left at its default and the
// store unreachable: only the activated socket is served, /health and the
// API answer 503 with the error envelope, /metrics answers, and READY=1 is
// never sent.
func TestActivatedSocketAloneWhileUnregistered(t *testing.T) {
	testenv.RequireSystemd(t) // fleetd drives a private systemd --user
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // nothing listens there now: the store is unreachable
	dir := shortDir(t)
	act, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer act.Close()
	f := startFleetd(t, dir, fleetdOptions{activated: act, env: []string{
		"FLEET_ETCD_SERVERS=http://" + deadAddr, "FLEET_MACHINE_ID=5e7f1ee7000000000000000000000002",
		"FLEET_AGENT_TTL=2s"}})
	c := httpClient("tcp", act.Addr().String())
	var code int
	var body string
	cluster.Eventually(t, time.Minute, "fleetd serving the activated socket", func() bool {
		resp, err := c.Get("http://localhost/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	for _, path := range []string{"/health", "/fleet/v1/units"} {
		code, body = get(t, c, path)
		var e api.ErrorResponse
		if code != http.StatusServiceUnavailable || json.Unmarshal([]byte(body), &e) != nil ||
			e.Error.Code != http.StatusServiceUnavailable ||
			!strings.HasPrefix(e.Error.Message, "fleet server unable to communicate with etcd: this machine is not registered in the cluster: ") {
			t.Errorf("GET %s = %d %s, want 503 with the error envelope", path, code, body)
		}
	}
	if code, body = get(t, c, "/metrics"); code != http.StatusOK || !strings.Contains(body, "fleet_build_info") {
		t.Errorf("GET /metrics = %d, want 200 with metrics", code)
	}
	for _, m := range f.notified() {
		if strings.Contains(m, "READY=1") {
			t.Errorf("READY=1 sent while the machine cannot register: %q", m)
		}
	}
	log := f.log.String()
	if n := strings.Count(log, `msg="API listening"`); n != 1 {
		t.Errorf("%d API listeners, want only the activated one", n)
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `msg="API listening"`) &&
			!strings.Contains(line, "listen=tcp://"+act.Addr().String()+" activated=true") {
			t.Errorf("API listening on something else than the activated socket: %s", line)
		}
	}
	f.stop()
}
