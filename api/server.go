package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"time"
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
	// requests for it are answered by Local; those for another machine are
	// forwarded to the API URL that machine publishes.
	MachineID string
	// Local answers unit status and journal requests for MachineID; nil
	// answers them 501.
	Local LocalUnits
	// ForwardTransport carries forwarded requests; nil uses a transport of
	// the handler's own that ignores HTTP proxy settings.
	ForwardTransport http.RoundTripper
	// Stopping, once closed, ends every journal stream (a followed journal
	// never ends by itself), so that a graceful shutdown need not wait for
	// them. Nil: streams end only with their requests.
	Stopping <-chan struct{}
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

// maxBodyBytes bounds request bodies.
const maxBodyBytes = 8 << 20

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

	machineID        string
	local            LocalUnits
	forwardTransport http.RoundTripper
	stopping         <-chan struct{}

	cursors *cursors // where the next page of a listing starts
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
	return &server{
		reg:       reg,
		version:   opts.Version,
		limit:     uint16(limit),
		log:       log,
		ready:     opts.Ready,
		healthy:   opts.Healthy,
		metrics:   opts.Metrics,
		discovery: discoveryDocument(),
		cursors:   newCursors(),

		machineID:        opts.MachineID,
		local:            opts.Local,
		forwardTransport: forward,
		stopping:         opts.Stopping,
	}
}

// ServeHTTP stamps the Server header, logs the request and dispatches it.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Server", "fleetd/"+s.version)
	rec := &statusRecorder{ResponseWriter: w}
	start := time.Now()
	s.dispatch(rec, r)
	s.log.LogAttrs(r.Context(), slog.LevelDebug, "api request",
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", rec.statusCode()),
		slog.Duration("duration", time.Since(start)))
}

func (s *server) dispatch(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	switch path {
	case "/health":
		s.serveHealth(w)
		return
	case "/metrics":
		if s.metrics != nil {
			s.metrics.ServeHTTP(w, r)
			return
		}
	}
	if err := s.checkReady(); err != nil {
		writeError(w, http.StatusServiceUnavailable, msgUnavailable+": "+err.Error())
		return
	}
	if path == "/" {
		writeError(w, http.StatusMethodNotAllowed, "")
		return
	}
	for _, base := range basePaths {
		if path == base {
			writeError(w, http.StatusMethodNotAllowed, "")
			return
		}
		if rest, ok := strings.CutPrefix(path, base+"/"); ok {
			s.serveResource(w, r, rest)
			return
		}
	}
	writeError(w, http.StatusNotFound, "")
}

// serveResource routes rest, the path below a base path: "<resource>" for
// a collection or "<resource>/<item>" for a single item.
func (s *server) serveResource(w http.ResponseWriter, r *http.Request, rest string) {
	resource, item, isItem := strings.Cut(rest, "/")
	if name, sub, ok := strings.Cut(item, "/"); resource == "units" && ok && name != "" &&
		(sub == subStatus || sub == subJournal) {
		s.serveUnitMachine(w, r, name, sub)
		return
	}
	if isItem && (item == "" || strings.Contains(item, "/")) {
		writeError(w, http.StatusNotFound, "")
		return
	}
	switch {
	case resource == "units" && !isItem:
		s.serveUnits(w, r)
	case resource == "units":
		s.serveUnit(w, r, item)
	case resource == "state" && !isItem:
		s.serveStates(w, r)
	case resource == "state":
		s.serveState(w, r, item)
	case resource == "machines" && !isItem:
		s.serveMachines(w, r)
	case resource == "discovery" && !isItem:
		s.serveDiscovery(w, r)
	default:
		writeError(w, http.StatusNotFound, "")
	}
}

func (s *server) checkReady() error {
	if s.ready == nil {
		return nil
	}
	return s.ready()
}

func (s *server) serveHealth(w http.ResponseWriter) {
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
func (s *server) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeError(w, http.StatusBadRequest, msgOnlyGet)
		return
	}
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
	writeError(w, http.StatusInternalServerError, err.Error())
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

// statusRecorder remembers the status code written through it.
type statusRecorder struct {
	http.ResponseWriter
	code int
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

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) statusCode() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}
