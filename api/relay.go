package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/fleet-next/fleet/access"
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

// The subject of a relayed request is the caller's access.Identity as
// JSON: the fleetd that received the request established it, checked the
// caller's role before relaying, and reaches the store with credentials
// of its own; the answering fleetd serves the request as that identity,
// with Via naming the relaying machine.

type forwardedKey struct{}

// ForwardedFrom returns the machine that relayed the request and true, or
// "" and false for a request this fleetd received itself.
func ForwardedFrom(ctx context.Context) (string, bool) {
	s, ok := ctx.Value(forwardedKey{}).(string)
	return s, ok
}

func encodeSubject(id access.Identity) string {
	b, _ := json.Marshal(id) // an Identity always encodes
	return string(b)
}

// NewRelayedRequest builds the request the receiving side of a relay
// serves with this package's handler: a GET of path, which must be the
// status or journal of a unit, forwarded by machine from on behalf of the
// caller identity subject encodes. It is never relayed again.
func NewRelayedRequest(ctx context.Context, from, path, subject string) (*http.Request, error) {
	u, err := url.ParseRequestURI(path)
	if err != nil || u.Host != "" || !isUnitMachinePath(u.Path) {
		return nil, fmt.Errorf("relayed path %q is not the status or journal of a unit", path)
	}
	var id access.Identity
	if err := json.Unmarshal([]byte(subject), &id); err != nil {
		return nil, fmt.Errorf("relayed request: caller identity: %w", err)
	}
	id.Via = from
	ctx = access.WithIdentity(context.WithValue(ctx, forwardedKey{}, from), id)
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
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
		Subject: encodeSubject(access.IdentityFrom(r.Context())), Stream: stream})
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
