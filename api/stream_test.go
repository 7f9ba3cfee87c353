package api_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/api/localunits"
	"github.com/fleet-next/fleet/systemd"
	"github.com/fleet-next/fleet/unit"
)

// TestJournalStreamOutlivesServerTimeouts follows a journal, locally and
// forwarded, through servers whose read and write timeouts are far
// shorter than the stream: the stream must last until the client leaves.
func TestJournalStreamOutlivesServerTimeouts(t *testing.T) {
	if _, err := exec.LookPath("journalctl"); err != nil {
		t.Skip("journalctl is not installed")
	}
	sock := filepath.Join(t.TempDir(), "socket")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	local := &localunits.LocalUnits{MachineID: "m1", Logs: systemd.NewJournal(systemd.JournalConfig{Socket: sock})}
	e := newEnv(t, api.Options{})
	const timeout = 100 * time.Millisecond
	serve := func(h http.Handler) *httptest.Server {
		srv := httptest.NewUnstartedServer(h)
		srv.Config.ReadTimeout, srv.Config.WriteTimeout = timeout, timeout
		srv.Start()
		t.Cleanup(srv.Close)
		return srv
	}
	owner := &inFlight{h: api.NewHandler(e.reg, api.Options{MachineID: "m1", Local: local})}
	srv1 := serve(owner)
	srv2 := serve(api.NewHandler(e.reg, api.Options{MachineID: "m2"}))
	e.registerMachine(unit.Machine{ID: "m1", APIURL: srv1.URL})
	e.registerMachine(unit.Machine{ID: "m2", APIURL: srv2.URL})
	e.place("hello.service", "m1")

	for _, tc := range []struct{ name, url string }{{"local", srv1.URL}, {"forwarded", srv2.URL}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, tc.url+"/fleet/v1/units/hello.service/journal?follow=true", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			done := make(chan error, 1)
			go func() {
				_, err := io.Copy(io.Discard, resp.Body)
				done <- err
			}()
			waitFor(t, "the owner to stream", func() bool { return owner.n.Load() == 1 })
			time.Sleep(10 * timeout) // the stream must outlive the servers' timeouts
			select {
			case err := <-done:
				t.Fatalf("the stream ended after the servers' timeouts (%v), while the client still read", err)
			default:
			}
			cancel()
			<-done
			waitFor(t, "the owner to stop streaming", func() bool { return owner.n.Load() == 0 })
		})
	}
}
