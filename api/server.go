package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/fleet-next/fleet/access"
)

// DefaultTokenLimit is the page size of list endpoints when
// Options.TokenLimit is not set.
const DefaultTokenLimit = 100

// Options configures the API handler.
type Options struct {
	// Version is reported in the Server header as "fleetd/<Version>".
	Version string
	// TokenLimit is the page size of list endpoints (default 100, at most
	// 65535). Page tokens carrying another limit are rejected.
	TokenLimit int
	// Logger receives request and error logs; nil discards them.
	Logger *slog.Logger
	// Ready reports whether the server can reach the cluster store. While
	// it returns an error every API request gets 503. Nil means always ready.
	Ready func() error
	// Healthy reports whether this fleetd does its work on its host (its
	// agent reaches systemd). /health answers 503 while either Ready or
	// Healthy returns an error; other requests need only Ready. Nil means
	// always healthy.
	Healthy func() error
	// Metrics, when set, is served at /metrics, outside the readiness gate.
	Metrics http.Handler

	// MachineID is the machine this fleetd runs on. Unit status and journal
	// requests for it are answered by Local; those for another machine go
	// through Relay, or, without one, to the API URL that machine publishes.
	MachineID string
	// Local answers unit status and journal requests for MachineID; nil
	// answers them 501.
	Local LocalUnits
	// Relay carries status and journal requests to other machines through
	// the cluster store. Nil: they are forwarded over HTTP instead.
	Relay Relay
	// ForwardTransport carries requests forwarded over HTTP; nil uses a transport of
	// the handler's own that ignores HTTP proxy settings.
	ForwardTransport http.RoundTripper
	// Stopping, once closed, ends every journal stream (a followed journal
	// never ends by itself), so that a graceful shutdown need not wait for
	// them. Nil: streams end only with their requests.
	Stopping <-chan struct{}

	// Access, when set, decides who may do what (see access.Allowed and
	// docs/security.md) and keeps the audit trail: every request must then
	// carry the caller's identity (access.WithIdentity); one without is
	// anonymous. Nil serves every request to everyone, and the grant and
	// audit endpoints answer 501: for embedding and tests only.
	Access AccessStore
}

// API base paths. Both serve the same resources.
var basePaths = [...]string{"/fleet/v1", "/v1-alpha"}

// Error messages of the API (spec §8.3).
const (
	msgUnavailable       = "fleet server unable to communicate with etcd"
	msgOnlyGet           = "only GET supported against this resource"
	msgOnlyGetPutDelete  = "only GET, PUT and DELETE supported against this resource"
	msgOnlyGetPatch      = "only GET and PATCH supported against this resource"
	msgUnitNotFound      = "unit does not exist"
	msgUnitStateNotFound = "unit state does not exist"
)

// routeOther is the route of requests no route serves (404).
const routeOther = "other"

// server holds the handler's dependencies. It is immutable after NewHandler.
type server struct {
	reg       Registry
	version   string
	limit     uint16
	log       *slog.Logger
	ready     func() error
	healthy   func() error
	metrics   http.Handler
	discovery []byte
	mux       *http.ServeMux

	machineID        string
	local            LocalUnits
	relay            Relay
	forwardTransport http.RoundTripper
	stopping         <-chan struct{}
	access           AccessStore

	cursors  *cursors        // where the next page of a listing starts
	refusals *refusalLimiter // the rate at which refusals are audited
}

