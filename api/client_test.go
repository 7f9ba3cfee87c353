package api_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/unit"
)

func TestNewClientEndpoints(t *testing.T) {
	tests := []struct {
		name     string
		endpoint string
		wantErr  string
	}{
		{name: "unix socket", endpoint: "unix:///var/run/fleet.sock"},
		{name: "http", endpoint: "http://127.0.0.1:4001"},
		{name: "http with path prefix", endpoint: "http://127.0.0.1:4001/proxy/"},
		{name: "https", endpoint: "https://fleet.example:443"},
		{name: "empty", endpoint: "", wantErr: "URL scheme undefined"},
		{name: "bare path", endpoint: "/var/run/fleet.sock", wantErr: "URL scheme undefined"},
		{name: "host and port", endpoint: "127.0.0.1:4001", wantErr: "URL scheme undefined"},
		{name: "named host and port", endpoint: "localhost:4001", wantErr: "URL scheme undefined"},
		{name: "unsupported scheme", endpoint: "ftp://127.0.0.1:21", wantErr: `unsupported URL scheme "ftp"`},
		{name: "relative unix path", endpoint: "unix://var/run/fleet.sock", wantErr: "must be absolute"},
		{name: "http without host", endpoint: "http://", wantErr: "has no host"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := api.NewClient(tc.endpoint, api.ClientOptions{})
			if tc.wantErr == "" {
				if err != nil || c == nil {
					t.Fatalf("NewClient(%q) = %v, %v", tc.endpoint, c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("NewClient(%q) error = %v, want %q", tc.endpoint, err, tc.wantErr)
			}
		})
	}
}

// serveHTTP serves h on a loopback TCP port; the returned counter counts
// requests.
func serveHTTP(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// serveUnix serves h on a unix socket in a fresh temp dir and returns the
// endpoint.
func serveUnix(t *testing.T, h http.Handler) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fleetapi") // short: socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "fleet.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l) // returns ErrServerClosed at cleanup
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return "unix://" + sock
}

func newClient(t *testing.T, endpoint string, opts api.ClientOptions) *api.Client {
	t.Helper()
	c, err := api.NewClient(endpoint, opts)
	if err != nil {
		t.Fatalf("NewClient(%q): %v", endpoint, err)
	}
	return c
}

// TestClientPagination lists collections of several sizes through the
// client and checks that every item arrives once, in order, in the
// number of pages the 100-item limit implies.
func TestClientPagination(t *testing.T) {
	for _, n := range []int{0, 1, 100, 101, 250} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			e := newEnv(t, api.Options{})
			srv, requests := serveHTTP(t, e.h)
			c := newClient(t, srv.URL, api.ClientOptions{Timeout: time.Minute})
			wantPages := int64(n/api.DefaultTokenLimit + 1)

			names := make([]string, n)
			for i := range names {
				names[i] = fmt.Sprintf("u%04d.service", i)
				if err := c.CreateUnit(e.ctx, &api.Unit{Name: names[i], Options: serviceOpts(names[i], "/bin/true")}); err != nil {
					t.Fatalf("CreateUnit %s: %v", names[i], err)
				}
			}
			requests.Store(0)
			units, err := c.Units(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := requests.Load(); got != wantPages {
				t.Errorf("Units took %d requests, want %d", got, wantPages)
			}
			if len(units) != n {
				t.Fatalf("Units returned %d, want %d", len(units), n)
			}
			for i, u := range units {
				if u.Name != names[i] || u.DesiredState != "inactive" || u.CurrentState != "inactive" {
					t.Fatalf("unit %d = %+v, want %s inactive/inactive", i, *u, names[i])
				}
				if len(u.Options) != 2 || u.Options[0].Value != names[i] {
					t.Fatalf("unit %s options = %v", u.Name, u.Options)
				}
			}

			const machine = "feedfacefeedface"
			lease := e.registerMachine(unit.Machine{ID: machine, PublicIP: "127.0.0.9"})
			for _, name := range names {
				e.publish(lease, unit.State{Name: name, MachineID: machine, Current: unit.StateLoaded,
					SystemdState: unit.SystemdState{LoadState: "loaded", ActiveState: "inactive", SubState: "dead"}})
			}
			requests.Store(0)
			states, err := c.UnitStates(e.ctx, machine, "")
			if err != nil {
				t.Fatal(err)
			}
			if got := requests.Load(); got != wantPages {
				t.Errorf("UnitStates took %d requests, want %d", got, wantPages)
			}
			if len(states) != n {
				t.Fatalf("UnitStates returned %d, want %d", len(states), n)
			}
			for i, s := range states {
				if s.Name != names[i] || s.MachineID != machine || s.SystemdSubState != "dead" {
					t.Fatalf("state %d = %+v", i, *s)
				}
			}

			ids := make([]string, n)
			for i := range ids {
				ids[i] = fmt.Sprintf("m%04d", i)
				e.registerMachine(unit.Machine{ID: ids[i], PublicIP: "127.0.1.1"})
			}
			ids = append([]string{machine}, ids...) // "f..." sorts before every "m0000"-style ID
			requests.Store(0)
			machines, err := c.Machines(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := requests.Load(), int64((n+1)/api.DefaultTokenLimit+1); got != want {
				t.Errorf("Machines took %d requests, want %d", got, want)
			}
			if len(machines) != len(ids) {
				t.Fatalf("Machines returned %d, want %d", len(machines), len(ids))
			}
			for i, m := range machines {
				if m.ID != ids[i] {
					t.Fatalf("machine %d = %s, want %s", i, m.ID, ids[i])
				}
			}
		})
	}
}

