package access

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
)

// Subject forms. A caller has every subject that applies to it.
const (
	// Anonymous is the subject of a caller nothing identifies: a plain TCP
	// listener, or TLS without a client certificate.
	Anonymous = "anonymous"
)

// Identity is who sent a request, as the listener that received it
// established.
type Identity struct {
	// Subjects in order of preference for messages: user:NAME before
	// uid:N before group:NAME; cn:NAME before o:NAME. Never empty for an
	// identified caller; {Anonymous} otherwise.
	Subjects []string
	// Root is true for uid 0 (and fleetd's own uid) on a unix socket:
	// always admin.
	Root bool
	// From says where the request came from: "unix:/path pid N uid N" or
	// "tcp:ADDR" / "tls:ADDR".
	From string
	// Via is the machine ID of the fleetd that forwarded the request on
	// the caller's behalf ("" when the caller reached this fleetd itself).
	Via string
}

// Name is the subject messages name: the first one.
func (id Identity) Name() string {
	if len(id.Subjects) == 0 {
		return Anonymous
	}
	return id.Subjects[0]
}

// AnonymousIdentity is the identity of a caller from from that nothing
// identifies.
func AnonymousIdentity(from string) Identity {
	return Identity{Subjects: []string{Anonymous}, From: from}
}

type identityKey struct{}

// WithIdentity returns ctx carrying id. Listeners attach the identity they
// established; a fleetd that relays a request from another one (which it
// authenticated by its machine identity) attaches the original caller's
// identity with Via set, and the API acts on its behalf.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity ctx carries; a request without one is
// anonymous.
func IdentityFrom(ctx context.Context) Identity {
	if id, ok := ctx.Value(identityKey{}).(Identity); ok && len(id.Subjects) > 0 {
		return id
	}
	return AnonymousIdentity("")
}

// Role is a set of actions.
type Role string

// Roles.
const (
	Viewer   Role = "viewer"   // read everything
	Operator Role = "operator" // viewer + start, stop, load, unload of existing units
	Admin    Role = "admin"    // everything
)

// Roles lists every role, least first.
var Roles = []Role{Viewer, Operator, Admin}

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if !slices.Contains(Roles, r) {
		return "", fmt.Errorf("unknown role %q: want viewer, operator or admin", s)
	}
	return r, nil
}

// Action is what a request does.
type Action string

// Actions. Unit actions have a unit as their target; the others have a
// collection or the cluster.
const (
	Read     Action = "read"     // any GET of units, states, machines, status, journal
	Start    Action = "start"    // desired state launched
	Stop     Action = "stop"     // desired state loaded, from launched
	Load     Action = "load"     // desired state loaded
	Unload   Action = "unload"   // desired state inactive
	Submit   Action = "submit"   // create or replace a unit
	Destroy  Action = "destroy"  // remove a unit
	Metadata Action = "metadata" // change machine metadata
	ACL      Action = "acl"      // grant and revoke roles
	Audit    Action = "audit"    // read the audit trail
)

// Allows reports whether role r includes action a.
func (r Role) Allows(a Action) bool {
	switch r {
	case Admin:
		return true
	case Operator:
		switch a {
		case Read, Start, Stop, Load, Unload:
			return true
		}
	case Viewer:
		return a == Read
	}
	return false
}

// Grant binds a role to a subject, for every target or (Units set) only
// for the units whose names match the glob Units (path.Match syntax).
type Grant struct {
	Role    Role   `json:"role"`
	Subject string `json:"subject"`
	Units   string `json:"units,omitempty"`
}

func (g Grant) String() string {
	s := string(g.Role) + " " + g.Subject
	if g.Units != "" {
		s += " (units " + g.Units + ")"
	}
	return s
}

// subjectKinds are the prefixes of subjects a grant may name.
var subjectKinds = []string{"uid:", "user:", "group:", "cn:", "o:"}

// Validate checks the role, the subject's form and the glob.
func (g Grant) Validate() error {
	if _, err := ParseRole(string(g.Role)); err != nil {
		return err
	}
	if err := ValidateSubject(g.Subject); err != nil {
		return err
	}
	if g.Units != "" {
		if _, err := path.Match(g.Units, ""); err != nil {
			return fmt.Errorf("units glob %q: %w", g.Units, err)
		}
		if strings.Contains(g.Units, "/") {
			return fmt.Errorf("units glob %q: unit names hold no '/'", g.Units)
		}
	}
	return nil
}