// NewHandler returns the fleet HTTP API v1 served from reg (spec §8). The
// handler is safe for concurrent use.
func NewHandler(reg Registry, opts Options) http.Handler {
	limit := opts.TokenLimit
	switch {
	case limit <= 0:
		limit = DefaultTokenLimit
	case limit > math.MaxUint16:
		limit = math.MaxUint16
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	forward := opts.ForwardTransport
	if forward == nil {
		forward = newForwardTransport()
	}
	s := &server{
		reg:       reg,
		version:   opts.Version,
		limit:     uint16(limit),
		log:       log,
		ready:     opts.Ready,
		healthy:   opts.Healthy,
		metrics:   opts.Metrics,
		discovery: discoveryDocument(),
		cursors:   newCursors(),
		refusals:  newRefusalLimiter(time.Now),

		machineID:        opts.MachineID,
		local:            opts.Local,
		relay:            opts.Relay,
		forwardTransport: forward,
		stopping:         opts.Stopping,
		access:           opts.Access,
	}
	s.mux = s.routes()
	return s
}

// route is one resource below a base path: the handler of each method it
// serves, and the answer to any other method.
type route struct {
	path    string // below a base path; {name} is a unit name
	methods map[string]http.HandlerFunc
	// otherCode and otherMsg answer methods not in methods: 405, except
	// for discovery, where fleet answered 400.
	otherCode int
	otherMsg  string
}

// resources lists every resource of the API, once: the mux serves it
// under each base path, and the pattern that matched is the route
// Observer sees.
func (s *server) resources() []route {
	get := func(h http.HandlerFunc) map[string]http.HandlerFunc {
		return map[string]http.HandlerFunc{http.MethodGet: h}
	}
	return []route{
		{path: "/units", methods: get(s.guard(access.Read, nil, s.listUnits)),
			otherCode: http.StatusMethodNotAllowed, otherMsg: msgOnlyGet},
		{path: "/units/{name}", methods: map[string]http.HandlerFunc{
			http.MethodGet:    s.guard(access.Read, nameTarget, s.getUnit),
			http.MethodPut:    s.putUnit, // decides its action from the body and the stored unit
			http.MethodDelete: s.guard(access.Destroy, nameTarget, s.deleteUnit),
		}, otherCode: http.StatusMethodNotAllowed, otherMsg: msgOnlyGetPutDelete},
		{path: "/units/{name}/" + subStatus, methods: get(s.guard(access.Read, nameTarget, s.unitStatus)),
			otherCode: http.StatusMethodNotAllowed, otherMsg: msgOnlyGet},
		{path: "/units/{name}/" + subJournal, methods: get(s.guard(access.Read, nameTarget, s.unitJournal)),
			otherCode: http.StatusMethodNotAllowed, otherMsg: msgOnlyGet},
		{path: "/state", methods: get(s.guard(access.Read, stateTarget, s.listStates)),
			otherCode: http.StatusMethodNotAllowed, otherMsg: msgOnlyGet},
		{path: "/state/{name}", methods: get(s.guard(access.Read, nameTarget, s.getState)),
			otherCode: http.StatusMethodNotAllowed, otherMsg: msgOnlyGet},
		{path: "/machines", methods: map[string]http.HandlerFunc{
			http.MethodGet:   s.guard(access.Read, nil, s.listMachines),
			http.MethodPatch: s.guard(access.Metadata, nil, s.patchMachines),
		}, otherCode: http.StatusMethodNotAllowed, otherMsg: msgOnlyGetPatch},
		{path: "/discovery", methods: get(s.serveDiscovery), otherCode: http.StatusBadRequest, otherMsg: msgOnlyGet},
		// Our additions: grants, the caller's identity, the audit trail.
		{path: "/acl", methods: map[string]http.HandlerFunc{
			http.MethodGet:    s.guard(access.ACL, nil, s.listGrants),
			http.MethodPut:    s.guard(access.ACL, nil, s.putGrant),
			http.MethodDelete: s.guard(access.ACL, nil, s.deleteGrant),
		}, otherCode: http.StatusMethodNotAllowed, otherMsg: msgOnlyGetPutDelete},
		{path: "/whoami", methods: get(s.whoami), otherCode: http.StatusMethodNotAllowed, otherMsg: msgOnlyGet},
		{path: "/audit", methods: get(s.guard(access.Audit, nil, s.listAudit)),
			otherCode: http.StatusMethodNotAllowed, otherMsg: msgOnlyGet},
	}
}

// routes builds the mux: the resources under every base path, "/" and
// the bare base paths (405), /health and /metrics outside the readiness
// gate, and 404 for everything else.
func (s *server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	handle := func(pattern string, h http.Handler) { mux.Handle(pattern, routed(h)) }
	methodNotAllowed := func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, "")
	}
	for _, base := range basePaths {
		for _, rt := range s.resources() {
			handle(base+rt.path, s.gated(rt.serve))
		}
		handle(base, s.gated(methodNotAllowed))
	}
	handle("/{$}", s.gated(methodNotAllowed))
	handle("/health", http.HandlerFunc(s.serveHealth))
	if s.metrics != nil {
		handle("/metrics", s.metrics)
	}
	mux.Handle("/", s.gated(notFound)) // no route: "other"
	return mux
}

// routed records the pattern that matched as the request's route ("/"
// for the root, whose pattern is "/{$}").
func routed(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec, ok := w.(*statusRecorder); ok {
			rec.route = strings.TrimSuffix(r.Pattern, "{$}")
		}
		h.ServeHTTP(w, r)
	})
}

// serve dispatches a request on the route to the handler of its method.
func (rt route) serve(w http.ResponseWriter, r *http.Request) {
	if h, ok := rt.methods[r.Method]; ok {
		h(w, r)
		return
	}
	writeError(w, rt.otherCode, rt.otherMsg)
}

