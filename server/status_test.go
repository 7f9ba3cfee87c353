package server

import (
	"errors"
	"net"
	"path/filepath"
	"testing"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/systemd"
)

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

func TestLocalJournalUnavailableNamesTheMachine(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "no-journald")
	l := &LocalUnits{MachineID: "m1", Logs: systemd.NewJournal(systemd.JournalConfig{Socket: sock})}
	_, err := l.Journal(t.Context(), "a.service", api.JournalOptions{Lines: 10})
	want := "journal unavailable on machine m1: journald is not running (no " + sock + ")"
	if err == nil || err.Error() != want {
		t.Fatalf("Journal error = %v, want %q", err, want)
	}
	if !errors.Is(err, systemd.ErrJournalUnavailable) {
		t.Errorf("error does not match systemd.ErrJournalUnavailable")
	}
	var ju interface{ JournalUnavailable() bool }
	if !errors.As(err, &ju) || !ju.JournalUnavailable() {
		t.Errorf("error has no JournalUnavailable() true in its chain")
	}
}
