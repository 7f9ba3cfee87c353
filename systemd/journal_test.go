package systemd_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleet-next/fleet/internal/testenv"
	"github.com/fleet-next/fleet/systemd"
)

// fakeJournaldSocket binds a unix socket where journald's would be, so
// that Read finds "journald running"; journalctl itself is the real one
// and reads whatever journal files the host has.
func fakeJournaldSocket(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "socket")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		t.Fatalf("bind %s: %v", p, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return p
}

func TestJournalUnavailable(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		name    string
		cfg     systemd.JournalConfig
		wantMsg string
	}{
		{"no socket", systemd.JournalConfig{Socket: missing},
			"journal unavailable: journald is not running (no " + missing + ")"},
		{"not a socket", systemd.JournalConfig{Socket: regular},
			"journal unavailable: journald is not running (" + regular + " is not a socket)"},
		{"no journalctl", systemd.JournalConfig{Socket: fakeJournaldSocket(t), Command: filepath.Join(dir, "journalctl")},
			"journal unavailable: no journalctl: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := systemd.NewJournal(tc.cfg).Read(t.Context(), "a.service", systemd.JournalOptions{Lines: 5})
			if err == nil {
				_ = rc.Close()
				t.Fatal("Read succeeded, want journal unavailable")
			}
			if !errors.Is(err, systemd.ErrJournalUnavailable) {
				t.Errorf("error %v does not match ErrJournalUnavailable", err)
			}
			var ju interface{ JournalUnavailable() bool }
			if !errors.As(err, &ju) || !ju.JournalUnavailable() {
				t.Errorf("error %v has no JournalUnavailable() true", err)
			}
			if !strings.HasPrefix(err.Error(), tc.wantMsg) {
				t.Errorf("error = %q, want prefix %q", err, tc.wantMsg)
			}
		})
	}
}

// TestJournalDefaultSocket checks the default configuration against this
// host: without journald's socket Read must say so; with it, Read must run.
func TestJournalDefaultSocket(t *testing.T) {
	testenv.LookPath(t, "journalctl")
	rc, err := systemd.NewJournal(systemd.JournalConfig{}).Read(t.Context(), "fleet-test-none.service",
		systemd.JournalOptions{Lines: 1, Quiet: true})
	if _, statErr := os.Stat(systemd.DefaultJournalSocket); statErr != nil {
		want := "journal unavailable: journald is not running (no /run/systemd/journal/socket)"
		if err == nil || err.Error() != want {
			t.Fatalf("Read without journald: err = %v, want %q", err, want)
		}
		return
	}
	if err != nil {
		t.Fatalf("Read with journald running: %v", err)
	}
	if _, err := io.ReadAll(rc); err != nil {
		t.Errorf("read: %v", err)
	}
	if err := rc.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestJournalRunsJournalctl runs the real journalctl with the arguments
// Read builds, for a unit that has no entries.
func TestJournalRunsJournalctl(t *testing.T) {
	testenv.LookPath(t, "journalctl")
	sock := fakeJournaldSocket(t)
	tests := []struct {
		name      string
		user      bool
		opts      systemd.JournalOptions
		wantOut   string
		wantClose string // "" = Close succeeds, else a substring of its error
	}{
		{name: "system unit", opts: systemd.JournalOptions{Lines: 10, Output: "short"}, wantOut: "-- No entries --\n"},
		{name: "user unit", user: true, opts: systemd.JournalOptions{Lines: 3, Output: "short-iso"}, wantOut: "-- No entries --\n"},
		{name: "json has no informational lines", opts: systemd.JournalOptions{Lines: 3, Output: "json"}, wantOut: ""},
		{name: "quiet", opts: systemd.JournalOptions{Lines: 10, Quiet: true}, wantOut: ""},
		{name: "journalctl refuses", opts: systemd.JournalOptions{Output: "no-such-mode"},
			wantClose: "Unknown output format 'no-such-mode'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			j := systemd.NewJournal(systemd.JournalConfig{Socket: sock, User: tc.user})
			rc, err := j.Read(ctx, "fleet-test-none.service", tc.opts)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			out, err := io.ReadAll(rc)
			if err != nil {
				t.Errorf("read: %v", err)
			}
			if string(out) != tc.wantOut {
				t.Errorf("output = %q, want %q", out, tc.wantOut)
			}
			err = rc.Close()
			switch {
			case tc.wantClose == "" && err != nil:
				t.Errorf("Close: %v", err)
			case tc.wantClose != "" && (err == nil || !strings.Contains(err.Error(), tc.wantClose)):
				t.Errorf("Close = %v, want an error containing %q", err, tc.wantClose)
			}
		})
	}
}

// TestJournalFollowEnds checks that a followed journal, which journalctl
// never ends by itself, ends when the stream is closed or ctx ends, and
// that neither is reported as a failure.
func TestJournalFollowEnds(t *testing.T) {
	testenv.LookPath(t, "journalctl")
	j := systemd.NewJournal(systemd.JournalConfig{Socket: fakeJournaldSocket(t)})
	tests := []struct {
		name string
		stop func(cancel context.CancelFunc, rc io.ReadCloser) error
	}{
		{"close", func(_ context.CancelFunc, rc io.ReadCloser) error { return rc.Close() }},
		{"cancel", func(cancel context.CancelFunc, rc io.ReadCloser) error {
			cancel()
			if _, err := io.ReadAll(rc); err != nil {
				return err
			}
			return rc.Close()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			rc, err := j.Read(ctx, "fleet-test-none.service", systemd.JournalOptions{Lines: 1, Follow: true, Quiet: true})
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			// Let journalctl settle into following before stopping it.
			ended := make(chan struct{})
			go func() {
				defer close(ended)
				buf := make([]byte, 64)
				_, _ = rc.Read(buf)
			}()
			select {
			case <-ended:
				t.Fatal("a followed journal ended by itself")
			case <-time.After(300 * time.Millisecond):
			}
			if err := tc.stop(cancel, rc); err != nil {
				t.Errorf("stop: %v", err)
			}
			<-ended
		})
	}
}
