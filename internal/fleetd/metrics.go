package fleetd

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fleet-next/fleet/agent"
	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/engine"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/unit"
)

// Metrics holds fleetd's Prometheus metrics in a registry of its own: the
// engine's, the agent's, the registry's (etcd requests), the API's, and the
// Go runtime and process collectors. Every metric of package fleet is in
// namespace "fleet". It is safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	leaderStart     prometheus.Gauge
	rounds          *prometheus.CounterVec
	roundDuration   prometheus.Histogram
	changes         *prometheus.CounterVec
	unplaceable     prometheus.Gauge
	plans           prometheus.Counter
	actions         *prometheus.CounterVec
	actionFailures  *prometheus.CounterVec
	published       prometheus.Counter
	publishFailures prometheus.Counter
	units           *prometheus.GaugeVec
	requests        *prometheus.CounterVec
	requestFailures *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	apiRequests     *prometheus.CounterVec
	apiDuration     *prometheus.HistogramVec
}

const namespace = "fleet"

// Results of an engine reconcile round (label "result").
const (
	roundUnchanged = "unchanged" // the plan was empty
	roundApplied   = "applied"   // the plan was written
	roundFailed    = "failed"    // writing the plan failed
)

// NewMetrics creates the metrics of one fleetd process; version is
// exported as fleet_build_info{version}.
func NewMetrics(version string) *Metrics {
	f := func(subsystem, name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help}
	}
	h := func(subsystem, name, help string) prometheus.HistogramOpts {
		return prometheus.HistogramOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help,
			Buckets: prometheus.DefBuckets}
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		leaderStart: prometheus.NewGauge(prometheus.GaugeOpts(f("engine", "leader_start_time_seconds",
			"Unix time at which this engine became the cluster's leader; 0 while it does not lead."))),
		rounds: prometheus.NewCounterVec(prometheus.CounterOpts(f("engine", "reconcile_rounds_total",
			"Reconcile rounds of the leading engine by result (unchanged, applied, failed).")), []string{"result"}),
		roundDuration: prometheus.NewHistogram(h("engine", "reconcile_duration_seconds",
			"Time to plan a reconcile round and write its changes.")),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts(f("engine", "changes_applied_total",
			"Schedule changes written by the leading engine, by kind.")), []string{"kind"}),
		unplaceable: prometheus.NewGauge(prometheus.GaugeOpts(f("engine", "unplaceable_units",
			"Units that should run but cannot be placed (have a reason), as of the last round of this engine."))),
		plans: prometheus.NewCounter(prometheus.CounterOpts(f("agent", "plans_total",
			"Plans the agent computed against systemd (including empty ones)."))),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts(f("agent", "actions_total",
			"Actions the agent ran against systemd, by kind.")), []string{"kind"}),
		actionFailures: prometheus.NewCounterVec(prometheus.CounterOpts(f("agent", "action_failures_total",
			"Actions against systemd that failed, by kind.")), []string{"kind"}),
		published: prometheus.NewCounter(prometheus.CounterOpts(f("agent", "states_published_total",
			"Unit states the agent wrote to (or removed from) the cluster."))),
		publishFailures: prometheus.NewCounter(prometheus.CounterOpts(f("agent", "state_publish_failures_total",
			"Unit state writes that failed."))),
		units: prometheus.NewGaugeVec(prometheus.GaugeOpts(f("agent", "units",
			"Units this machine holds, by fleet state (loaded, launched).")), []string{"state"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts(f("registry", "requests_total",
			"etcd requests, by operation.")), []string{"op"}),
		requestFailures: prometheus.NewCounterVec(prometheus.CounterOpts(f("registry", "request_failures_total",
			"etcd requests that failed, by operation.")), []string{"op"}),
		requestDuration: prometheus.NewHistogramVec(h("registry", "request_duration_seconds",
			"etcd request latency, by operation."), []string{"op"}),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts(f("api", "requests_total",
			"HTTP API requests, by method, route and status code.")), []string{"method", "route", "code"}),
		apiDuration: prometheus.NewHistogramVec(h("api", "request_duration_seconds",
			"HTTP API request duration (whole stream for journal -f), by method and route."),
			[]string{"method", "route"}),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "build_info",
		Help: "Always 1; the version label is fleetd's version.", ConstLabels: prometheus.Labels{"version": version}})
	build.Set(1)
	m.reg.MustRegister(build, m.leaderStart, m.rounds, m.roundDuration, m.changes, m.unplaceable,
		m.plans, m.actions, m.actionFailures, m.published, m.publishFailures, m.units,
		m.requests, m.requestFailures, m.requestDuration, m.apiRequests, m.apiDuration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Every labelled series exists from the start, so rates work from the
	// first scrape.
	for _, r := range []string{roundUnchanged, roundApplied, roundFailed} {
		m.rounds.WithLabelValues(r)
	}
	for k := engine.Place; k <= engine.ClearReason; k++ {
		m.changes.WithLabelValues(k.String())
	}
	for k := agent.ActStop; k <= agent.ActStart; k++ {
		m.actions.WithLabelValues(k.String())
		m.actionFailures.WithLabelValues(k.String())
	}
	for _, s := range []unit.FleetState{unit.StateLoaded, unit.StateLaunched} {
		m.units.WithLabelValues(string(s))
	}
	for _, op := range registry.Ops() {
		m.requests.WithLabelValues(string(op))
		m.requestFailures.WithLabelValues(string(op))
		m.requestDuration.WithLabelValues(string(op))
	}
	return m
}

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Engine returns the engine's metrics hook.
func (m *Metrics) Engine() engine.Metrics { return engineMetrics{m} }

