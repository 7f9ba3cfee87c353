package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/unit"
)

func TestRouting(t *testing.T) {
	e := newEnv(t, api.Options{})
	tests := []struct {
		name   string
		method string
		path   string
		code   int
		msg    string
	}{
		{name: "root", method: http.MethodGet, path: "/", code: http.StatusMethodNotAllowed},
		{name: "root post", method: http.MethodPost, path: "/", code: http.StatusMethodNotAllowed},
		{name: "unknown top level", method: http.MethodGet, path: "/nope", code: http.StatusNotFound},
		{name: "base without slash", method: http.MethodGet, path: "/fleet/v1", code: http.StatusMethodNotAllowed},
		{name: "legacy base without slash", method: http.MethodGet, path: "/v1-alpha", code: http.StatusMethodNotAllowed},
		{name: "base with slash", method: http.MethodGet, path: "/fleet/v1/", code: http.StatusNotFound},
		{name: "unknown resource", method: http.MethodGet, path: "/fleet/v1/jobs", code: http.StatusNotFound},
		{name: "unknown legacy resource", method: http.MethodGet, path: "/v1-alpha/jobs", code: http.StatusNotFound},
		{name: "units trailing slash", method: http.MethodGet, path: "/fleet/v1/units/", code: http.StatusNotFound},
		{name: "unit item trailing slash", method: http.MethodGet, path: "/fleet/v1/units/a.service/", code: http.StatusNotFound},
		{name: "unit nested path", method: http.MethodGet, path: "/fleet/v1/units/a/b.service", code: http.StatusNotFound},
		{name: "state item trailing slash", method: http.MethodGet, path: "/fleet/v1/state/a.service/", code: http.StatusNotFound},
		{name: "machines item", method: http.MethodGet, path: "/fleet/v1/machines/abc", code: http.StatusNotFound},
		{name: "discovery item", method: http.MethodGet, path: "/fleet/v1/discovery/x", code: http.StatusNotFound},
		{name: "other version", method: http.MethodGet, path: "/fleet/v2/units", code: http.StatusNotFound},
		{name: "units post", method: http.MethodPost, path: "/fleet/v1/units", code: http.StatusMethodNotAllowed,
			msg: "only GET supported against this resource"},
		{name: "units put", method: http.MethodPut, path: "/v1-alpha/units", code: http.StatusMethodNotAllowed,
			msg: "only GET supported against this resource"},
		{name: "unit post", method: http.MethodPost, path: "/fleet/v1/units/a.service", code: http.StatusMethodNotAllowed,
			msg: "only GET, PUT and DELETE supported against this resource"},
		{name: "unit patch", method: http.MethodPatch, path: "/v1-alpha/units/a.service", code: http.StatusMethodNotAllowed,
			msg: "only GET, PUT and DELETE supported against this resource"},
		{name: "state delete", method: http.MethodDelete, path: "/fleet/v1/state", code: http.StatusMethodNotAllowed,
			msg: "only GET supported against this resource"},
		{name: "state item put", method: http.MethodPut, path: "/fleet/v1/state/a.service", code: http.StatusMethodNotAllowed,
			msg: "only GET supported against this resource"},
		{name: "machines put", method: http.MethodPut, path: "/fleet/v1/machines", code: http.StatusMethodNotAllowed,
			msg: "only GET and PATCH supported against this resource"},
		{name: "machines delete legacy", method: http.MethodDelete, path: "/v1-alpha/machines", code: http.StatusMethodNotAllowed,
			msg: "only GET and PATCH supported against this resource"},
		{name: "discovery post", method: http.MethodPost, path: "/fleet/v1/discovery", code: http.StatusBadRequest,
			msg: "only GET supported against this resource"},
		{name: "missing unit", method: http.MethodGet, path: "/fleet/v1/units/a.service", code: http.StatusNotFound,
			msg: "unit does not exist"},
		{name: "missing unit legacy", method: http.MethodGet, path: "/v1-alpha/units/a.service", code: http.StatusNotFound,
			msg: "unit does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, e.request(tc.method, tc.path, ""), tc.code, tc.msg)
		})
	}
}

