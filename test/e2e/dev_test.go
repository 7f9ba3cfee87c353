package e2e

import (
	"bufio"
	"context"
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
	"github.com/fleet-next/fleet/test/cluster"
)

// TestDevModeRunsAndCleansUp runs `fleetd --dev` as a user would: it prints
// the endpoint, runs a unit, and on SIGINT leaves no process, cgroup or
// directory behind.
func TestDevModeRunsAndCleansUp(t *testing.T) {
	testenv.RequireSystemd(t) // fleetd --dev starts its own systemd --user
	bins := cluster.Binaries(t)
	cmd := exec.Command(filepath.Join(bins, "fleetd"), "--dev")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no XDG_RUNTIME_DIR: no manager reachable, so its own
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs cluster.SyncBuffer
	cmd.Stderr = &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("fleetd --dev log:\n%s", logs.String())
		}
	})

	endpoint := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := regexp.MustCompile(`--endpoint (unix://\S+)`).FindStringSubmatch(sc.Text()); m != nil {
				endpoint <- m[1]
			}
		}
		exited <- cmd.Wait()
	}()
	var ep string
	select {
	case ep = <-endpoint:
	case <-time.After(60 * time.Second):
		t.Fatal("fleetd --dev printed no endpoint")
	}
	fleetctl := func(args ...string) (string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c := exec.CommandContext(ctx, filepath.Join(bins, "fleetctl"), append([]string{"--endpoint", ep}, args...)...)
		out, err := c.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	if out, code := fleetctl("start", filepath.Join(moduleRoot(t), "examples", "hello.service")); code != 0 || !strings.Contains(out, "Unit hello.service launched") {
		t.Fatalf("start: exit %d: %s", code, out)
	}
	cluster.Eventually(t, 30*time.Second, "hello.service active running", func() bool {
		out, code := fleetctl("list-units", "--no-legend", "--fields", "unit,active,sub")
		return code == 0 && strings.Join(strings.Fields(out), " ") == "hello.service active running"
	})

	// What fleetd made: its private systemd (PID and runtime dir from its log) and its data dir.
	m := regexp.MustCompile(`msg="systemd user manager ready" .*pid=(\d+) runtime_dir=(\S+) cgroup=(\S+)`).FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("no manager start in the log")
	}
	sdPID, _ := strconv.Atoi(m[1])
	rtDir, cg := m[2], m[3]
	dataDir := filepath.Dir(strings.TrimPrefix(ep, "unix://"))
	for _, p := range []string{rtDir, dataDir, filepath.Join("/sys/fs/cgroup/systemd", cg)} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("expected %s to exist while running: %v", p, err)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("fleetd --dev exited with %v after SIGINT, want success", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("fleetd --dev did not exit after SIGINT")
	}
	cluster.Eventually(t, 10*time.Second, "the private systemd is gone", func() bool {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(sdPID) + "/stat")
		return err != nil || strings.Contains(string(b), ") Z ")
	})
	for _, p := range []string{rtDir, dataDir, filepath.Join("/sys/fs/cgroup/systemd", cg), filepath.Join("/sys/fs/cgroup/unified", cg)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind after exit (stat err %v)", p, err)
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