func notFound(w http.ResponseWriter, _ *http.Request) { writeError(w, http.StatusNotFound, "") }

// gated answers 503 instead of h while the store is unreachable.
func (s *server) gated(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.checkReady(); err != nil {
			writeError(w, http.StatusServiceUnavailable, msgUnavailable+": "+err.Error())
			return
		}
		h(w, r)
	})
}

// Observer is told about every request an API handler answered: its
// method, its route (the pattern that matched, such as
// "/fleet/v1/units/{name}", or "other" when none did), the status code
// and how long it took (for a streamed journal, the whole stream).
type Observer func(method, route string, code int, elapsed time.Duration)

type observerKey struct{}

// WithObserver returns h, a handler made by NewHandler, reporting every
// request it answers to observe. It records nothing itself: the handler
// has the one status recorder and knows the route.
func WithObserver(h http.Handler, observe Observer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), observerKey{}, observe)))
	})
}

// ServeHTTP stamps the Server header, routes the request and logs and
// reports it. Paths that are not in canonical form (". ..", "//") are no
// route: 404, where a plain ServeMux would redirect.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Server", "fleetd/"+s.version)
	rec := &statusRecorder{ResponseWriter: w}
	start := time.Now()
	note := &auditNote{}
	r = r.WithContext(context.WithValue(r.Context(), auditNoteKey{}, note))
	if isCanonicalPath(r.URL.Path) {
		s.mux.ServeHTTP(rec, r)
	} else {
		s.gated(notFound).ServeHTTP(rec, r)
	}
	if s.access != nil && audited(r.Method, note) {
		s.record(r, note, rec.statusCode())
	}
	route := rec.route
	if route == "" {
		route = routeOther
	}
	elapsed := time.Since(start)
	s.log.LogAttrs(r.Context(), slog.LevelDebug, "api request",
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("route", route),
		slog.Int("status", rec.statusCode()),
		slog.Duration("duration", elapsed))
	if observe, ok := r.Context().Value(observerKey{}).(Observer); ok {
		observe(r.Method, route, rec.statusCode(), elapsed)
	}
}

// isCanonicalPath reports whether p is an absolute path without empty,
// "." or ".." segments (a trailing slash is allowed).
func isCanonicalPath(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean == p
}

func (s *server) checkReady() error {
	if s.ready == nil {
		return nil
	}
	return s.ready()
}

func (s *server) serveHealth(w http.ResponseWriter, _ *http.Request) {
	if err := s.checkReady(); err != nil {
		writeError(w, http.StatusServiceUnavailable, msgUnavailable+": "+err.Error())
		return
	}
	if s.healthy != nil {
		if err := s.healthy(); err != nil {
			writeError(w, http.StatusServiceUnavailable, "fleetd unhealthy: "+err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// serveDiscovery serves the discovery document describing the API.
func (s *server) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(s.discovery) // a failed write means the client is gone
}

// internalError logs err, which the handler cannot recover from, and
// answers 500 naming the failed step.
func (s *server) internalError(w http.ResponseWriter, r *http.Request, err error) {
	s.log.LogAttrs(r.Context(), slog.LevelError, "api request failed",
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Any("error", err))
	code := http.StatusInternalServerError
	if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil {
		// The store did not answer within etcd_request_timeout: a
		// transient condition, which the client may retry.
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	}
	writeError(w, code, err.Error())
}

// isNotFound reports whether err says that the named object does not exist.
// Store errors signal this with a NotFound() bool method.
func isNotFound(err error) bool {
	var nf interface{ NotFound() bool }
	return errors.As(err, &nf) && nf.NotFound()
}

// writeJSON answers code with v as the JSON body.
func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		body, _ = json.Marshal(ErrorResponse{Error: Error{Code: code, Message: "encode response: " + err.Error()}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n')) // a failed write means the client is gone
}

// writeError answers code with the JSON error envelope.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, ErrorResponse{Error: Error{Code: code, Message: msg}})
}

// statusRecorder remembers the status code written through it and the
// route that served the request. It is the only recorder of a request:
// logs and Observer read it.
type statusRecorder struct {
	http.ResponseWriter
	code  int
	route string // the mux pattern that matched; "" if none
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Flush sends buffered data to the client, so streamed responses stay
// streamed.
func (r *statusRecorder) Flush() {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	_ = http.NewResponseController(r.ResponseWriter).Flush() // unsupported only by writers that cannot stream
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) statusCode() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}
