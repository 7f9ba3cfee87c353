package fleetd

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
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