func TestBasePathsServeTheSameResources(t *testing.T) {
	e := newEnv(t, api.Options{})
	e.storeUnit("hello.service", serviceOpts("hello", "/bin/true"), "")
	for _, path := range []string{"/units", "/units/hello.service", "/state", "/machines", "/discovery"} {
		t.Run(path, func(t *testing.T) {
			cur := e.request(http.MethodGet, "/fleet/v1"+path, "")
			legacy := e.request(http.MethodGet, "/v1-alpha"+path, "")
			if cur.Code != http.StatusOK || legacy.Code != http.StatusOK {
				t.Fatalf("status: /fleet/v1 %d, /v1-alpha %d", cur.Code, legacy.Code)
			}
			if cur.Body.String() != legacy.Body.String() {
				t.Errorf("bodies differ:\n/fleet/v1: %s\n/v1-alpha: %s", cur.Body, legacy.Body)
			}
		})
	}
}

func TestReadiness(t *testing.T) {
	down := errors.New("etcd cluster is unavailable")
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("fleet_up 1\n"))
	})
	e := newEnv(t, api.Options{Ready: func() error { return down }, Metrics: metrics})
	gated := []struct {
		name, method, path string
	}{
		{name: "root", method: http.MethodGet, path: "/"},
		{name: "units", method: http.MethodGet, path: "/fleet/v1/units"},
		{name: "unit put", method: http.MethodPut, path: "/fleet/v1/units/a.service"},
		{name: "legacy machines", method: http.MethodGet, path: "/v1-alpha/machines"},
		{name: "discovery", method: http.MethodGet, path: "/fleet/v1/discovery"},
		{name: "unknown", method: http.MethodGet, path: "/nope"},
		{name: "health", method: http.MethodGet, path: "/health"},
	}
	want := "fleet server unable to communicate with etcd: " + down.Error()
	for _, tc := range gated {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, e.request(tc.method, tc.path, ""), http.StatusServiceUnavailable, want)
		})
	}
	t.Run("metrics are not gated", func(t *testing.T) {
		rec := e.request(http.MethodGet, "/metrics", "")
		if rec.Code != http.StatusOK || rec.Body.String() != "fleet_up 1\n" {
			t.Errorf("GET /metrics = %d %q", rec.Code, rec.Body.String())
		}
	})
}

func TestHealthAndMetrics(t *testing.T) {
	e := newEnv(t, api.Options{Ready: func() error { return nil }})
	t.Run("health", func(t *testing.T) {
		var body map[string]string
		decodeOK(t, e.request(http.MethodGet, "/health", ""), &body)
		if len(body) != 1 || body["status"] != "ok" {
			t.Errorf("health body = %v", body)
		}
	})
	t.Run("metrics without handler", func(t *testing.T) {
		wantError(t, e.request(http.MethodGet, "/metrics", ""), http.StatusNotFound, "")
	})
}