// ValidateSubject checks that s is anonymous or KIND:NAME with a known
// kind and a name without control characters.
func ValidateSubject(s string) error {
	if s == Anonymous {
		return nil
	}
	for _, k := range subjectKinds {
		if name, ok := strings.CutPrefix(s, k); ok {
			if name == "" {
				return fmt.Errorf("subject %q: empty name", s)
			}
			if strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				return fmt.Errorf("subject %q: control character in name", s)
			}
			if len(s) > 512 {
				return fmt.Errorf("subject %q...: longer than 512 bytes", s[:32])
			}
			return nil
		}
	}
	return fmt.Errorf("subject %q: want anonymous or uid:N, user:NAME, group:NAME, cn:NAME, o:NAME", s)
}

// Request is one decision to make: may the caller take Action on Unit
// (a unit action) or on the cluster (Unit empty)?
type Request struct {
	Action Action
	// Unit is the unit the action targets; "" for collections (lists of
	// every unit, machines, grants, the audit trail).
	Unit string
}

// Allowed reports whether id may make req under grants. uid 0 on a unix
// socket may do everything. A grant applies when it names one of id's
// subjects and its role allows the action; a grant with a units glob
// applies only to requests on a unit matching it.
func Allowed(grants []Grant, id Identity, req Request) bool {
	if id.Root {
		return true
	}
	for _, g := range grants {
		if !slices.Contains(id.Subjects, g.Subject) || !g.Role.Allows(req.Action) {
			continue
		}
		if g.Units == "" {
			return true
		}
		if req.Unit == "" {
			continue
		}
		if ok, err := path.Match(g.Units, req.Unit); err == nil && ok {
			return true
		}
	}
	return false
}

// Held returns the grants that apply to id, in the order given.
func Held(grants []Grant, id Identity) []Grant {
	var out []Grant
	for _, g := range grants {
		if slices.Contains(id.Subjects, g.Subject) {
			out = append(out, g)
		}
	}
	return out
}

// Refusal is a request the caller may not make.
type Refusal struct {
	Subject string
	Request Request
}

// ErrRefused is matched (errors.Is) by every *Refusal.
var ErrRefused = errors.New("access refused")

func (r *Refusal) Error() string {
	return fmt.Sprintf("%s may not %s", r.Subject, Describe(r.Request))
}

func (r *Refusal) Is(target error) bool { return target == ErrRefused }

// Describe renders a request as the end of "SUBJECT may not ...":
// "start db.service", "read units", "change machine metadata".
func Describe(req Request) string {
	if req.Unit != "" {
		return string(req.Action) + " " + req.Unit
	}
	switch req.Action {
	case Read:
		return "read units, states or machines"
	case Metadata:
		return "change machine metadata"
	case ACL:
		return "manage grants"
	case Audit:
		return "read the audit trail"
	}
	return string(req.Action)
}

// Entry is one record of the audit trail.
type Entry struct {
	Time    time.Time `json:"time"`
	Subject string    `json:"subject"`
	// Subjects are all the caller's subjects.
	Subjects []string `json:"subjects,omitempty"`
	// From is where the request came from (socket and peer).
	From string `json:"from"`
	// Machine is the machine ID of the fleetd that received the request.
	Machine string `json:"machine"`
	// Via is the machine that forwarded the request, if any.
	Via    string `json:"via,omitempty"`
	Method string `json:"method"`
	Path   string `json:"path"`
	Action Action `json:"action"`
	// Target is the unit, or what else the action changes.
	Target string `json:"target,omitempty"`
	// Code is the HTTP status code of the answer.
	Code int `json:"code"`
	// Hash is the content hash of a unit written.
	Hash string `json:"hash,omitempty"`
	// Detail: the refusal message, a grant, metadata keys.
	Detail string `json:"detail,omitempty"`
	// Suppressed counts this subject's refusals left out of the trail
	// since its previous recorded one: refusals are recorded at a
	// bounded rate per subject so that they cannot push out the rest.
	Suppressed int `json:"suppressed,omitempty"`
}

// AuditFilter selects audit entries; zero fields match everything.
type AuditFilter struct {
	Since   time.Time
	Unit    string
	Subject string
}

// Match reports whether e passes f.
func (f AuditFilter) Match(e Entry) bool {
	if !f.Since.IsZero() && e.Time.Before(f.Since) {
		return false
	}
	if f.Unit != "" && e.Target != f.Unit {
		return false
	}
	if f.Subject != "" && e.Subject != f.Subject && !slices.Contains(e.Subjects, f.Subject) {
		return false
	}
	return true
}
