package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/fleet-next/fleet/unit"
)

// Relay carries a unit status or journal request to the fleetd of another
// machine and brings its answer back, through the cluster store (see
// docs/architecture.md, "The bridge"). registry.Etcd implements it, behind
// a small adapter in internal/fleetd.
type Relay interface {
	// Relay sends req to machineID's fleetd and returns its answer once
	// the status is known. An error wrapping ErrNoAnswer says that machine
	// did not take the request in time.
	Relay(ctx context.Context, machineID string, req RelayedRequest) (*RelayedAnswer, error)
}

// RelayedRequest is what a relay carries: a GET of Path (with its query)
// served as Subject.
type RelayedRequest struct {
	Path    string
	Subject string // the original caller; opaque to the relay
	Stream  bool   // a followed journal: no size bound
}

// RelayedAnswer is the status, content type and body of a relayed answer.
// Body must be closed.
type RelayedAnswer struct {
	Code        int
	ContentType string
	Body        io.ReadCloser
}

// ErrNoAnswer is wrapped by Relay errors that say the target machine did
// not take the request in time: its fleetd is down or cut off from the
// store.
var ErrNoAnswer = errors.New("no answer")

type subjectKey struct{ forwarded bool }

// WithCallerSubject returns ctx carrying the identity of the request's
// caller (e.g. "uid:0"), as whatever authenticates callers established it.
// A request relayed to another machine carries it there.
func WithCallerSubject(ctx context.Context, subject string) context.Context {
	return context.WithValue(ctx, subjectKey{}, subject)
}

// CallerSubject returns the subject WithCallerSubject stored, or "".
func CallerSubject(ctx context.Context) string {
	s, _ := ctx.Value(subjectKey{}).(string)
	return s
}

// WithForwardedSubject returns ctx of a request that another machine's
// fleetd relayed on behalf of subject: the subject is that of the original
// caller, as the relaying fleetd established it. Only the relay's
// receiving side (NewRelayedRequest) sets it; callers on this machine's
// own listeners never can.
func WithForwardedSubject(ctx context.Context, subject string) context.Context {
	return context.WithValue(ctx, subjectKey{forwarded: true}, subject)
}

// ForwardedSubject returns the subject of a relayed request and true, or
// "" and false for a request this fleetd received itself.
func ForwardedSubject(ctx context.Context) (string, bool) {
	s, ok := ctx.Value(subjectKey{forwarded: true}).(string)
	return s, ok
}

// NewRelayedRequest builds the request the receiving side of a relay
// serves with this package's handler: a GET of path, which must be the
// status or journal of a unit, forwarded by machine from on behalf of
// subject (see WithForwardedSubject). It is never relayed again.
func NewRelayedRequest(ctx context.Context, from, path, subject string) (*http.Request, error) {
	u, err := url.ParseRequestURI(path)
	if err != nil || u.Host != "" || !isUnitMachinePath(u.Path) {
		return nil, fmt.Errorf("relayed path %q is not the status or journal of a unit", path)
	}
	r, err := http.NewRequestWithContext(WithForwardedSubject(ctx, subject), http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("relayed request: %w", err)
	}
	r.Header.Set(forwardedHeader, from)
	r.RemoteAddr = "relay:" + from
	return r, nil
}

// isUnitMachinePath reports whether p is /BASE/units/NAME/status or
// /BASE/units/NAME/journal.
func isUnitMachinePath(p string) bool {
	for _, base := range basePaths {
		rest, ok := strings.CutPrefix(p, base+"/units/")
		if !ok {
			continue
		}
		name, sub, ok := strings.Cut(rest, "/")
		return ok && name != "" && (sub == subStatus || sub == subJournal)
	}
	return false
}

// relayTo serves a status or journal request for machineID through the
// relay. named says the client named the machine.
func (s *server) relayTo(w http.ResponseWriter, r *http.Request, machineID string, named, stream bool) {
	if _, ok := s.liveMachine(w, r, machineID, named); !ok {
		return
	}
	q := r.URL.Query()
	q.Set("machineID", machineID) // the owner answers for itself, wherever the unit is now
	u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
	ans, err := s.relay.Relay(r.Context(), machineID, RelayedRequest{Path: u.RequestURI(),
		Subject: CallerSubject(r.Context()), Stream: stream})
	switch {
	case r.Context().Err() != nil:
		return // the client went away
	case errors.Is(err, ErrNoAnswer):
		writeError(w, http.StatusGatewayTimeout, fmt.Sprintf(
			"machine %s did not answer: its fleetd is down or cannot reach etcd", machineID))
		return
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("relay to machine %s: %v", machineID, err))
		return
	}
	defer ans.Body.Close()
	if ans.ContentType != "" {
		w.Header().Set("Content-Type", ans.ContentType)
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(ans.Code)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	if err := copyFlushing(w, rc, ans.Body); err != nil && r.Context().Err() == nil {
		// The status line is sent: the failure can only be logged.
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "relayed answer ended with an error",
			slog.String("machine", machineID), slog.Any("error", err))
	}
}

// liveMachine looks machineID up among live machines, answering the
// request itself (false) when it is not one.
func (s *server) liveMachine(w http.ResponseWriter, r *http.Request, machineID string, named bool) (unit.Machine, bool) {
	m, found, err := s.findMachine(r.Context(), machineID)
	switch {
	case err != nil:
		s.internalError(w, r, fmt.Errorf("list machines: %w", err))
	case !found && named:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("machine %s is not in the cluster", machineID))
	case !found:
		writeError(w, http.StatusBadGateway, fmt.Sprintf("machine %s is not in the cluster", machineID))
	default:
		return m, true
	}
	return unit.Machine{}, false
}
