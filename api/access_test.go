package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/fleet-next/fleet/access"
	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/unit"
)

// auditedRegistry is the registry as an access store, its trail bounded.
type auditedRegistry struct{ *registry.Etcd }

func (a auditedRegistry) AppendAudit(ctx context.Context, e access.Entry) error {
	return a.Etcd.AppendAudit(ctx, e, registry.AuditLimits{MaxEntries: 1000})
}

// accessEnv is a handler with access control whose every request comes
// from *id.
func accessEnv(t *testing.T) (*testEnv, *access.Identity) {
	e := newEnv(t, api.Options{})
	h := api.NewHandler(e.reg, api.Options{Version: testVersion, Access: auditedRegistry{e.reg}, MachineID: "m1"})
	id := &access.Identity{}
	e.h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(access.WithIdentity(r.Context(), *id)))
	})
	return e, id
}

// level is the least a request needs.
type level int

const (
	anyone level = iota
	viewer
	operator
	admin
)

// Every route against every role, unscoped and limited to web-*: a
// request is refused (403) exactly when no grant of the caller covers
// it.
func TestAuthorizeRouteRoleGlob(t *testing.T) {
	e, id := accessEnv(t)
	opts := `[{"section":"Service","name":"ExecStart","value":"/bin/true"}]`
	other := `[{"section":"Service","name":"ExecStart","value":"/bin/false"}]`
	routes := []struct {
		name         string
		method, path string
		body         string
		need         level
		unit         string // the unit targeted (%s: the target); "" for a collection
	}{
		{"list units", http.MethodGet, "/fleet/v1/units", "", viewer, ""},
		{"get unit", http.MethodGet, "/fleet/v1/units/%s", "", viewer, "%s"},
		{"unit status", http.MethodGet, "/fleet/v1/units/%s/status", "", viewer, "%s"},
		{"state of unit", http.MethodGet, "/fleet/v1/state?unitName=%s", "", viewer, "%s"},
		{"state item", http.MethodGet, "/fleet/v1/state/%s", "", viewer, "%s"},
		{"all states", http.MethodGet, "/fleet/v1/state", "", viewer, ""},
		{"machines", http.MethodGet, "/v1-alpha/machines", "", viewer, ""},
		{"start", http.MethodPut, "/fleet/v1/units/%s", `{"desiredState":"launched"}`, operator, "%s"},
		{"stop", http.MethodPut, "/fleet/v1/units/%s", `{"desiredState":"loaded"}`, operator, "%s"},
		{"unload", http.MethodPut, "/fleet/v1/units/%s", `{"desiredState":"inactive"}`, operator, "%s"},
		{"same options start", http.MethodPut, "/fleet/v1/units/%s", `{"desiredState":"launched","options":` + opts + `}`, operator, "%s"},
		{"replace", http.MethodPut, "/fleet/v1/units/%s", `{"desiredState":"launched","options":` + other + `}`, admin, "%s"},
		{"submit new", http.MethodPut, "/fleet/v1/units/new-%s", `{"desiredState":"loaded","options":` + opts + `}`, admin, "new-%s"},
		{"destroy", http.MethodDelete, "/fleet/v1/units/%s", "", admin, "%s"},
		{"metadata", http.MethodPatch, "/fleet/v1/machines", `[]`, admin, ""},
		{"list grants", http.MethodGet, "/fleet/v1/acl", "", admin, ""},
		{"grant", http.MethodPut, "/fleet/v1/acl", `{"role":"viewer","subject":"user:zed"}`, admin, ""},
		{"audit", http.MethodGet, "/fleet/v1/audit", "", admin, ""},
		{"whoami", http.MethodGet, "/fleet/v1/whoami", "", anyone, ""},
		{"discovery", http.MethodGet, "/fleet/v1/discovery", "", anyone, ""},
		{"health", http.MethodGet, "/health", "", anyone, ""},
	}
	roles := []struct {
		name  string
		grant *access.Grant // nil: none
		root  bool
		has   level
	}{
		{name: "nobody", has: anyone},
		{name: "viewer", grant: &access.Grant{Role: access.Viewer, Subject: "user:alice"}, has: viewer},
		{name: "operator", grant: &access.Grant{Role: access.Operator, Subject: "group:dev"}, has: operator},
		{name: "admin", grant: &access.Grant{Role: access.Admin, Subject: "uid:1000"}, has: admin},
		{name: "operator web-*", grant: &access.Grant{Role: access.Operator, Subject: "user:alice", Units: "web-*"}, has: operator},
		{name: "admin web-*", grant: &access.Grant{Role: access.Admin, Subject: "user:alice", Units: "web-*"}, has: admin},
		{name: "grant of another subject", grant: &access.Grant{Role: access.Admin, Subject: "user:bob"}, has: anyone},
		{name: "root", root: true, has: admin},
	}
	for _, role := range roles {
		for _, target := range []string{"web-1.service", "db.service"} {
			for _, rt := range routes {
				t.Run(role.name+"/"+target+"/"+rt.name, func(t *testing.T) {
					for _, n := range []string{"web-1.service", "db.service"} {
						e.storeUnit(n, decodeOpts(t, opts), unit.StateLaunched)
					}
					for _, g := range mustGrants(t, e) {
						if err := e.reg.RemoveGrant(e.ctx, g); err != nil {
							t.Fatal(err)
						}
					}
					if role.grant != nil {
						if _, err := e.reg.AddGrant(e.ctx, *role.grant); err != nil {
							t.Fatal(err)
						}
					}
					*id = access.Identity{Subjects: []string{"user:alice", "uid:1000", "group:dev"}, Root: role.root}

					path := strings.ReplaceAll(rt.path, "%s", target)
					want := role.has >= rt.need
					if role.grant != nil && role.grant.Units != "" && rt.need > anyone {
						// A scoped grant covers only requests on matching units.
						want = want && rt.unit != "" && strings.HasPrefix(strings.ReplaceAll(rt.unit, "%s", target), "web-")
					}
					rec := e.request(rt.method, path, rt.body, "Content-Type", "application/json")
					if got := rec.Code != http.StatusForbidden; got != want {
						t.Fatalf("%s %s: code %d (%s), allowed = %v, want %v", rt.method, path, rec.Code, rec.Body, got, want)
					}
					if !want && !strings.HasPrefix(errMsg(t, rec.Body.Bytes()), "user:alice may not ") {
						t.Errorf("refusal message = %q, want it to name user:alice", errMsg(t, rec.Body.Bytes()))
					}
				})
			}
		}
	}
}

