package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleet-next/fleet/registry/etcdembed"
	"github.com/fleet-next/fleet/test/cluster"
)

// health asks host h's /health on its unix socket.
func health(h *cluster.Host) (int, string, error) {
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", h.Socket)
		}}}
	resp, err := cl.Get("http://fleetd/health")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// runsHello starts hello.service through host 0 and waits until some host
// runs it, and status through host 0 shows it active.
func runsHello(t *testing.T, c *cluster.Cluster) {
	t.Helper()
	unitPath := filepath.Join(t.TempDir(), "hello.service")
	if err := os.WriteFile(unitPath, []byte(helloUnit), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := c.Hosts[0].Fleetctl("start", unitPath); res.Exit != 0 {
		t.Fatalf("start: exit %d\nstdout: %s\nstderr: %s", res.Exit, res.Stdout, res.Stderr)
	}
	cluster.Eventually(t, 60*time.Second, "hello.service running on a host", func() bool {
		for _, h := range c.Hosts {
			if h.Units("hello.service")["hello.service"].MainPID != 0 {
				return true
			}
		}
		return false
	})
	res := c.Hosts[0].Fleetctl("status", "hello.service")
	if res.Exit != 0 || !strings.Contains(res.Stdout, "Active: active (running)") {
		t.Errorf("status: exit %d\nstdout: %s\nstderr: %s", res.Exit, res.Stdout, res.Stderr)
	}
}

// lastRefusal is the /health answer of the host refused last.
var lastRefusal string

// refusedFor checks that the last refusal names want.
func refusedFor(t *testing.T, want string) {
	t.Helper()
	if !strings.Contains(lastRefusal, want) {
		t.Errorf("/health of the refused host = %s, want it to name %q", lastRefusal, want)
	}
}

// refused adds a host with env, and waits until its /health says it
// cannot register, naming want; the machine never joins.
func refused(t *testing.T, c *cluster.Cluster, want string, env ...string) {
	t.Helper()
	h := c.AddHostEnv(env...)
	cluster.Eventually(t, 60*time.Second, "host "+h.MachineID+" refused, its /health naming "+want, func() bool {
		code, body, err := health(h)
		lastRefusal = body
		return err == nil && code == http.StatusServiceUnavailable && strings.Contains(body, want)
	})
	t.Logf("/health of the refused host: %s", lastRefusal)
	res := c.Hosts[0].Fleetctl("list-machines", "--no-legend", "--full")
	if res.Exit != 0 || strings.Contains(res.Stdout, h.MachineID) {
		t.Errorf("list-machines: exit %d, stdout %q; want it without %s", res.Exit, res.Stdout, h.MachineID)
	}
	h.Kill()
}

// A cluster runs against an etcd that requires client certificates; a
// host with a CA or a certificate of another cluster is refused, saying
// why.
func TestClusterOverEtcdTLS(t *testing.T) {
	c := newCluster(t, cluster.Options{Hosts: 2, EtcdTLS: true})
	runsHello(t, c)
	other, err := etcdembed.GenerateTLS(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("another CA", func(t *testing.T) {
		refused(t, c, "etcd refuses this client's TLS: https://127.0.0.1:", "FLEET_ETCD_CAFILE="+other.CAFile)
		refusedFor(t, "x509: certificate signed by unknown authority")
	})
	t.Run("a certificate of another CA", func(t *testing.T) {
		refused(t, c, "etcd refuses this client's TLS: https://127.0.0.1:",
			"FLEET_ETCD_CERTFILE="+other.CertFile, "FLEET_ETCD_KEYFILE="+other.KeyFile)
		refusedFor(t, "remote error: tls: ")
	})
}

// A cluster runs against an etcd with user/password authentication; a
// host with a wrong password does not start, saying why (the etcd client
// authenticates as it connects).
func TestClusterOverEtcdAuth(t *testing.T) {
	c := newCluster(t, cluster.Options{Hosts: 2, EtcdAuth: true})
	runsHello(t, c)
	h := c.AddHostEnv("FLEET_ETCD_PASSWORD=wrong")
	want := `fleetd failed" err="create etcd client: etcdserver: authentication failed, invalid user ID or password"`
	cluster.Eventually(t, 60*time.Second, "host "+h.MachineID+" refused, its log saying "+want, func() bool {
		return strings.Contains(h.Log(), want)
	})
	res := c.Hosts[0].Fleetctl("list-machines", "--no-legend", "--full")
	if res.Exit != 0 || strings.Contains(res.Stdout, h.MachineID) {
		t.Errorf("list-machines: exit %d, stdout %q; want it without %s", res.Exit, res.Stdout, h.MachineID)
	}
	h.Kill()
}
