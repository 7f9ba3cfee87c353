package fleetd

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/fleet-next/fleet/agent"
	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/engine"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/unit"
)

// sample returns the value of the series of family name whose labels
// include labels (a counter, a gauge, or a histogram's sample count).
func sample(t *testing.T, m *Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	series:
		for _, s := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range s.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return s.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				return s.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				return float64(s.GetHistogram().GetSampleCount())
			}
			t.Fatalf("%s: unexpected type %v", name, f.GetType())
		}
		t.Fatalf("%s has no series with labels %v", name, labels)
	}
	t.Fatalf("no metric family %s", name)
	return 0
}

func TestEngineLeaderGaugeIsSet(t *testing.T) {
	t1 := time.Unix(1_700_000_000, 0)
	t2 := time.Unix(1_800_000_000, 500_000_000)
	tests := []struct {
		name  string
		calls []time.Time
		want  float64
	}{
		{name: "never led", want: 0},
		{name: "leading", calls: []time.Time{t1}, want: 1_700_000_000},
		{name: "led again later: the later start, not a sum", calls: []time.Time{t1, {}, t2}, want: 1_800_000_000.5},
		{name: "stopped leading", calls: []time.Time{t1, {}}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMetrics("test")
			for _, c := range tt.calls {
				m.Engine().Leading(c)
			}
			if got := sample(t, m, "fleet_engine_leader_start_time_seconds", nil); got != tt.want {
				t.Errorf("leader start = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEngineRounds(t *testing.T) {
	m := NewMetrics("test")
	e := m.Engine()
	e.Reconciled(engine.Round{Duration: time.Millisecond, Unplaceable: 2})
	e.Reconciled(engine.Round{Duration: time.Millisecond, Unplaceable: 1, Applied: []engine.Change{
		{Kind: engine.Place}, {Kind: engine.Place}, {Kind: engine.ClearReason}}})
	e.Reconciled(engine.Round{Duration: time.Millisecond, Unplaceable: 1, Err: errors.New("not leader")})
	tests := []struct {
		name   string
		metric string
		labels map[string]string
		want   float64
	}{
		{"unchanged rounds", "fleet_engine_reconcile_rounds_total", map[string]string{"result": "unchanged"}, 1},
		{"applied rounds", "fleet_engine_reconcile_rounds_total", map[string]string{"result": "applied"}, 1},
		{"failed rounds", "fleet_engine_reconcile_rounds_total", map[string]string{"result": "failed"}, 1},
		{"every round timed", "fleet_engine_reconcile_duration_seconds", nil, 3},
		{"places", "fleet_engine_changes_applied_total", map[string]string{"kind": "place"}, 2},
		{"cleared reasons", "fleet_engine_changes_applied_total", map[string]string{"kind": "clear-reason"}, 1},
		{"no unplaces", "fleet_engine_changes_applied_total", map[string]string{"kind": "unplace"}, 0},
		{"unplaceable is the last round's", "fleet_engine_unplaceable_units", nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sample(t, m, tt.metric, tt.labels); got != tt.want {
				t.Errorf("%s%v = %v, want %v", tt.metric, tt.labels, got, tt.want)
			}
		})
	}
}

func TestAgentAndRegistryMetrics(t *testing.T) {
	m := NewMetrics("test")
	a, r := m.Agent(), m.Registry()
	a.Planned(nil)
	a.Planned([]agent.Action{{Kind: agent.ActStart, Unit: "a.service"}})
	a.Applied(agent.ActStart, nil)
	a.Applied(agent.ActStart, errors.New("no such unit"))
	a.Applied(agent.ActReload, nil)
	a.Published(nil)
	a.Published(errors.New("etcd down"))
	a.Units(map[unit.FleetState]int{unit.StateLaunched: 3, unit.StateLoaded: 1})
	a.Units(map[unit.FleetState]int{unit.StateLaunched: 2, unit.StateLoaded: 0})
	r.Request(registry.OpTxn, time.Millisecond, nil)
	r.Request(registry.OpTxn, time.Millisecond, errors.New("timeout"))
	r.Request(registry.OpGet, time.Millisecond, nil)
	tests := []struct {
		name   string
		metric string
		labels map[string]string
		want   float64
	}{
		{"plans", "fleet_agent_plans_total", nil, 2},
		{"starts", "fleet_agent_actions_total", map[string]string{"kind": "start"}, 2},
		{"failed starts", "fleet_agent_action_failures_total", map[string]string{"kind": "start"}, 1},
		{"reloads", "fleet_agent_actions_total", map[string]string{"kind": "reload"}, 1},
		{"failed reloads", "fleet_agent_action_failures_total", map[string]string{"kind": "reload"}, 0},
		{"published", "fleet_agent_states_published_total", nil, 2},
		{"publish failures", "fleet_agent_state_publish_failures_total", nil, 1},
		{"launched units are set, not added", "fleet_agent_units", map[string]string{"state": "launched"}, 2},
		{"loaded units", "fleet_agent_units", map[string]string{"state": "loaded"}, 0},
		{"txns", "fleet_registry_requests_total", map[string]string{"op": "txn"}, 2},
		{"txn failures", "fleet_registry_request_failures_total", map[string]string{"op": "txn"}, 1},
		{"txns timed", "fleet_registry_request_duration_seconds", map[string]string{"op": "txn"}, 2},
		{"gets", "fleet_registry_requests_total", map[string]string{"op": "get"}, 1},
		{"no puts", "fleet_registry_requests_total", map[string]string{"op": "put"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sample(t, m, tt.metric, tt.labels); got != tt.want {
				t.Errorf("%s%v = %v, want %v", tt.metric, tt.labels, got, tt.want)
			}
		})
	}
}

// TestAPIMetrics serves requests through a real API handler (its store
// unreachable, so no etcd is needed) and checks the series they count:
// the route is the pattern of the API's route table.
func TestAPIMetrics(t *testing.T) {
	m := NewMetrics("test")
	down := func() error { return errors.New("etcd is down") }
	h := m.API(api.NewHandler(nil, api.Options{Ready: down}))
	for _, req := range []struct{ method, path string }{
		{"GET", "/fleet/v1/units/a.service"},
		{"GET", "/fleet/v1/units/web@1.service"},
		{"PUT", "/v1-alpha/units/b.service"},
		{"GET", "/fleet/v1/units/a.service/journal"},
		{"BREW", "/fleet/v1/units"},
		{"GET", "/fleet/v1/units/a.service/other"},
		{"GET", "/random/" + strings.Repeat("x", 50)},
		{"GET", "/"},
		{"GET", "/health"},
	} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(req.method, req.path, nil))
	}
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"unit names are not labels", map[string]string{"method": "GET", "route": "/fleet/v1/units/{name}", "code": "503"}, 2},
		{"legacy base path", map[string]string{"method": "PUT", "route": "/v1-alpha/units/{name}", "code": "503"}, 1},
		{"streams", map[string]string{"method": "GET", "route": "/fleet/v1/units/{name}/journal", "code": "503"}, 1},
		{"unknown methods", map[string]string{"method": "other", "route": "/fleet/v1/units", "code": "503"}, 1},
		{"no route", map[string]string{"method": "GET", "route": "other", "code": "503"}, 2},
		{"root", map[string]string{"method": "GET", "route": "/", "code": "503"}, 1},
		{"health", map[string]string{"method": "GET", "route": "/health", "code": "503"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sample(t, m, "fleet_api_requests_total", tt.labels); got != tt.want {
				t.Errorf("requests%v = %v, want %v", tt.labels, got, tt.want)
			}
		})
	}
	if got := sample(t, m, "fleet_api_request_duration_seconds",
		map[string]string{"method": "GET", "route": "/fleet/v1/units/{name}"}); got != 2 {
		t.Errorf("timed GET requests = %v, want 2", got)
	}
}

// TestMetricsExposedAndDocumented scrapes the handler and checks that every
// family is exposed, the runtime collectors are there, and docs/api.md
// describes every fleet_ metric.
func TestMetricsExposedAndDocumented(t *testing.T) {
	m := NewMetrics("1.2.3")
	// API series exist once a request was served.
	m.API(api.NewHandler(nil, api.Options{})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/health", nil))
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	text := string(body)
	doc, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	fleet := 0
	for _, f := range fams {
		name := f.GetName()
		if !strings.Contains(text, "\n# TYPE "+name+" ") {
			t.Errorf("%s is registered but not exposed", name)
		}
		if strings.HasPrefix(name, "fleet_") {
			fleet++
			if !strings.Contains(string(doc), "`"+name+"`") {
				t.Errorf("%s is not documented in docs/api.md", name)
			}
		}
	}
	if fleet < 17 {
		t.Errorf("only %d fleet_ families gathered", fleet)
	}
	for _, want := range []string{`fleet_build_info{version="1.2.3"} 1`, "go_goroutines ", "process_start_time_seconds "} {
		if !strings.Contains(text, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
}
