package api_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/api/localunits"
	"github.com/fleet-next/fleet/internal/testenv"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/systemd"
	"github.com/fleet-next/fleet/systemd/launch"
	"github.com/fleet-next/fleet/unit"
)

// place stores a unit running cmd and places it on machine.
func (e *testEnv) place(name, machine string) {
	e.t.Helper()
	o := serviceOpts("Hello", "/bin/sleep 3600")
	e.storeUnit(name, o, unit.StateLaunched)
	e.schedule(registry.Place(unit.Placement{Unit: name, Machine: machine,
		Hash: canonical(e.t, o).Hash(), Desired: unit.StateLaunched}))
}

// closedURL is the URL of a TCP port nothing listens on any more.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestUnitMachineRequestErrors(t *testing.T) {
	const here = "m-here"
	e := newEnv(t, api.Options{MachineID: here})
	deadURL := closedURL(t)
	e.registerMachine(unit.Machine{ID: here})
	e.registerMachine(unit.Machine{ID: "m-nourl"})
	e.registerMachine(unit.Machine{ID: "m-dead", APIURL: deadURL})
	e.place("noaddr.service", "m-nourl")
	e.place("lost.service", "m-gone")
	e.place("dead.service", "m-dead")
	e.place("here.service", here)
	e.storeUnit("idle.service", serviceOpts("idle", "/bin/true"), unit.StateLaunched)
	e.storeUnit("global.service", append(serviceOpts("g", "/bin/true"), opts("X-Fleet", "Global", "true")...),
		unit.StateLaunched)

	tests := []struct {
		name   string
		method string
		path   string
		hdr    []string
		code   int
		msg    string
		prefix bool // msg is a prefix
	}{
		{name: "unknown unit", path: "/fleet/v1/units/missing.service/status",
			code: 404, msg: "unit does not exist"},
		{name: "not GET", method: http.MethodPost, path: "/fleet/v1/units/here.service/journal",
			code: 405, msg: "only GET supported against this resource"},
		{name: "global unit without machine", path: "/fleet/v1/units/global.service/status",
			code: 400, msg: "unit global.service is global: name a machineID"},
		{name: "unscheduled unit", path: "/fleet/v1/units/idle.service/journal",
			code: 409, msg: "unit idle.service is not scheduled"},
		{name: "unscheduled unit under v1-alpha", path: "/v1-alpha/units/idle.service/status",
			code: 409, msg: "unit idle.service is not scheduled"},
		{name: "owner publishes no API URL", path: "/fleet/v1/units/noaddr.service/status",
			code: 502, msg: "machine m-nourl publishes no API address; give it a tcp:// api_listen"},
		{name: "named machine not in the cluster", path: "/fleet/v1/units/global.service/status?machineID=nosuch",
			code: 400, msg: "machine nosuch is not in the cluster"},
		{name: "placement on a machine that left", path: "/fleet/v1/units/lost.service/journal",
			code: 502, msg: "machine m-gone is not in the cluster"},
		{name: "owner unreachable", path: "/fleet/v1/units/dead.service/status",
			code: 502, msg: "forward to machine m-dead at " + deadURL + ": ", prefix: true},
		{name: "this machine serves no local requests", path: "/fleet/v1/units/here.service/status",
			code: 501, msg: "this fleetd does not serve per-machine requests"},
		{name: "forwarded request is not forwarded again", path: "/fleet/v1/units/dead.service/status",
			hdr:  []string{"X-Fleet-Forwarded-By", "m-other"},
			code: 502, msg: "request for machine m-dead, forwarded by machine m-other, reached machine m-here"},
		{name: "negative lines", path: "/fleet/v1/units/here.service/journal?lines=-1",
			code: 400, msg: `invalid lines "-1": want a number of lines, 0 or more`},
		{name: "bad follow", path: "/fleet/v1/units/here.service/journal?follow=maybe",
			code: 400, msg: `invalid follow "maybe": want true or false`},
		{name: "unknown output mode", path: "/fleet/v1/units/here.service/journal?output=fancy",
			code: 400, msg: `invalid output "fancy": want one of `, prefix: true},
		{name: "unknown sub-resource", path: "/fleet/v1/units/here.service/logs", code: 404, msg: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			rec := e.request(method, tc.path, "", tc.hdr...)
			if tc.prefix {
				wantErrorPrefix(t, rec, tc.code, tc.msg)
			} else {
				wantError(t, rec, tc.code, tc.msg)
			}
		})
	}
}

// inFlight counts the requests a handler is serving.
type inFlight struct {
	h http.Handler
	n atomic.Int64
}