func TestClientOverUnixSocket(t *testing.T) {
	e := newEnv(t, api.Options{})
	c := newClient(t, serveUnix(t, e.h), api.ClientOptions{})
	ctx := e.ctx
	const name = "web@1.service"
	o := serviceOpts("web %i", "/bin/sleep 1000")

	t.Run("missing unit is nil", func(t *testing.T) {
		u, err := c.Unit(ctx, name)
		if u != nil || err != nil {
			t.Fatalf("Unit = %v, %v; want nil, nil", u, err)
		}
	})
	t.Run("create then get", func(t *testing.T) {
		in := &api.Unit{Name: name, Options: o, DesiredState: "loaded", CurrentState: "launched", MachineID: "ignored"}
		if err := c.CreateUnit(ctx, in); err != nil {
			t.Fatal(err)
		}
		got, err := c.Unit(ctx, name)
		if err != nil || got == nil {
			t.Fatalf("Unit = %v, %v", got, err)
		}
		wantUnit(t, got, &api.Unit{Name: name, Options: o, DesiredState: "loaded", CurrentState: "inactive"})
	})
	t.Run("set target state", func(t *testing.T) {
		if err := c.SetUnitTargetState(ctx, name, "launched"); err != nil {
			t.Fatal(err)
		}
		got, err := c.Unit(ctx, name)
		if err != nil || got == nil || got.DesiredState != "launched" {
			t.Fatalf("after SetUnitTargetState: %+v, %v", got, err)
		}
	})
	t.Run("invalid target state", func(t *testing.T) {
		err := c.SetUnitTargetState(ctx, name, "running")
		var apiErr *api.Error
		if !errors.As(err, &apiErr) || apiErr.Code != http.StatusBadRequest {
			t.Fatalf("error = %v, want a 400 *api.Error", err)
		}
		want := `PUT /fleet/v1/units/web@1.service: invalid desired state "running": must be inactive, loaded or launched`
		if err.Error() != want {
			t.Errorf("error = %q, want %q", err, want)
		}
	})
	t.Run("unit state", func(t *testing.T) {
		st, err := c.UnitState(ctx, name)
		if st != nil || err != nil {
			t.Fatalf("UnitState before any report = %v, %v; want nil, nil", st, err)
		}
		lease := e.registerMachine(unit.Machine{ID: "m1"})
		e.publish(lease, unit.State{Name: name, MachineID: "m1", Hash: canonical(t, o).Hash(),
			SystemdState: unit.SystemdState{LoadState: "loaded", ActiveState: "active", SubState: "running"}})
		st, err = c.UnitState(ctx, name)
		if err != nil || st == nil {
			t.Fatalf("UnitState = %v, %v", st, err)
		}
		if st.MachineID != "m1" || st.SystemdActiveState != "active" || st.Hash != canonical(t, o).Hash().String() {
			t.Errorf("UnitState = %+v", *st)
		}
		states, err := c.UnitStates(ctx, "", name)
		if err != nil || len(states) != 1 || *states[0] != *st {
			t.Errorf("UnitStates(unitName) = %v, %v", states, err)
		}
	})
	t.Run("destroy", func(t *testing.T) {
		if err := c.DestroyUnit(ctx, name); err != nil {
			t.Fatal(err)
		}
		err := c.DestroyUnit(ctx, name)
		if !api.IsNotFound(err) {
			t.Fatalf("second DestroyUnit error = %v, want not found", err)
		}
		if want := "DELETE /fleet/v1/units/web@1.service: unit does not exist"; err.Error() != want {
			t.Errorf("error = %q, want %q", err, want)
		}
	})
	t.Run("patch metadata", func(t *testing.T) {
		e.registerMachine(unit.Machine{ID: "m2", Metadata: map[string]string{"region": "eu", "disk": "hdd"}})
		if err := c.PatchMachineMetadata(ctx, "m2", map[string]string{"disk": "ssd", "rack": "r1"}, []string{"region"}); err != nil {
			t.Fatal(err)
		}
		ms, err := c.Machines(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]string
		for _, m := range ms {
			if m.ID == "m2" {
				got = m.Metadata
			}
		}
		if want := map[string]string{"disk": "ssd", "rack": "r1"}; !maps.Equal(got, want) {
			t.Errorf("metadata = %v, want %v", got, want)
		}
		err = c.PatchMachineMetadata(ctx, "m2", map[string]string{"bad key": "x"}, nil)
		var apiErr *api.Error
		if !errors.As(err, &apiErr) || apiErr.Code != http.StatusBadRequest || apiErr.Message != "machine metadata path invalid" {
			t.Errorf("bad key error = %v", err)
		}
	})
}

