package api

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/fleet-next/fleet/access"
)

// AccessStore is what the API needs to decide who may do what and to keep
// the audit trail. registry.Etcd, with its audit limits applied, serves it.
type AccessStore interface {
	// Grants returns every grant; it is read for each request that needs
	// a decision, so that grants apply at once.
	Grants(ctx context.Context) ([]access.Grant, error)
	// AddGrant stores g and reports whether it was new.
	AddGrant(ctx context.Context, g access.Grant) (bool, error)
	// RemoveGrant deletes g, or returns a not-found error.
	RemoveGrant(ctx context.Context, g access.Grant) error
	// AppendAudit adds e to the audit trail.
	AppendAudit(ctx context.Context, e access.Entry) error
	// AuditPage returns up to limit entries passing f after the cursor
	// after, and the cursor of the next page ("" = none).
	AuditPage(ctx context.Context, f access.AuditFilter, after string, limit int) ([]access.Entry, string, error)
}

// auditNote is what the handler of one request tells the audit trail:
// the action and target it decided on, whether it refused the request,
// and the hash of a unit it wrote.
type auditNote struct {
	action  access.Action
	target  string
	refused bool
	hash    string
	detail  string
}

type auditNoteKey struct{}

func noteOf(r *http.Request) *auditNote {
	if n, ok := r.Context().Value(auditNoteKey{}).(*auditNote); ok {
		return n
	}
	return &auditNote{}
}

// guard serves h to callers that may take action a on the unit target
// returns ("" = on a collection), and 403 to others.
func (s *server) guard(a access.Action, target func(*http.Request) string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		unit := ""
		if target != nil {
			unit = target(r)
		}
		if s.allow(w, r, access.Request{Action: a, Unit: unit}) {
			h(w, r)
		}
	}
}

// nameTarget is the {name} of the route.
func nameTarget(r *http.Request) string { return r.PathValue("name") }

// stateTarget is the unit a state listing is filtered on.
func stateTarget(r *http.Request) string { return r.URL.Query().Get("unitName") }

// may reports whether the caller may make req, without answering.
func (s *server) may(r *http.Request, req access.Request) (bool, error) {
	if s.access == nil {
		return true, nil
	}
	id := access.IdentityFrom(r.Context())
	if id.Root {
		return true, nil
	}
	grants, err := s.access.Grants(r.Context())
	if err != nil {
		return false, fmt.Errorf("read grants: %w", err)
	}
	return access.Allowed(grants, id, req), nil
}

// allow reports whether the caller may make req; when it may not, it
// answers 403 naming subject, action and target. Either way the decision
// is noted for the audit trail.
func (s *server) allow(w http.ResponseWriter, r *http.Request, req access.Request) bool {
	n := noteOf(r)
	n.action, n.target = req.Action, req.Unit
	ok, err := s.may(r, req)
	if err != nil {
		s.internalError(w, r, err)
		return false
	}
	if !ok {
		refusal := &access.Refusal{Subject: access.IdentityFrom(r.Context()).Name(), Request: req}
		n.refused, n.detail = true, refusal.Error()
		writeError(w, http.StatusForbidden, refusal.Error())
	}
	return ok
}

// audited reports whether a request goes into the audit trail: it
// changes (or tried to change) the cluster, or it was refused.
func audited(method string, n *auditNote) bool {
	if n.refused {
		return true
	}
	return method != http.MethodGet && method != http.MethodHead && n.action != ""
}

// record writes the audit entry of a request answered code.
func (s *server) record(r *http.Request, n *auditNote, code int) {
	id := access.IdentityFrom(r.Context())
	e := access.Entry{
		Time:     time.Now().UTC(),
		Subject:  id.Name(),
		Subjects: id.Subjects,
		From:     id.From,
		Machine:  s.machineID,
		Via:      id.Via,
		Method:   r.Method,
		Path:     r.URL.Path,
		Action:   n.action,
		Target:   n.target,
		Code:     code,
		Hash:     n.hash,
		Detail:   n.detail,
	}
	if n.refused {
		ok, suppressed := s.refusals.admit(e.Subject)
		if !ok {
			return
		}
		if e.Suppressed = suppressed; suppressed > 0 {
			s.log.LogAttrs(r.Context(), slog.LevelWarn, "refusals left out of the audit trail",
				slog.String("subject", e.Subject), slog.Int("count", suppressed))
		}
	}
	// Recorded before the answer leaves the handler: a client that sees
	// the answer finds its entry. Not bound to the request's context: a
	// caller hanging up does not erase what it did.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	if err := s.access.AppendAudit(ctx, e); err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelError, "audit entry not recorded",
			slog.String("subject", e.Subject), slog.String("action", string(e.Action)),
			slog.String("target", e.Target), slog.Int("code", code), slog.Any("error", err))
	}
}