func TestDiscovery(t *testing.T) {
	e := newEnv(t, api.Options{})
	var doc struct {
		Kind      string                     `json:"kind"`
		RootURL   string                     `json:"rootUrl"`
		Service   string                     `json:"servicePath"`
		Schemas   map[string]json.RawMessage `json:"schemas"`
		Resources map[string]struct {
			Methods map[string]struct {
				HTTPMethod string `json:"httpMethod"`
				Path       string `json:"path"`
			} `json:"methods"`
		} `json:"resources"`
	}
	decodeOK(t, e.request(http.MethodGet, "/fleet/v1/discovery", ""), &doc)
	if doc.RootURL != "$ENDPOINT/" || doc.Service != "fleet/v1/" || doc.Kind != "discovery#restDescription" {
		t.Errorf("rootUrl %q servicePath %q kind %q", doc.RootURL, doc.Service, doc.Kind)
	}
	for _, s := range []string{"Unit", "UnitOption", "UnitPage", "UnitState", "UnitStatePage", "Machine", "MachinePage"} {
		if _, ok := doc.Schemas[s]; !ok {
			t.Errorf("schema %s missing", s)
		}
	}
	methods := []struct{ resource, method, verb, path string }{
		{"Units", "List", "GET", "units"},
		{"Units", "Get", "GET", "units/{unitName}"},
		{"Units", "Set", "PUT", "units/{unitName}"},
		{"Units", "Delete", "DELETE", "units/{unitName}"},
		{"UnitState", "List", "GET", "state"},
		{"UnitState", "Get", "GET", "state/{unitName}"},
		{"Machines", "List", "GET", "machines"},
		{"Machines", "Patch", "PATCH", "machines"},
	}
	for _, m := range methods {
		got := doc.Resources[m.resource].Methods[m.method]
		if got.HTTPMethod != m.verb || got.Path != m.path {
			t.Errorf("%s.%s = %s %s, want %s %s", m.resource, m.method, got.HTTPMethod, got.Path, m.verb, m.path)
		}
	}
}

func TestStoreErrorIs500(t *testing.T) {
	e := newEnv(t, api.Options{})
	tests := []struct {
		name, method, path, body string
		prefix                   string
	}{
		{name: "list units", method: http.MethodGet, path: "/fleet/v1/units", prefix: "list units: "},
		{name: "get unit", method: http.MethodGet, path: "/fleet/v1/units/a.service", prefix: "get unit: "},
		{name: "delete unit", method: http.MethodDelete, path: "/fleet/v1/units/a.service", prefix: "destroy unit: "},
		{name: "put unit", method: http.MethodPut, path: "/fleet/v1/units/a.service",
			body: `{"desiredState":"loaded"}`, prefix: "get unit: "},
		{name: "list states", method: http.MethodGet, path: "/fleet/v1/state", prefix: "list unit states: "},
		{name: "get state", method: http.MethodGet, path: "/fleet/v1/state/a.service", prefix: "list unit states: "},
		{name: "list machines", method: http.MethodGet, path: "/fleet/v1/machines", prefix: "list machines: "},
		{name: "patch machines", method: http.MethodPatch, path: "/fleet/v1/machines",
			body: `[{"op":"add","path":"/m1/metadata/k","value":{"value":"v"}}]`, prefix: "set machine metadata: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A request whose context has ended makes every store call fail.
			ctx, cancel := context.WithCancel(e.ctx)
			cancel()
			rec := e.requestCtx(ctx, tc.method, tc.path, tc.body, "Content-Type", "application/json")
			wantErrorPrefix(t, rec, http.StatusInternalServerError, tc.prefix)
		})
	}
}

// slowStore is the registry with a store that does not answer unit reads
// within the request timeout.
type slowStore struct{ *registry.Etcd }

func (s slowStore) Unit(ctx context.Context, name string) (unit.UnitStatus, error) {
	return unit.UnitStatus{}, fmt.Errorf("read unit states: %w", context.DeadlineExceeded)
}

// A store that did not answer in time is a 503 with Retry-After, which
// clients may retry.
func TestStoreTimeoutIsUnavailable(t *testing.T) {
	e := newEnv(t, api.Options{})
	e.h = api.NewHandler(slowStore{e.reg}, api.Options{Version: testVersion})
	rec := e.request(http.MethodGet, "/fleet/v1/units/hello.service", "")
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("GET of a unit on a slow store: %d, Retry-After %q: %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	var env api.ErrorResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || env.Error.Code != http.StatusServiceUnavailable ||
		!strings.Contains(env.Error.Message, "deadline exceeded") {
		t.Fatalf("error envelope = %s (%v)", rec.Body, err)
	}
}
