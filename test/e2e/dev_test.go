package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleet-next/fleet/internal/testenv"
	"github.com/fleet-next/fleet/systemd/launch"
	"github.com/fleet-next/fleet/test/cluster"
)

// devRun is one `fleetd --dev` process started by a test.
type devRun struct {
	cmd      *exec.Cmd
	logs     *cluster.SyncBuffer
	exited   chan error // receives Wait's result once
	endpoint string     // from the banner
	dataDir  string
	sdPID    int    // its private systemd
	cgroup   string // the private systemd's cgroup name
}

var (
	bannerRE  = regexp.MustCompile(`--endpoint (unix://\S+)`)
	managerRE = regexp.MustCompile(`msg="systemd user manager ready" .*pid=(\d+) runtime_dir=(\S+) cgroup=(\S+)`)
)

// startDev starts fleetd --dev as a user would (no systemd reachable over
// D-Bus, so it starts its own) and waits for its banner. Whatever happens
// to the test, cleanup stops it and removes what it made, by PID and path.
func startDev(t *testing.T) *devRun {
	t.Helper()
	testenv.RequireSystemd(t) // fleetd --dev starts its own systemd --user
	bins := cluster.Binaries(t)
	cmd := exec.Command(filepath.Join(bins, "fleetd"), "--dev")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no XDG_RUNTIME_DIR: no manager reachable, so its own
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &devRun{cmd: cmd, logs: &cluster.SyncBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = d.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	endpoint := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := bannerRE.FindStringSubmatch(sc.Text()); m != nil {
				endpoint <- m[1]
			}
		}
		d.exited <- cmd.Wait()
	}()
	t.Cleanup(func() { d.cleanup(t) })
	select {
	case d.endpoint = <-endpoint:
	case <-time.After(60 * time.Second):
		t.Fatal("fleetd --dev printed no endpoint")
	}
	d.dataDir = filepath.Dir(strings.TrimPrefix(d.endpoint, "unix://"))
	m := managerRE.FindStringSubmatch(d.logs.String())
	if m == nil {
		t.Fatalf("no manager start in the log")
	}
	d.sdPID, _ = strconv.Atoi(m[1])
	d.cgroup = m[3]
	return d
}

// cleanup ends fleetd (SIGINT, then SIGKILL) and removes anything left:
// its private systemd (by PID), its cgroup and its directory.
func (d *devRun) cleanup(t *testing.T) {
	if d.cmd.ProcessState == nil {
		_ = d.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-d.exited:
		case <-time.After(60 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	}
	if d.sdPID > 0 && processAlive(d.sdPID) {
		_ = syscall.Kill(d.sdPID, syscall.SIGKILL)
	}
	if d.cgroup != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := launch.RemoveCgroup(ctx, d.cgroup); err != nil {
			t.Errorf("remove cgroup %s: %v", d.cgroup, err)
		}
	}
	if d.dataDir != "" && strings.HasPrefix(filepath.Base(d.dataDir), "fleetd-dev-") {
		_ = os.RemoveAll(d.dataDir)
	}
	if t.Failed() {
		t.Logf("fleetd --dev log:\n%s", d.logs.String())
	}
}

// fleetctl runs fleetctl against the dev cluster.
func (d *devRun) fleetctl(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, filepath.Join(cluster.Binaries(t), "fleetctl"), append([]string{"--endpoint", d.endpoint}, args...)...)
	out, err := c.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	return err == nil && !strings.Contains(string(b), ") Z ")
}