// Agent returns the agent's metrics hook.
func (m *Metrics) Agent() agent.Metrics { return agentMetrics{m} }

// Registry returns the observer of etcd requests.
func (m *Metrics) Registry() registry.Observer { return registryMetrics{m} }

type engineMetrics struct{ m *Metrics }

func (e engineMetrics) Leading(since time.Time) {
	if since.IsZero() {
		e.m.leaderStart.Set(0)
		return
	}
	e.m.leaderStart.Set(float64(since.UnixNano()) / 1e9)
}

func (e engineMetrics) Reconciled(r engine.Round) {
	e.m.roundDuration.Observe(r.Duration.Seconds())
	e.m.unplaceable.Set(float64(r.Unplaceable))
	switch {
	case r.Err != nil:
		e.m.rounds.WithLabelValues(roundFailed).Inc()
	case len(r.Applied) == 0:
		e.m.rounds.WithLabelValues(roundUnchanged).Inc()
	default:
		e.m.rounds.WithLabelValues(roundApplied).Inc()
		for _, c := range r.Applied {
			e.m.changes.WithLabelValues(c.Kind.String()).Inc()
		}
	}
}

type agentMetrics struct{ m *Metrics }

func (a agentMetrics) Planned([]agent.Action) { a.m.plans.Inc() }

func (a agentMetrics) Applied(kind agent.ActionKind, err error) {
	a.m.actions.WithLabelValues(kind.String()).Inc()
	if err != nil {
		a.m.actionFailures.WithLabelValues(kind.String()).Inc()
	}
}

func (a agentMetrics) Published(err error) {
	a.m.published.Inc()
	if err != nil {
		a.m.publishFailures.Inc()
	}
}

func (a agentMetrics) Units(byState map[unit.FleetState]int) {
	for s, n := range byState {
		a.m.units.WithLabelValues(string(s)).Set(float64(n))
	}
}

type registryMetrics struct{ m *Metrics }

func (r registryMetrics) Request(op registry.Op, d time.Duration, err error) {
	r.m.requests.WithLabelValues(string(op)).Inc()
	r.m.requestDuration.WithLabelValues(string(op)).Observe(d.Seconds())
	if err != nil {
		r.m.requestFailures.WithLabelValues(string(op)).Inc()
	}
}

// API returns h, the API handler (api.NewHandler), with every request it
// answers counted by method, route and status code, and timed. The route
// is the pattern of the API's route table that served the request
// ("/fleet/v1/units/{name}"), or "other"; the handler's own status
// recorder reports it (api.WithObserver).
func (m *Metrics) API(h http.Handler) http.Handler {
	return api.WithObserver(h, func(method, route string, code int, elapsed time.Duration) {
		method = methodLabel(method)
		m.apiRequests.WithLabelValues(method, route, strconv.Itoa(code)).Inc()
		m.apiDuration.WithLabelValues(method, route).Observe(elapsed.Seconds())
	})
}

// methodLabel bounds the method label to the methods HTTP defines.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}
