package fleetd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestToOpen(t *testing.T) {
	def := DefaultConfig().APIListen
	tests := []struct {
		name      string
		apiListen []string
		explicit  bool
		activated []string
		want      []string
	}{
		{name: "no activation, default", apiListen: def, want: def},
		{name: "no activation, explicit", apiListen: []string{"tcp://127.0.0.1:49153"}, explicit: true,
			want: []string{"tcp://127.0.0.1:49153"}},
		{name: "activation replaces the default", apiListen: def, activated: []string{"unix:///run/fleet.sock"}},
		{name: "activation and explicit entries are both served",
			apiListen: []string{"unix:///run/fleet-admin.sock", "tcp://0.0.0.0:49153"}, explicit: true,
			activated: []string{"unix:///var/run/fleet.sock"},
			want:      []string{"unix:///run/fleet-admin.sock", "tcp://0.0.0.0:49153"}},
		{name: "an explicit entry already activated is not opened again",
			apiListen: []string{"unix:///var/run/fleet.sock", "tcp://127.0.0.1:49153"}, explicit: true,
			activated: []string{"unix:///var/run/fleet.sock"}, want: []string{"tcp://127.0.0.1:49153"}},
		{name: "another spelling of an activated socket is not opened again",
			apiListen: []string{"unix:///var/run/fleet.sock"}, explicit: true,
			activated: []string{"unix:///run/fleet.sock"}},
	}
	// /var/run is a link to /run here.
	canon := func(l string) string { return strings.Replace(l, "unix:///var/run/", "unix:///run/", 1) }
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := toOpen(tt.apiListen, tt.explicit, tt.activated, canon); !slices.Equal(got, tt.want) {
				t.Errorf("toOpen = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestListenAddr(t *testing.T) {
	tests := []struct {
		name string
		addr net.Addr
		want string
	}{
		{"unix", &net.UnixAddr{Net: "unix", Name: "/run/fleet.sock"}, "unix:///run/fleet.sock"},
		{"tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 49153}, "tcp://127.0.0.1:49153"},
		{"tcp6", &net.TCPAddr{IP: net.IPv6loopback, Port: 49153}, "tcp://[::1]:49153"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := listenAddr(tt.addr)
			if got != tt.want {
				t.Errorf("listenAddr = %q, want %q", got, tt.want)
			}
			if _, _, err := ParseListen(got); err != nil {
				t.Errorf("listenAddr gave %q, which api_listen rejects: %v", got, err)
			}
		})
	}
}

// TestWatchdogPingsOnlyWhileHealthy drives runWatchdog through a health
// sequence and checks that a ping follows every healthy check and nothing
// else.
func TestWatchdogPingsOnlyWhileHealthy(t *testing.T) {
	tests := []struct {
		name   string
		health []bool
	}{
		{name: "always healthy", health: []bool{true, true, true, true}},
		{name: "never healthy", health: []bool{false, false, false}},
		{name: "recovers", health: []bool{false, false, true, true}},
		{name: "gets stuck", health: []bool{true, true, false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var sent []string
			var pingedAfter []int // index of the health check each ping followed
			checks := 0
			healthy := func() bool {
				if checks == len(tt.health) {
					cancel()
					return false
				}
				checks++
				return tt.health[checks-1]
			}
			send := func(state string) {
				sent = append(sent, state)
				pingedAfter = append(pingedAfter, checks-1)
			}
			runWatchdog(ctx, 2_000_000, healthy, send) // 2ms: pings every 1ms
			var want []int
			for i, h := range tt.health {
				if h {
					want = append(want, i)
				}
			}
			if !slices.Equal(pingedAfter, want) {
				t.Errorf("pings after checks %v, want %v", pingedAfter, want)
			}
			for _, s := range sent {
				if s != "WATCHDOG=1" {
					t.Errorf("sent %q, want WATCHDOG=1", s)
				}
			}
		})
	}
}

func TestCanonListen(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "run")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "varrun")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	realDir, err := filepath.EvalSymlinks(real)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, in, want string
	}{
		{"through a link", "unix://" + link + "/fleet.sock", "unix://" + realDir + "/fleet.sock"},
		{"already canonical", "unix://" + realDir + "/fleet.sock", "unix://" + realDir + "/fleet.sock"},
		{"missing directory kept", "unix://" + dir + "/none/fleet.sock", "unix://" + dir + "/none/fleet.sock"},
		{"tcp kept", "tcp://127.0.0.1:49153", "tcp://127.0.0.1:49153"},
		{"invalid kept", "udp://x", "udp://x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := canonListen(tt.in); got != tt.want {
				t.Errorf("canonListen(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestPublishedAPIURL(t *testing.T) {
	tcp := func(ip string, port int) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: port} }
	unix := &net.UnixAddr{Name: "/run/fleet.sock", Net: "unix"}
	tests := []struct {
		name     string
		addrs    []net.Addr
		publicIP string
		want     string
	}{
		{"unix only", []net.Addr{unix}, "10.0.0.1", ""},
		{"first tcp after a unix socket", []net.Addr{unix, tcp("127.0.0.1", 4001), tcp("10.0.0.1", 4002)}, "", "http://127.0.0.1:4001"},
		{"any IPv4 address uses the public IP", []net.Addr{tcp("0.0.0.0", 49152)}, "10.0.0.7", "http://10.0.0.7:49152"},
		{"any IPv6 address uses the public IP", []net.Addr{tcp("::", 8080)}, "10.0.0.7", "http://10.0.0.7:8080"},
		{"any address without a public IP", []net.Addr{tcp("0.0.0.0", 8080)}, "", "http://127.0.0.1:8080"},
		{"IPv6 host is bracketed", []net.Addr{tcp("fd00::1", 8080)}, "", "http://[fd00::1]:8080"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := publishedAPIURL(tc.addrs, tc.publicIP); got != tc.want {
				t.Errorf("publishedAPIURL = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestPublishedAPIURLRealListener checks that port 0 publishes the port
// the kernel chose.
func TestPublishedAPIURLRealListener(t *testing.T) {
	ln, err := listen("tcp://127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	got := publishedAPIURL(apiAddrs([]apiListener{{ln: ln, addr: "tcp://127.0.0.1:0"}}), "")
	if want := "http://" + ln.Addr().String(); got != want || got == "http://127.0.0.1:0" {
		t.Errorf("publishedAPIURL = %q, want %q", got, want)
	}
}

// sockPath is a socket path in a fresh directory, short enough for
// sun_path.
func sockPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "fleet.sock")
}

func TestListenUnixRefusesWhatIsNotAStaleSocket(t *testing.T) {
	t.Run("regular file", func(t *testing.T) {
		path := sockPath(t)
		if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := listen("unix://" + path)
		if err == nil || !strings.Contains(err.Error(), "a regular file is at that path, not a socket: refusing to replace it") {
			t.Fatalf("listen over a regular file = %v", err)
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != "precious" {
			t.Fatalf("the file is now %q, %v", b, err)
		}
	})
	t.Run("symbolic link", func(t *testing.T) {
		path := sockPath(t)
		target := filepath.Join(filepath.Dir(path), "target")
		if err := os.WriteFile(target, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
		if _, err := listen("unix://" + path); err == nil || !strings.Contains(err.Error(), "a symbolic link is at that path") {
			t.Fatalf("listen over a symbolic link = %v", err)
		}
		if _, err := os.Lstat(target); err != nil {
			t.Fatalf("target: %v", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		path := sockPath(t)
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := listen("unix://" + path); err == nil || !strings.Contains(err.Error(), "a directory is at that path") {
			t.Fatalf("listen over a directory = %v", err)
		}
	})
	t.Run("live socket", func(t *testing.T) {
		path := sockPath(t)
		first, err := listen("unix://" + path)
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		_, err = listen("unix://" + path)
		if err == nil || !strings.Contains(err.Error(), "another process serves this socket (is another fleetd running?)") {
			t.Fatalf("second listen = %v", err)
		}
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("the first listener lost its socket: %v", err)
		}
		conn.Close()
	})
}

func TestListenUnixReplacesAStaleSocket(t *testing.T) {
	path := sockPath(t)
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close() // a socket file nothing answers on, as a killed fleetd leaves it
	ln, err := listen("unix://" + path)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	if got := listenAddr(ln.Addr()); got != "unix://"+path {
		t.Errorf("address %q, want unix://%s", got, path)
	}
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	conn.Close()
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the socket", len(entries))
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket after Close: %v, want it removed", err)
	}
}

// TestListenUnixModeWhateverTheUmask creates the socket under umask 000
// and 077: its mode is 0660 either way.
func TestListenUnixModeWhateverTheUmask(t *testing.T) {
	for _, mask := range []int{0o000, 0o077} {
		t.Run(fmt.Sprintf("umask %03o", mask), func(t *testing.T) {
			path := sockPath(t)
			old := syscall.Umask(mask)
			ln, err := listen("unix://" + path)
			syscall.Umask(old)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o660 {
				t.Errorf("socket mode %v, want socket 0660", fi.Mode())
			}
		})
	}
}

// TestUnixSocketCloseKeepsAnotherSocket closes a listener whose path
// another socket took: that socket stays.
func TestUnixSocketCloseKeepsAnotherSocket(t *testing.T) {
	path := sockPath(t)
	ln, err := listen("unix://" + path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	other, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("the other socket was removed: %v", err)
	}
}

func TestAllowedHost(t *testing.T) {
	loop := netip.MustParseAddr("127.0.0.1")
	any4 := netip.MustParseAddr("0.0.0.0")
	any6 := netip.MustParseAddr("::")
	lan := netip.MustParseAddr("10.0.0.5")
	tests := []struct {
		name     string
		host     string
		ip       netip.Addr
		hostname string
		want     bool
	}{
		{"no host", "", loop, "node1", true},
		{"the listener's address", "127.0.0.1:49153", loop, "node1", true},
		{"any port", "127.0.0.1:1", loop, "node1", true},
		{"no port", "127.0.0.1", loop, "node1", true},
		{"another loopback address", "127.0.0.2:49153", loop, "node1", false},
		{"IPv6 loopback on an IPv4 listener", "[::1]:49153", loop, "node1", false},
		{"localhost", "localhost:49153", loop, "node1", true},
		{"localhost, any case, final dot", "LocalHost.:49153", loop, "node1", true},
		{"a name under localhost", "api.localhost", loop, "node1", true},
		{"a rebinding name", "evil.example:49153", loop, "node1", false},
		{"localhost as a prefix", "localhost.evil.example", loop, "node1", false},
		{"the host name on a loopback listener", "node1:49153", loop, "node1", false},
		{"the host name on a LAN listener", "node1:49153", lan, "node1", true},
		{"the short host name", "NODE1:49153", lan, "node1.example.com", true},
		{"the full host name", "node1.example.com", lan, "node1.example.com", true},
		{"another name on a LAN listener", "node2:49153", lan, "node1", false},
		{"the LAN address", "10.0.0.5:49153", lan, "node1", true},
		{"localhost on a LAN listener", "localhost:49153", lan, "node1", false},
		{"no host name known", "node1", lan, "", false},
		{"any address on a wildcard listener", "192.0.2.7:49153", any4, "node1", true},
		{"IPv6 on a wildcard listener", "[fd00::1]:49153", any6, "node1", true},
		{"IPv6 without a port", "[fd00::1]", any6, "node1", true},
		{"localhost on a wildcard listener", "localhost", any4, "node1", true},
		{"the host name on a wildcard listener", "node1", any4, "node1", true},
		{"a rebinding name on a wildcard listener", "evil.example", any4, "node1", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := allowedHost(tc.host, tc.ip, tc.hostname); got != tc.want {
				t.Errorf("allowedHost(%q, %v, %q) = %v, want %v", tc.host, tc.ip, tc.hostname, got, tc.want)
			}
		})
	}
}

// testLimits are short limits, so that the tests see them act.
var testLimits = serverLimits{
	readHeader: 200 * time.Millisecond,
	read:       300 * time.Millisecond,
	write:      300 * time.Millisecond,
	idle:       200 * time.Millisecond,
	maxHeader:  4 << 10,
}

// startServer serves a handler that reads the whole body and answers
// "ok" on a new listener l ("tcp://127.0.0.1:0" or a unix socket) under
// testLimits.
func startServer(t *testing.T, l string) net.Addr {
	t.Helper()
	ln, err := listen(l)
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	srv := newAPIServer(ln, h, testLimits, "node1", []string{"fleet.example.com"})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr()
}

// waitClosed reads conn until the server closes it. The read deadline
// only keeps a server that never closes from hanging the test.
func waitClosed(t *testing.T, conn net.Conn) string {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server held the connection (read so far %q)", b)
	}
	return string(b)
}

func TestAPIServerLimits(t *testing.T) {
	addr := startServer(t, "tcp://127.0.0.1:0")
	dial := func(t *testing.T) net.Conn {
		conn, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	t.Run("a stalled body", func(t *testing.T) {
		conn := dial(t)
		fmt.Fprintf(conn, "PUT /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n0123456789")
		if got := waitClosed(t, conn); strings.Contains(got, "200 OK") {
			t.Errorf("a stalled body was answered %q", got)
		}
	})
	t.Run("stalled headers", func(t *testing.T) {
		conn := dial(t)
		fmt.Fprintf(conn, "GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n")
		waitClosed(t, conn)
	})
	t.Run("an idle keep-alive connection", func(t *testing.T) {
		conn := dial(t)
		fmt.Fprintf(conn, "GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		if got := waitClosed(t, conn); !strings.HasPrefix(got, "HTTP/1.1 200 OK") || !strings.HasSuffix(got, "ok") {
			t.Errorf("answer %q, want 200 ok before the idle connection was closed", got)
		}
	})
	t.Run("headers too large", func(t *testing.T) {
		conn := dial(t)
		fmt.Fprintf(conn, "GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: %s\r\n\r\n", strings.Repeat("b", 8<<10))
		if got := waitClosed(t, conn); !strings.HasPrefix(got, "HTTP/1.1 431 ") {
			t.Errorf("answer %q, want 431", got)
		}
	})
}

func TestAPIServerChecksHostOnTCPOnly(t *testing.T) {
	tcp := startServer(t, "tcp://127.0.0.1:0")
	port := tcp.(*net.TCPAddr).Port
	get := func(t *testing.T, network, addr, host string) (int, string) {
		t.Helper()
		client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}}
		defer client.CloseIdleConnections()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+host+"/fleet/v1/units", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, host := range []string{"127.0.0.1:" + strconv.Itoa(port), "localhost:" + strconv.Itoa(port), "127.0.0.1",
		"fleet.example.com:" + strconv.Itoa(port), "FLEET.example.com."} { // the last two from api_allowed_hosts
		if code, body := get(t, "tcp", tcp.String(), host); code != http.StatusOK {
			t.Errorf("Host %s: %d %s, want 200", host, code, body)
		}
	}
	code, body := get(t, "tcp", tcp.String(), "rebind.evil.example:"+strconv.Itoa(port))
	want := fmt.Sprintf(`{"error":{"code":403,"message":"host \"rebind.evil.example:%d\" is not an address of this fleet API listener (%s): use its IP address, or localhost"}}`+"\n", port, tcp)
	if code != http.StatusForbidden || body != want {
		t.Errorf("a rebinding name: %d %q, want 403 %q", code, body, want)
	}
	unix := startServer(t, "unix://"+sockPath(t))
	if code, body := get(t, "unix", unix.String(), "rebind.evil.example"); code != http.StatusOK {
		t.Errorf("unix socket: %d %s, want 200 whatever the Host", code, body)
	}
}

// TestServeAPILogsTheBoundAddress checks the "API listening" line of a
// tcp port 0 listener.
func TestServeAPILogsTheBoundAddress(t *testing.T) {
	ln, err := listen("tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	servers := serveAPI([]apiListener{{ln: ln, addr: "tcp://127.0.0.1:0"}}, 0, http.NotFoundHandler(), nil, nil, log)
	for _, s := range servers {
		defer s.Close()
	}
	want := fmt.Sprintf("listen=tcp://%s ", ln.Addr())
	if !strings.Contains(buf.String(), "msg=\"API listening\" "+want) || strings.Contains(buf.String(), ":0 ") {
		t.Errorf("log %q, want the bound address %q", buf.String(), want)
	}
	if servers[0].ReadTimeout == 0 || servers[0].WriteTimeout == 0 || servers[0].IdleTimeout == 0 ||
		servers[0].ReadHeaderTimeout == 0 || servers[0].MaxHeaderBytes == 0 {
		t.Errorf("server limits not set: %+v", servers[0])
	}
}