// A refused submit stores nothing and is in the audit trail with its
// subject, action, target and code; an accepted one with the unit's hash.
func TestAuditRecordsRefusedAndAccepted(t *testing.T) {
	e, id := accessEnv(t)
	*id = access.Identity{Subjects: []string{"user:nobody", "uid:65534"}, From: "unix:/test pid 1 uid 65534"}
	body := `{"desiredState":"launched","options":[{"section":"Service","name":"ExecStart","value":"/bin/true"}]}`
	rec := e.putJSON("/fleet/v1/units/db.service", body)
	if rec.Code != http.StatusForbidden || errMsg(t, rec.Body.Bytes()) != "user:nobody may not submit db.service" {
		t.Fatalf("nobody's submit: %d %s", rec.Code, rec.Body)
	}
	if _, err := e.reg.Unit(e.ctx, "db.service"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("refused unit stored: err = %v", err)
	}
	*id = access.Identity{Subjects: []string{"user:root", "uid:0"}, Root: true}
	if rec := e.putJSON("/fleet/v1/units/db.service", body); rec.Code != http.StatusCreated {
		t.Fatalf("root's submit: %d %s", rec.Code, rec.Body)
	}
	rec = e.request(http.MethodGet, "/fleet/v1/audit?unit=db.service", "")
	var page api.AuditPage
	if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("audit: %d %s %v", rec.Code, rec.Body, err)
	}
	if len(page.Entries) != 2 {
		t.Fatalf("audit entries = %+v, want 2", page.Entries)
	}
	refused, accepted := page.Entries[0], page.Entries[1]
	if refused.Subject != "user:nobody" || refused.Action != access.Submit || refused.Code != http.StatusForbidden ||
		refused.Machine != "m1" || refused.From != "unix:/test pid 1 uid 65534" || refused.Hash != "" {
		t.Errorf("refused entry = %+v", refused)
	}
	if accepted.Subject != "user:root" || accepted.Action != access.Submit || accepted.Code != http.StatusCreated || len(accepted.Hash) != 40 {
		t.Errorf("accepted entry = %+v", accepted)
	}
	// Reads are not audited; whoami answers everyone.
	*id = access.Identity{Subjects: []string{"anonymous"}}
	rec = e.request(http.MethodGet, "/fleet/v1/whoami", "")
	var me api.WhoAmI
	if err := json.Unmarshal(rec.Body.Bytes(), &me); err != nil || len(me.Subjects) != 1 || me.Subjects[0] != "anonymous" {
		t.Fatalf("whoami: %s %v", rec.Body, err)
	}
}

func mustGrants(t *testing.T, e *testEnv) []access.Grant {
	t.Helper()
	gs, err := e.reg.Grants(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return gs
}

func decodeOpts(t *testing.T, s string) []*api.UnitOption {
	t.Helper()
	var o []*api.UnitOption
	if err := json.Unmarshal([]byte(s), &o); err != nil {
		t.Fatal(err)
	}
	return o
}

func errMsg(t *testing.T, body []byte) string {
	t.Helper()
	var env api.ErrorResponse
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("decode error envelope %q: %v", body, err)
	}
	return env.Error.Message
}

// A flood of refused requests cannot push the trail's other entries out:
// refusals beyond a subject's budget are left out (and counted), while
// an accepted change made during the flood is recorded.
func TestAuditRefusalFloodBounded(t *testing.T) {
	e, id := accessEnv(t)
	const flood = 200
	body := `{"desiredState":"launched","options":[{"section":"Service","name":"ExecStart","value":"/bin/true"}]}`
	*id = access.Identity{Subjects: []string{"anonymous"}, From: "tcp:127.0.0.1:1"}
	for i := range flood {
		if rec := e.putJSON("/fleet/v1/units/x.service", body); rec.Code != http.StatusForbidden {
			t.Fatalf("refusal %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	*id = access.Identity{Subjects: []string{"user:root", "uid:0"}, Root: true}
	if rec := e.putJSON("/fleet/v1/units/db.service", body); rec.Code != http.StatusCreated {
		t.Fatalf("root's submit: %d %s", rec.Code, rec.Body)
	}
	rec := e.request(http.MethodGet, "/fleet/v1/audit?subject=anonymous", "")
	var page api.AuditPage
	if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("audit: %d %s %v", rec.Code, rec.Body, err)
	}
	// The burst plus what the sustained rate allows while the test runs:
	// far fewer than the flood on any machine that runs 200 requests in
	// well under 100 seconds.
	if n := len(page.Entries); n == 0 || n >= flood/2 {
		t.Fatalf("anonymous refusals recorded = %d of %d", n, flood)
	}
	rec = e.request(http.MethodGet, "/fleet/v1/audit?unit=db.service", "")
	page = api.AuditPage{}
	if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil || len(page.Entries) != 1 || page.Entries[0].Subject != "user:root" {
		t.Fatalf("root's change during the flood: %s %v", rec.Body, err)
	}
}