// GrantList is the body of GET /fleet/v1/acl.
type GrantList struct {
	Grants []access.Grant `json:"grants"`
}

// WhoAmI is the body of GET /fleet/v1/whoami: the caller as this fleetd
// sees it and the grants that apply to it.
type WhoAmI struct {
	Subjects []string       `json:"subjects"`
	Root     bool           `json:"root,omitempty"`
	From     string         `json:"from,omitempty"`
	Grants   []access.Grant `json:"grants"`
}

// AuditPage is one page of GET /fleet/v1/audit.
type AuditPage struct {
	Entries       []access.Entry `json:"entries,omitempty"`
	NextPageToken string         `json:"nextPageToken,omitempty"`
}

func (s *server) accessEnabled(w http.ResponseWriter) bool {
	if s.access == nil {
		writeError(w, http.StatusNotImplemented, "access control is not configured on this server")
		return false
	}
	return true
}

func (s *server) listGrants(w http.ResponseWriter, r *http.Request) {
	if !s.accessEnabled(w) {
		return
	}
	grants, err := s.access.Grants(r.Context())
	if err != nil {
		s.internalError(w, r, fmt.Errorf("read grants: %w", err))
		return
	}
	if grants == nil {
		grants = []access.Grant{}
	}
	writeJSON(w, http.StatusOK, GrantList{Grants: grants})
}

// putGrant serves PUT /acl: store the grant in the body; 201 when new,
// 204 when it was already there.
func (s *server) putGrant(w http.ResponseWriter, r *http.Request) {
	if !s.accessEnabled(w) {
		return
	}
	if code, msg := checkJSONContentType(r.Header); code != 0 {
		writeError(w, code, msg)
		return
	}
	var g access.Grant
	if err := readJSON(w, r, MaxPatchBodyBytes, &g, nil); err != nil {
		writeBodyError(w, err)
		return
	}
	noteOf(r).detail = "grant " + g.String()
	if err := g.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	created, err := s.access.AddGrant(r.Context(), g)
	switch {
	case err != nil:
		s.internalError(w, r, fmt.Errorf("store grant: %w", err))
	case created:
		w.WriteHeader(http.StatusCreated)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// deleteGrant serves DELETE /acl?role=R&subject=S[&units=GLOB].
func (s *server) deleteGrant(w http.ResponseWriter, r *http.Request) {
	if !s.accessEnabled(w) {
		return
	}
	q := r.URL.Query()
	g := access.Grant{Role: access.Role(q.Get("role")), Subject: q.Get("subject"), Units: q.Get("units")}
	noteOf(r).detail = "revoke " + g.String()
	if err := g.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	err := s.access.RemoveGrant(r.Context(), g)
	switch {
	case isNotFound(err):
		writeError(w, http.StatusNotFound, "no such grant: "+g.String())
	case err != nil:
		s.internalError(w, r, fmt.Errorf("remove grant: %w", err))
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// whoami serves GET /whoami to any caller.
func (s *server) whoami(w http.ResponseWriter, r *http.Request) {
	id := access.IdentityFrom(r.Context())
	resp := WhoAmI{Subjects: id.Subjects, Root: id.Root, From: id.From, Grants: []access.Grant{}}
	if s.access != nil {
		grants, err := s.access.Grants(r.Context())
		if err != nil {
			s.internalError(w, r, fmt.Errorf("read grants: %w", err))
			return
		}
		if held := access.Held(grants, id); held != nil {
			resp.Grants = held
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// listAudit serves GET /audit: one page of entries, oldest first,
// filtered by since (RFC 3339), unit and subject. Its page token is the
// position after the page's last entry.
func (s *server) listAudit(w http.ResponseWriter, r *http.Request) {
	if !s.accessEnabled(w) {
		return
	}
	q := r.URL.Query()
	var f access.AuditFilter
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("since %q is not an RFC 3339 time", v))
			return
		}
		f.Since = t
	}
	f.Unit, f.Subject = q.Get("unit"), q.Get("subject")
	after := ""
	if tok := q.Get(pageTokenParam); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(b) == 0 || len(b) > 64 {
			writeError(w, http.StatusBadRequest, "invalid page token")
			return
		}
		after = string(b)
	}
	entries, next, err := s.access.AuditPage(r.Context(), f, after, int(s.limit))
	if err != nil {
		s.internalError(w, r, fmt.Errorf("read the audit trail: %w", err))
		return
	}
	resp := AuditPage{Entries: entries}
	if next != "" {
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(next))
	}
	writeJSON(w, http.StatusOK, resp)
}

// auditQuery is the query of GET /audit for f.
func auditQuery(f access.AuditFilter, tok string) url.Values {
	q := url.Values{}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if f.Unit != "" {
		q.Set("unit", f.Unit)
	}
	if f.Subject != "" {
		q.Set("subject", f.Subject)
	}
	if tok != "" {
		q.Set(pageTokenParam, tok)
	}
	return q
}