func (f *inFlight) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.n.Add(1)
	defer f.n.Add(-1)
	f.h.ServeHTTP(w, r)
}

// waitFor polls cond until it holds; the bound only keeps a broken test
// from hanging.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// twoMachines is one registry with two machines whose handlers listen on
// TCP: m1 answers per-machine requests from local, m2 forwards them.
type twoMachines struct {
	e          *testEnv
	srv1, srv2 *httptest.Server
	flight1    *inFlight
	c1, c2     *api.Client
}

const ownerVersion = "1.2.3-owner"

func newTwoMachines(t *testing.T, local api.LocalUnits) *twoMachines {
	t.Helper()
	e := newEnv(t, api.Options{})
	f1 := &inFlight{h: api.NewHandler(e.reg, api.Options{Version: ownerVersion, MachineID: "m1", Local: local})}
	srv1 := httptest.NewServer(f1)
	t.Cleanup(srv1.Close)
	srv2 := httptest.NewServer(api.NewHandler(e.reg, api.Options{Version: testVersion, MachineID: "m2"}))
	t.Cleanup(srv2.Close)
	e.registerMachine(unit.Machine{ID: "m1", APIURL: srv1.URL})
	e.registerMachine(unit.Machine{ID: "m2", APIURL: srv2.URL})
	e.place("hello.service", "m1")
	client := func(u string) *api.Client {
		c, err := api.NewClient(u, api.ClientOptions{Timeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return &twoMachines{e: e, srv1: srv1, srv2: srv2, flight1: f1, c1: client(srv1.URL), c2: client(srv2.URL)}
}

func requireRoot(t *testing.T) {
	t.Helper()
	testenv.RequireSystemd(t)
}

// runningUnit starts a private systemd running name and returns a
// manager connected to it and the unit's main PID.
func runningUnit(t *testing.T, ctx context.Context, name string) (*systemd.Manager, uint32) {
	t.Helper()
	requireRoot(t)
	lm, err := launch.Start(ctx, launch.Options{})
	if err != nil {
		t.Fatalf("launch.Start: %v", err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := lm.Stop(sctx); err != nil {
			t.Errorf("stop systemd: %v", err)
		}
	})
	m, err := systemd.New(ctx, systemd.Config{UnitsDir: filepath.Join(t.TempDir(), "units"), PrivateSocket: lm.PrivateSocket()})
	if err != nil {
		t.Fatalf("systemd.New: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	steps := []func() error{
		func() error {
			return m.WriteUnitFile(ctx, name, "[Unit]\nDescription=Hello\n\n[Service]\nExecStart=/bin/sleep 3600\n")
		},
		func() error { return m.Link(ctx, []string{name}) },
		func() error { return m.Reload(ctx) },
		func() error { return m.Start(ctx, name) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("run %s: %v", name, err)
		}
	}
	var st systemd.UnitStatus
	waitFor(t, name+" running", func() bool {
		st, err = m.UnitStatus(ctx, name)
		if err != nil {
			t.Fatalf("UnitStatus: %v", err)
		}
		return st.SubState == "running" && st.MainPID > 0
	})
	return m, st.MainPID
}

// TestUnitStatusLocalAndForwarded asks both machines for the status of a
// unit running in a real systemd on m1: m1 answers itself, m2 relays m1's
// answer.
func TestUnitStatusLocalAndForwarded(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	sd, pid := runningUnit(t, ctx, "hello.service")
	sock := filepath.Join(t.TempDir(), "journal-socket") // absent: journald is not running
	local := &localunits.LocalUnits{MachineID: "m1", Systemd: sd,
		Logs: systemd.NewJournal(systemd.JournalConfig{Socket: sock, User: sd.UserManager()})}
	c := newTwoMachines(t, local)
	wantJournalErr := "journal unavailable on machine m1: journald is not running (no " + sock + ")"

	tests := []struct {
		name   string
		client *api.Client
		srv    *httptest.Server
	}{
		{"owner answers", c.c1, c.srv1},
		{"other machine forwards", c.c2, c.srv2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := tc.client.UnitStatus(ctx, "hello.service", "")
			if err != nil {
				t.Fatalf("UnitStatus: %v", err)
			}
			if rep.Name != "hello.service" || rep.MachineID != "m1" || rep.SystemdLoadState != "loaded" ||
				rep.SystemdActiveState != "active" || rep.SystemdSubState != "running" || rep.MainPID != pid {
				t.Errorf("report = %+v, want hello.service on m1 loaded/active/running with main PID %d", rep, pid)
			}
			for _, want := range []string{
				"● hello.service - Hello\n",
				"     Loaded: loaded (",
				"     Active: active (running) since ",
				fmt.Sprintf("   Main PID: %d (sleep)\n", pid),
			} {
				if !strings.Contains(rep.Text, want) {
					t.Errorf("text lacks %q:\n%s", want, rep.Text)
				}
			}
			if rep.JournalError != wantJournalErr {
				t.Errorf("journalError = %q, want %q", rep.JournalError, wantJournalErr)
			}

			// The owner's answer comes back as it sent it.
			resp, err := tc.srv.Client().Get(tc.srv.URL + "/fleet/v1/units/hello.service/status?machineID=m1")
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" ||
				len(resp.Header.Values("Server")) != 1 || resp.Header.Get("Server") != "fleetd/"+ownerVersion {
				t.Errorf("answer: %d, Content-Type %q, Server %q", resp.StatusCode,
					resp.Header.Get("Content-Type"), resp.Header.Values("Server"))
			}

			err = tc.client.Journal(ctx, "hello.service", "", api.JournalOptions{}, io.Discard)
			var apiErr *api.Error
			if !errors.As(err, &apiErr) || apiErr.Code != http.StatusServiceUnavailable || apiErr.Message != wantJournalErr {
				t.Errorf("Journal error = %v, want 503 %q", err, wantJournalErr)
			}
		})
	}
}

// TestJournalForwarded reads a journal through the machine that does not
// own the unit, with the real journalctl on the owner; a fake journald
// socket stands for a running journald.
func TestJournalForwarded(t *testing.T) {
	testenv.LookPath(t, "journalctl")
	sock := filepath.Join(t.TempDir(), "socket")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	local := &localunits.LocalUnits{MachineID: "m1", Logs: systemd.NewJournal(systemd.JournalConfig{Socket: sock})}
	c := newTwoMachines(t, local)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	t.Run("lines", func(t *testing.T) {
		var buf bytes.Buffer
		if err := c.c2.Journal(ctx, "hello.service", "", api.JournalOptions{Lines: 5, Output: "short"}, &buf); err != nil {
			t.Fatalf("Journal: %v", err)
		}
		if got := buf.String(); got != "-- No entries --\n" {
			t.Errorf("journal = %q, want journalctl's %q", got, "-- No entries --\n")
		}
		resp, err := c.srv2.Client().Get(c.srv2.URL + "/fleet/v1/units/hello.service/journal?lines=5")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("answer: %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	})

	t.Run("follow ends on the owner when the client goes away", func(t *testing.T) {
		fctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- c.c2.Journal(fctx, "hello.service", "", api.JournalOptions{Follow: true}, io.Discard)
		}()
		waitFor(t, "the owner to stream the journal", func() bool { return c.flight1.n.Load() == 1 })
		select {
		case err := <-done:
			t.Fatalf("a followed journal ended by itself: %v", err)
		default:
		}
		stop()
		if err := <-done; err != nil {
			t.Errorf("Journal after cancel = %v, want nil", err)
		}
		waitFor(t, "the owner to stop streaming", func() bool { return c.flight1.n.Load() == 0 })
	})

	t.Run("stopping ends a followed journal", func(t *testing.T) {
		stopping := make(chan struct{})
		srv := httptest.NewServer(api.NewHandler(c.e.reg, api.Options{MachineID: "m1", Local: local, Stopping: stopping}))
		defer srv.Close()
		resp, err := srv.Client().Get(srv.URL + "/fleet/v1/units/hello.service/journal?follow=true")
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status = %d, want 200", resp.StatusCode)
		}
		close(stopping)
		if _, err := io.ReadAll(resp.Body); err != nil {
			t.Errorf("stream after stopping: %v, want a clean end", err)
		}
	})

	t.Run("follow sends the answer before any line", func(t *testing.T) {
		fctx, stop := context.WithCancel(ctx)
		defer stop()
		req, err := http.NewRequestWithContext(fctx, http.MethodGet,
			c.srv2.URL+"/fleet/v1/units/hello.service/journal?follow=true&lines=1", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.srv2.Client().Do(req) // returns once the status line and headers arrive
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Server") != "fleetd/"+ownerVersion {
			t.Errorf("answer: %d, Server %q", resp.StatusCode, resp.Header.Get("Server"))
		}
		_ = resp.Body.Close()
		stop()
		waitFor(t, "the owner to stop streaming", func() bool { return c.flight1.n.Load() == 0 })
	})
}
