package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleet-next/fleet/access"
	"github.com/fleet-next/fleet/test/cluster"
)

// runAs runs fleetctl (a copy anyone may execute) against endpoint as uid
// and gid 65534, nobody, with no supplementary groups.
func runAs(t *testing.T, fleetctl, endpoint string, args ...string) cluster.Result {
	t.Helper()
	return runArgv(t, append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", fleetctl, "--endpoint", endpoint}, args...)...)
}

// runArgv runs argv for at most two minutes, failing the test if it cannot
// be run.
func runArgv(t *testing.T, argv ...string) cluster.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := cluster.Run(ctx, argv...)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// publicFleetctl copies fleetctl where user nobody can run it.
func publicFleetctl(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fleetctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(cluster.Binaries(t), "fleetctl"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "fleetctl")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustRun(t *testing.T, what string, r cluster.Result) {
	t.Helper()
	if r.Exit != 0 {
		t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", what, r.Exit, r.Stdout, r.Stderr)
	}
}

func mustRefuse(t *testing.T, what string, r cluster.Result, msg string) {
	t.Helper()
	if r.Exit == 0 || !strings.Contains(r.Stderr, msg) {
		t.Fatalf("%s: exit %d, stderr %q; want a non-zero exit saying %q", what, r.Exit, r.Stderr, msg)
	}
}

// apiURL is the TCP API address host h publishes, once it has the scheme
// wanted.
func apiURL(t *testing.T, c *cluster.Cluster, h *cluster.Host, scheme string) string {
	t.Helper()
	var url string
	cluster.Eventually(t, 30*time.Second, "host publishes a "+scheme+" API URL", func() bool {
		ms, err := c.Registry().Machines(context.Background())
		if err != nil {
			return false
		}
		for _, m := range ms {
			if m.ID == h.MachineID && strings.HasPrefix(m.APIURL, scheme+"://") {
				url = m.APIURL
				return true
			}
		}
		return false
	})
	return url
}

func TestAccessControlEndToEnd(t *testing.T) {
	c := newCluster(t, cluster.Options{Hosts: 1, Env: []string{"FLEET_API_SOCKET_MODE=0666"}})
	h := c.Hosts[0]
	c.WaitMachines(1)
	// Only the socket's mode keeps nobody out from here on.
	if err := os.Chmod(h.Dir, 0o711); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(h.Socket); err != nil || fi.Mode().Perm() != 0o666 {
		t.Fatalf("socket mode: %v %v, want 0666", fi.Mode(), err)
	}
	fleetctl := publicFleetctl(t)
	nobody := func(args ...string) cluster.Result { return runAs(t, fleetctl, h.Endpoint, args...) }

	dir, err := os.MkdirTemp("", "units") // t.TempDir's parent is private
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	for _, n := range []string{"web-1.service", "db.service"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(helloUnit), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	// Nothing until granted; a refused submit stores nothing.
	mustRefuse(t, "nobody list-units", nobody("list-units"), "user:nobody may not read")
	// fleetctl reads the unit before it writes it.
	mustRefuse(t, "nobody submit", nobody("submit", filepath.Join(dir, "web-1.service")), "user:nobody may not read web-1.service")
	if r := h.Fleetctl("list-unit-files", "--no-legend"); r.Exit != 0 || strings.TrimSpace(r.Stdout) != "" {
		t.Fatalf("after a refused submit: list-unit-files = %q (exit %d), want nothing", r.Stdout, r.Exit)
	}
	me := nobody("whoami", "-o", "json")
	mustRun(t, "nobody whoami", me)
	var who struct{ Subjects []string }
	if err := json.Unmarshal([]byte(me.Stdout), &who); err != nil || strings.Join(who.Subjects, " ") != "user:nobody uid:65534 group:nogroup" {
		t.Fatalf("whoami = %q (%v)", me.Stdout, err)
	}

	// Viewer: lists.
	mustRun(t, "grant viewer", h.Fleetctl("acl", "grant", "viewer", "user:nobody"))
	mustRun(t, "nobody list-units as viewer", nobody("list-units"))
	mustRefuse(t, "viewer submit", nobody("submit", filepath.Join(dir, "web-1.service")), "user:nobody may not submit web-1.service")
	if r := h.Fleetctl("list-unit-files", "--no-legend"); r.Exit != 0 || strings.TrimSpace(r.Stdout) != "" {
		t.Fatalf("after a refused submit: list-unit-files = %q (exit %d), want nothing", r.Stdout, r.Exit)
	}
	mustRun(t, "root submit", h.Fleetctl("submit", filepath.Join(dir, "web-1.service"), filepath.Join(dir, "db.service")))
	mustRefuse(t, "viewer start", nobody("start", "--no-block", "web-1.service"), "user:nobody may not start web-1.service")

	// Operator of web-*: start and stop those only.
	mustRun(t, "grant operator web-*", h.Fleetctl("acl", "grant", "operator", "user:nobody", "--units", "web-*"))
	mustRun(t, "nobody start web-1", nobody("start", "web-1.service")) // waits until it runs
	mustRefuse(t, "nobody start db", nobody("start", "--no-block", "db.service"), "user:nobody may not start db.service")
	mustRun(t, "nobody stop web-1", nobody("stop", "--no-block", "web-1.service"))
	mustRefuse(t, "nobody destroy web-1", nobody("destroy", "web-1.service"), "user:nobody may not destroy web-1.service")
	mustRefuse(t, "nobody reads the audit trail", nobody("audit"), "user:nobody may not read the audit trail")

	// The audit trail has each of them, under nobody's subject.
	r := h.Fleetctl("audit", "-o", "json", "--subject", "user:nobody")
	mustRun(t, "audit", r)
	var entries []access.Entry
	if err := json.Unmarshal([]byte(r.Stdout), &entries); err != nil {
		t.Fatalf("audit -o json: %v\n%s", err, r.Stdout)
	}
	var got []string
	for _, e := range entries {
		if e.Machine != h.MachineID || !strings.HasPrefix(e.From, "unix:"+h.Socket+" pid ") {
			t.Errorf("entry %+v: want machine %s and the socket as origin", e, h.MachineID)
		}
		target := e.Target
		if target == "" {
			target = "-"
		}
		got = append(got, string(e.Action)+" "+target+" "+strconv.Itoa(e.Code))
	}
	want := []string{"read - 403", "read web-1.service 403", "submit web-1.service 403", "start web-1.service 403",
		"start web-1.service 204", "start db.service 403", "stop web-1.service 204", "destroy web-1.service 403", "audit - 403"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("audit of user:nobody:\n got %v\nwant %v", got, want)
	}

	// Plain TCP: anonymous, nothing until granted.
	plain := apiURL(t, c, h, "http")
	if code, body := get(t, http.DefaultClient, plain+"/fleet/v1/units"); code != http.StatusForbidden || !strings.Contains(body, "anonymous may not read") {
		t.Fatalf("anonymous GET /units: %d %s", code, body)
	}
	mustRun(t, "grant viewer anonymous", h.Fleetctl("acl", "grant", "viewer", "anonymous"))
	if code, body := get(t, http.DefaultClient, plain+"/fleet/v1/units"); code != http.StatusOK {
		t.Fatalf("anonymous viewer GET /units: %d %s", code, body)
	}
	mustRun(t, "revoke viewer anonymous", h.Fleetctl("acl", "revoke", "viewer", "anonymous"))

	// TLS with client certificates: CN maps to cn:NAME; a certificate of
	// another CA is refused at the handshake.
	pki := t.TempDir()
	ca := newCA(t, "fleet test CA")
	other := newCA(t, "another CA")
	ca.writeCert(t, filepath.Join(pki, "ca.pem"))
	ca.issue(t, "fleetd", true, filepath.Join(pki, "server"))
	ca.issue(t, "ci-bot", false, filepath.Join(pki, "client"))
	other.issue(t, "ci-bot", false, filepath.Join(pki, "stranger"))
	h.Stop(syscall.SIGTERM)
	h.SetEnv("FLEET_API_TLS_CERT_FILE", filepath.Join(pki, "server.pem"))
	h.SetEnv("FLEET_API_TLS_KEY_FILE", filepath.Join(pki, "server-key.pem"))
	h.SetEnv("FLEET_API_TLS_CLIENT_CA_FILE", filepath.Join(pki, "ca.pem"))
	h.Start()
	secure := apiURL(t, c, h, "https")
	tlsctl := func(name string, args ...string) cluster.Result {
		return fleetctlAt(t, secure, append([]string{"--ca-file", filepath.Join(pki, "ca.pem"),
			"--cert-file", filepath.Join(pki, name+".pem"), "--key-file", filepath.Join(pki, name+"-key.pem")}, args...)...)
	}
	me = tlsctl("client", "whoami", "-o", "json")
	mustRun(t, "TLS whoami", me)
	if err := json.Unmarshal([]byte(me.Stdout), &who); err != nil || strings.Join(who.Subjects, " ") != "cn:ci-bot o:fleet-e2e" {
		t.Fatalf("TLS whoami = %q (%v)", me.Stdout, err)
	}
	mustRefuse(t, "cn:ci-bot list-units", tlsctl("client", "list-units"), "cn:ci-bot may not read")
	mustRun(t, "grant viewer cn:ci-bot", h.Fleetctl("acl", "grant", "viewer", "cn:ci-bot"))
	mustRun(t, "cn:ci-bot list-units", tlsctl("client", "list-units"))
	if r := tlsctl("stranger", "list-units"); r.Exit == 0 || !strings.Contains(r.Stderr, "tls") {
		t.Fatalf("certificate of another CA: exit %d, stderr %q; want a TLS failure", r.Exit, r.Stderr)
	}
	// The handshake itself fails: no HTTP answer at all.
	strangerCert, err := tls.LoadX509KeyPair(filepath.Join(pki, "stranger.pem"), filepath.Join(pki, "stranger-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", strings.TrimPrefix(secure, "https://"), &tls.Config{RootCAs: ca.pool(),
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &strangerCert, nil }})
	if err == nil {
		err = conn.Handshake()
		if err == nil {
			// TLS 1.3 reports the client certificate's refusal on the first read.
			_, err = conn.Read(make([]byte, 1))
		}
		conn.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("handshake with a certificate of another CA: %v, want a certificate error", err)
	}
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// fleetctlAt runs fleetctl as root against endpoint.
func fleetctlAt(t *testing.T, endpoint string, args ...string) cluster.Result {
	t.Helper()
	return runArgv(t, append([]string{filepath.Join(cluster.Binaries(t), "fleetctl"), "--endpoint", endpoint}, args...)...)
}

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	der  []byte
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, der: der}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

func (ca *testCA) writeCert(t *testing.T, path string) {
	t.Helper()
	writePEM(t, path, "CERTIFICATE", ca.der)
}

// issue writes base.pem and base-key.pem: a server certificate for
// 127.0.0.1, or a client certificate of organization fleet-e2e.
func (ca *testCA) issue(t *testing.T, cn string, server bool, base string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn, Organization: []string{"fleet-e2e"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, base+".pem", "CERTIFICATE", der)
	writePEM(t, base+"-key.pem", "EC PRIVATE KEY", kder)
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