func TestClientHTTPS(t *testing.T) {
	e := newEnv(t, api.Options{})
	srv := httptest.NewUnstartedServer(e.h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted case makes the server log a handshake error
	srv.StartTLS()
	t.Cleanup(srv.Close)
	e.registerMachine(unit.Machine{ID: "m1", PublicIP: "127.0.0.1"})

	t.Run("trusted", func(t *testing.T) {
		c := newClient(t, srv.URL, api.ClientOptions{TLS: &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}})
		ms, err := c.Machines(e.ctx)
		if err != nil || len(ms) != 1 || ms[0].ID != "m1" {
			t.Fatalf("Machines = %v, %v", ms, err)
		}
	})
	t.Run("untrusted", func(t *testing.T) {
		c := newClient(t, srv.URL, api.ClientOptions{})
		if _, err := c.Machines(e.ctx); err == nil || !strings.Contains(err.Error(), srv.URL) {
			t.Fatalf("Machines with unknown CA: err = %v, want a certificate error naming %s", err, srv.URL)
		}
	})
}

func TestClientErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("connection failure names the endpoint", func(t *testing.T) {
		dir := t.TempDir()
		endpoint := "unix://" + filepath.Join(dir, "absent.sock")
		c := newClient(t, endpoint, api.ClientOptions{})
		_, err := c.Units(ctx)
		if err == nil || !strings.Contains(err.Error(), endpoint) || !strings.HasPrefix(err.Error(), "GET /fleet/v1/units: ") {
			t.Fatalf("error = %v, want it to name GET /fleet/v1/units and %s", err, endpoint)
		}
	})

	answers := []struct {
		name     string
		status   int
		body     string
		wantCode int
		wantMsg  string
	}{
		{name: "envelope", status: http.StatusServiceUnavailable,
			body:     `{"error":{"code":503,"message":"fleet server unable to communicate with etcd"}}`,
			wantCode: http.StatusServiceUnavailable, wantMsg: "fleet server unable to communicate with etcd"},
		{name: "plain text from a proxy", status: http.StatusBadGateway, body: "bad gateway",
			wantCode: http.StatusBadGateway, wantMsg: ""},
		{name: "empty 404", status: http.StatusNotFound, wantCode: http.StatusNotFound, wantMsg: ""},
	}
	for _, tc := range answers {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			c := newClient(t, srv.URL, api.ClientOptions{})
			_, err := c.Machines(ctx)
			var apiErr *api.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("error = %v (%T), want *api.Error", err, err)
			}
			if apiErr.Code != tc.wantCode || apiErr.Message != tc.wantMsg {
				t.Errorf("error = {%d %q}, want {%d %q}", apiErr.Code, apiErr.Message, tc.wantCode, tc.wantMsg)
			}
			if got := api.IsNotFound(err); got != (tc.wantCode == http.StatusNotFound) {
				t.Errorf("IsNotFound = %v", got)
			}
		})
	}

	t.Run("repeated page token", func(t *testing.T) {
		srv, _ := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"units":[{"name":"a.service"}],"nextPageToken":"ZAACAA=="}`))
		}))
		c := newClient(t, srv.URL, api.ClientOptions{})
		if _, err := c.Units(ctx); err == nil || !strings.Contains(err.Error(), "repeated page token") {
			t.Fatalf("error = %v, want repeated page token", err)
		}
	})

	t.Run("cancelled context", func(t *testing.T) {
		srv, requests := serveHTTP(t, http.NotFoundHandler())
		c := newClient(t, srv.URL, api.ClientOptions{})
		cctx, ccancel := context.WithCancel(ctx)
		ccancel()
		if _, err := c.Unit(cctx, "a.service"); !errors.Is(err, context.Canceled) {
			t.Fatalf("error = %v, want context.Canceled", err)
		}
		if n := requests.Load(); n != 0 {
			t.Errorf("%d requests reached the server", n)
		}
	})

	t.Run("path prefix is kept", func(t *testing.T) {
		var gotPath atomic.Value
		srv, _ := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			gotPath.Store(r.URL.EscapedPath())
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"name":"a b.service"}`))
		}))
		c := newClient(t, srv.URL+"/proxy/", api.ClientOptions{})
		u, err := c.Unit(ctx, "a b.service")
		if err != nil || u == nil {
			t.Fatalf("Unit = %v, %v", u, err)
		}
		if p := gotPath.Load(); p != "/proxy/fleet/v1/units/a%20b.service" {
			t.Errorf("request path = %v", p)
		}
	})
}

// TestClientHostOption sends the Host header ClientOptions names, on API
// calls and journal streams alike.
func TestClientHostOption(t *testing.T) {
	var hosts []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts = append(hosts, r.Host)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	}))
	defer srv.Close()
	c, err := api.NewClient(srv.URL, api.ClientOptions{Host: "10.0.0.5:49153"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Units(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := c.Journal(t.Context(), "a.service", "", api.JournalOptions{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hosts) != 2 || hosts[0] != "10.0.0.5:49153" || hosts[1] != "10.0.0.5:49153" {
		t.Errorf("Host headers %q, want the option's twice", hosts)
	}
}