// TestDevModeRunsAndCleansUp runs `fleetd --dev` as a user would: the
// command its banner prints works the moment it is printed, it runs a
// unit, and on SIGINT it leaves no process, cgroup or directory behind.
func TestDevModeRunsAndCleansUp(t *testing.T) {
	d := startDev(t)
	if out, code := d.fleetctl(t, "list-machines"); code != 0 {
		t.Fatalf("the banner's command failed right after the banner: exit %d: %s", code, out)
	}
	if out, code := d.fleetctl(t, "start", filepath.Join(moduleRoot(t), "examples", "hello.service")); code != 0 || !strings.Contains(out, "Unit hello.service launched") {
		t.Fatalf("start: exit %d: %s", code, out)
	}
	cluster.Eventually(t, 30*time.Second, "hello.service active running", func() bool {
		out, code := d.fleetctl(t, "list-units", "--no-legend", "--fields", "unit,active,sub")
		return code == 0 && strings.Join(strings.Fields(out), " ") == "hello.service active running"
	})
	m := managerRE.FindStringSubmatch(d.logs.String())
	rtDir := m[2]
	for _, p := range []string{rtDir, d.dataDir, filepath.Join("/sys/fs/cgroup/systemd", d.cgroup)} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("expected %s to exist while running: %v", p, err)
		}
	}

	if err := d.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.exited:
		if err != nil {
			t.Errorf("fleetd --dev exited with %v after SIGINT, want success", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("fleetd --dev did not exit after SIGINT")
	}
	cluster.Eventually(t, 10*time.Second, "the private systemd is gone", func() bool { return !processAlive(d.sdPID) })
	for _, p := range []string{rtDir, d.dataDir, filepath.Join("/sys/fs/cgroup/systemd", d.cgroup), filepath.Join("/sys/fs/cgroup/unified", d.cgroup)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind after exit (stat err %v)", p, err)
		}
	}
}

// TestDevModeKilledDebrisClearedByNextStart: fleetd --dev killed with -9
// cannot clean up; the next fleetd --dev removes what it left.
func TestDevModeKilledDebrisClearedByNextStart(t *testing.T) {
	first := startDev(t)
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-first.exited
	first.exited <- nil // for its cleanup
	if _, err := os.Stat(first.dataDir); err != nil {
		t.Fatalf("a killed fleetd --dev left nothing to clear (%v): the test proves nothing", err)
	}
	second := startDev(t)
	if out, code := second.fleetctl(t, "list-machines"); code != 0 {
		t.Fatalf("second fleetd --dev: list-machines exit %d: %s", code, out)
	}
	cluster.Eventually(t, 10*time.Second, "the killed run's private systemd gone", func() bool { return !processAlive(first.sdPID) })
	for _, p := range []string{first.dataDir, filepath.Join("/sys/fs/cgroup/systemd", first.cgroup), filepath.Join("/sys/fs/cgroup/unified", first.cgroup)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s of the killed run still there after the next start (stat err %v)", p, err)
		}
	}
}

func moduleRoot(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(wd, "..", "..")
}

// TestDevModeIsPrivate: another local user (nobody) reaches neither the
// dev cluster's API nor its embedded etcd, and cannot read the keys that
// would let it in.
func TestDevModeIsPrivate(t *testing.T) {
	d := startDev(t)
	etcd := regexp.MustCompile(`etcd_servers=(https://127\.0\.0\.1:\d+)`).FindStringSubmatch(d.logs.String())
	if etcd == nil {
		t.Fatalf("embedded etcd does not serve https only: no https etcd_servers in the log")
	}
	asNobody := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups"}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	fleetctl := filepath.Join(cluster.Binaries(t), "fleetctl")
	if out, err := asNobody(fleetctl, "--endpoint", d.endpoint, "list-units"); err == nil {
		t.Errorf("nobody listed the dev cluster's units through its API:\n%s", out)
	}
	key := filepath.Join(d.dataDir, "etcd", "tls", "member.key")
	if _, err := os.Stat(key); err != nil {
		t.Fatalf("no client key where expected: %v", err)
	}
	if out, err := asNobody("cat", key); err == nil {
		t.Errorf("nobody read the embedded etcd's key:\n%s", out)
	}
	// Without a client certificate the store refuses the TLS handshake.
	conn, err := tls.Dial("tcp", strings.TrimPrefix(etcd[1], "https://"), &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		_, err = conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
		if err == nil {
			buf := make([]byte, 1)
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(buf)
		}
		conn.Close()
	}
	if err == nil {
		t.Errorf("the embedded etcd accepted a client without a certificate")
	}
}
