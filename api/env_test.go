package api_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/registry/registrytest"
	"github.com/fleet-next/fleet/unit"
)

const testVersion = "9.8.7"

// testEnv is an API handler over a registry on a fresh embedded etcd.
type testEnv struct {
	t   *testing.T
	ctx context.Context
	reg *registry.Etcd
	h   http.Handler
}

func newEnv(t *testing.T, opts api.Options) *testEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	reg := registrytest.New(t)
	if opts.Version == "" {
		opts.Version = testVersion
	}
	return &testEnv{t: t, ctx: ctx, reg: reg, h: api.NewHandler(reg, opts)}
}

// request serves one request; hdr holds header name/value pairs.
func (e *testEnv) request(method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	return e.requestCtx(e.ctx, method, path, body, hdr...)
}

func (e *testEnv) requestCtx(ctx context.Context, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	var rdr io.Reader
	if body != "" {
		rdr = strings.NewReader(body)
	}
	req := httptest.NewRequestWithContext(ctx, method, path, rdr)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if got, want := rec.Header().Get("Server"), "fleetd/"+testVersion; got != want {
		e.t.Errorf("%s %s: Server header = %q, want %q", method, path, got, want)
	}
	return rec
}

// putJSON sends a PUT with a JSON content type.
func (e *testEnv) putJSON(path, body string) *httptest.ResponseRecorder {
	e.t.Helper()
	return e.request(http.MethodPut, path, body, "Content-Type", "application/json")
}

// wantError checks that rec is the JSON error envelope with code and msg.
func wantError(t *testing.T, rec *httptest.ResponseRecorder, code int, msg string) {
	t.Helper()
	if rec.Code != code {
		t.Fatalf("status = %d, want %d (body %q)", rec.Code, code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var env api.ErrorResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
		t.Fatalf("error body %q: %v", rec.Body.String(), err)
	}
	if env.Error.Code != code || env.Error.Message != msg {
		t.Errorf("error = {%d %q}, want {%d %q}", env.Error.Code, env.Error.Message, code, msg)
	}
}

// wantErrorPrefix is wantError for messages that end in a variable part.
func wantErrorPrefix(t *testing.T, rec *httptest.ResponseRecorder, code int, prefix string) {
	t.Helper()
	if rec.Code != code {
		t.Fatalf("status = %d, want %d (body %q)", rec.Code, code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var env api.ErrorResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
		t.Fatalf("error body %q: %v", rec.Body.String(), err)
	}
	if env.Error.Code != code || !strings.HasPrefix(env.Error.Message, prefix) {
		t.Errorf("error = {%d %q}, want {%d %q...}", env.Error.Code, env.Error.Message, code, prefix)
	}
}

// decodeOK checks for a 200 JSON answer and decodes it into v.
func decodeOK(t *testing.T, rec *httptest.ResponseRecorder, v any) {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200 (body %q)", rec.Code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
		t.Fatalf("decode %q: %v", rec.Body.String(), err)
	}
}

// unitJSON renders a PUT body.
func unitJSON(t *testing.T, u api.Unit) string {
	t.Helper()
	b, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// opts builds wire options from section, name, value triples.
func opts(triples ...string) []*api.UnitOption {
	var out []*api.UnitOption
	for i := 0; i+2 < len(triples); i += 3 {
		out = append(out, &api.UnitOption{Section: triples[i], Name: triples[i+1], Value: triples[i+2]})
	}
	return out
}

// serviceOpts is a minimal service running cmd.
func serviceOpts(desc, cmd string) []*api.UnitOption {
	return opts("Unit", "Description", desc, "Service", "ExecStart", cmd)
}

// canonical builds the unit file the server must store for wire options.
func canonical(t *testing.T, o []*api.UnitOption) *unit.File {
	t.Helper()
	uo := make([]unit.Option, len(o))
	for i, x := range o {
		uo[i] = unit.Option{Section: x.Section, Name: x.Name, Value: x.Value}
	}
	f, err := unit.FromOptions(uo)
	if err != nil {
		t.Fatalf("FromOptions: %v", err)
	}
	return f
}

// storeUnit puts a unit straight into the registry.
func (e *testEnv) storeUnit(name string, o []*api.UnitOption, d unit.FleetState) {
	e.t.Helper()
	f := canonical(e.t, o)
	u := unit.Unit{Name: name, Content: f.Serialize(), Hash: f.Hash(), Desired: d, Global: f.IsGlobal()}
	if err := e.reg.CreateUnit(e.ctx, u); err != nil {
		e.t.Fatalf("store %s: %v", name, err)
	}
}

// registerMachine registers a live machine and returns its lease.
func (e *testEnv) registerMachine(m unit.Machine) registry.LeaseID {
	e.t.Helper()
	lease, err := e.reg.Register(e.ctx, m, "instance-"+m.ID, time.Minute)
	if err != nil {
		e.t.Fatalf("register %s: %v", m.ID, err)
	}
	return lease
}

// publish writes a unit state on a machine lease.
func (e *testEnv) publish(lease registry.LeaseID, s unit.State) {
	e.t.Helper()
	if err := e.reg.PublishState(e.ctx, lease, s); err != nil {
		e.t.Fatalf("publish %s on %s: %v", s.Name, s.MachineID, err)
	}
}

// schedule places units through a won engine election, as the engine does.
func (e *testEnv) schedule(changes ...registry.ScheduleChange) {
	e.t.Helper()
	leader, err := e.reg.Campaign(e.ctx, "test-engine", 0, registry.MinElectionTTL)
	if err != nil {
		e.t.Fatalf("campaign: %v", err)
	}
	defer func() {
		if err := leader.Resign(e.ctx); err != nil {
			e.t.Errorf("resign: %v", err)
		}
	}()
	if _, err := leader.Apply(e.ctx, changes); err != nil {
		e.t.Fatalf("apply schedule: %v", err)
	}
}

// base64Token encodes a page token the way §8.4 describes it, written out
// independently of the package's codec.
func base64Token(limit, page uint16) string {
	b := []byte{byte(limit), byte(limit >> 8), byte(page), byte(page >> 8)}
	return base64.URLEncoding.EncodeToString(b)
}
