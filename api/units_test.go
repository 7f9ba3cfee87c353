package api_test

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"testing"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/unit"
)

func TestPutUnit(t *testing.T) {
	e := newEnv(t, api.Options{})
	hello := serviceOpts("hello", "/bin/sleep 1000")
	changed := serviceOpts("hello", "/bin/sleep 2000")
	tests := []struct {
		name        string
		unit        string
		existing    []*api.UnitOption // stored before the request, desired existingDS
		existingDS  unit.FleetState
		body        string // raw body; built from req when empty
		req         api.Unit
		code        int
		msg         string            // expected error message
		wantOpts    []*api.UnitOption // expected stored contents afterwards (nil: unchanged or none)
		wantDesired unit.FleetState   // expected stored desired state afterwards
		wantGlobal  bool
	}{
		{name: "create defaults to inactive", unit: "c1.service", req: api.Unit{Options: hello},
			code: http.StatusCreated, wantOpts: hello, wantDesired: unit.StateInactive},
		{name: "create launched", unit: "c2.service", req: api.Unit{Options: hello, DesiredState: "launched"},
			code: http.StatusCreated, wantOpts: hello, wantDesired: unit.StateLaunched},
		{name: "create with matching body name", unit: "c3.service",
			req:  api.Unit{Name: "c3.service", Options: hello, DesiredState: "loaded"},
			code: http.StatusCreated, wantOpts: hello, wantDesired: unit.StateLoaded},
		{name: "create global", unit: "g1.service",
			req:  api.Unit{Options: append(serviceOpts("g", "/bin/true"), opts("X-Fleet", "Global", "true")...)},
			code: http.StatusCreated, wantOpts: append(serviceOpts("g", "/bin/true"), opts("X-Fleet", "Global", "true")...),
			wantDesired: unit.StateInactive, wantGlobal: true},
		{name: "create template inactive", unit: "tmpl@.service", req: api.Unit{Options: hello},
			code: http.StatusCreated, wantOpts: hello, wantDesired: unit.StateInactive},
		{name: "create instance launched", unit: "tmpl@1.service", req: api.Unit{Options: hello, DesiredState: "launched"},
			code: http.StatusCreated, wantOpts: hello, wantDesired: unit.StateLaunched},
		{name: "create template loaded", unit: "t2@.service", req: api.Unit{Options: hello, DesiredState: "loaded"},
			code: http.StatusBadRequest, msg: `cannot activate template "t2@.service"`},
		{name: "create without options", unit: "c4.service", req: api.Unit{DesiredState: "launched"},
			code: http.StatusConflict, msg: "unit does not exist and options field empty"},
		{name: "name differs", unit: "c5.service", req: api.Unit{Name: "other.service", Options: hello},
			code: http.StatusBadRequest, msg: `name in URL "c5.service" differs from unit name in request body "other.service"`},
		{name: "invalid unit type", unit: "c6.foo", req: api.Unit{Options: hello},
			code: http.StatusBadRequest, msg: `invalid unit type: "foo"`},
		{name: "name starting with at", unit: "@c7.service", req: api.Unit{Options: hello},
			code: http.StatusBadRequest, msg: `unit name cannot start in "@"`},
		{name: "bad desired state on create", unit: "c8.service", req: api.Unit{Options: hello, DesiredState: "running"},
			code: http.StatusBadRequest, msg: `invalid desired state "running": must be inactive, loaded or launched`},
		{name: "forbidden option combination", unit: "c9.service",
			req:  api.Unit{Options: append(serviceOpts("x", "/bin/true"), opts("X-Fleet", "MachineID", "abc", "X-Fleet", "Global", "true")...)},
			code: http.StatusBadRequest, msg: "MachineID cannot be used with Global"},
		{name: "null option", unit: "c10.service", body: `{"options":[null]}`,
			code: http.StatusBadRequest, msg: "invalid unit option: null"},
		{name: "set desired state", unit: "e1.service", existing: hello, existingDS: unit.StateInactive,
			req: api.Unit{DesiredState: "launched"}, code: http.StatusNoContent, wantOpts: hello, wantDesired: unit.StateLaunched},
		{name: "same options set state", unit: "e2.service", existing: hello, existingDS: unit.StateInactive,
			req: api.Unit{Options: hello, DesiredState: "loaded"}, code: http.StatusNoContent, wantOpts: hello, wantDesired: unit.StateLoaded},
		{name: "existing without desired state", unit: "e3.service", existing: hello, existingDS: unit.StateLoaded,
			req: api.Unit{}, code: http.StatusConflict, msg: "must provide DesiredState to update existing unit",
			wantOpts: hello, wantDesired: unit.StateLoaded},
		{name: "same options without desired state", unit: "e4.service", existing: hello, existingDS: unit.StateLoaded,
			req: api.Unit{Options: hello}, code: http.StatusConflict, msg: "must provide DesiredState to update existing unit",
			wantOpts: hello, wantDesired: unit.StateLoaded},
		{name: "replace keeps given state", unit: "e5.service", existing: hello, existingDS: unit.StateInactive,
			req: api.Unit{Options: changed, DesiredState: "launched"}, code: http.StatusCreated,
			wantOpts: changed, wantDesired: unit.StateLaunched},
		{name: "replace resets state to inactive", unit: "e6.service", existing: hello, existingDS: unit.StateLaunched,
			req: api.Unit{Options: changed}, code: http.StatusCreated, wantOpts: changed, wantDesired: unit.StateInactive},
		{name: "bad desired state on update", unit: "e7.service", existing: hello, existingDS: unit.StateLoaded,
			req: api.Unit{DesiredState: "started"}, code: http.StatusBadRequest,
			msg: `invalid desired state "started": must be inactive, loaded or launched`, wantOpts: hello, wantDesired: unit.StateLoaded},
		{name: "replace with forbidden combination", unit: "e8.service", existing: hello, existingDS: unit.StateInactive,
			req:  api.Unit{Options: append(serviceOpts("x", "/bin/true"), opts("X-Fleet", "Conflicts", "a*", "X-Fleet", "Replaces", "b")...)},
			code: http.StatusBadRequest, msg: "Conflicts cannot be used with Replaces", wantOpts: hello, wantDesired: unit.StateInactive},
		{name: "replaces a unit that replaces it", unit: "rb.service", existing: nil,
			req:  api.Unit{Options: append(serviceOpts("rb", "/bin/true"), opts("X-Fleet", "Replaces", "ra.service")...)},
			code: http.StatusCreated, wantOpts: append(serviceOpts("rb", "/bin/true"), opts("X-Fleet", "Replaces", "ra.service")...),
			wantDesired: unit.StateInactive},
		{name: "circular Replaces refused", unit: "ra.service",
			req:  api.Unit{Options: append(serviceOpts("ra", "/bin/true"), opts("X-Fleet", "Replaces", "r?.service")...)},
			code: http.StatusBadRequest, msg: "circular Replaces: ra.service replaces rb.service, rb.service replaces ra.service"},
		{name: "three-unit Replaces chain is fine", unit: "rc.service",
			req:  api.Unit{Options: append(serviceOpts("rc", "/bin/true"), opts("X-Fleet", "Replaces", "rb.service")...)},
			code: http.StatusCreated, wantOpts: append(serviceOpts("rc", "/bin/true"), opts("X-Fleet", "Replaces", "rb.service")...),
			wantDesired: unit.StateInactive},
		{name: "closing a three-unit Replaces cycle refused", unit: "ra.service",
			req:  api.Unit{Options: append(serviceOpts("ra", "/bin/true"), opts("X-Fleet", "Replaces", "rc.service")...)},
			code: http.StatusBadRequest, msg: "circular Replaces: ra.service replaces rc.service, rc.service replaces rb.service, rb.service replaces ra.service"},
		{name: "activate existing template", unit: "t3@.service", existing: hello, existingDS: unit.StateInactive,
			req: api.Unit{DesiredState: "launched"}, code: http.StatusBadRequest, msg: `cannot activate template "t3@.service"`,
			wantOpts: hello, wantDesired: unit.StateInactive},
		{name: "replace template launched", unit: "t4@.service", existing: hello, existingDS: unit.StateInactive,
			req: api.Unit{Options: changed, DesiredState: "launched"}, code: http.StatusBadRequest,
			msg: `cannot activate template "t4@.service"`, wantOpts: hello, wantDesired: unit.StateInactive},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.existing != nil {
				e.storeUnit(tc.unit, tc.existing, tc.existingDS)
			}
			body := tc.body
			if body == "" {
				body = unitJSON(t, tc.req)
			}
			rec := e.putJSON("/fleet/v1/units/"+tc.unit, body)
			if tc.msg != "" {
				wantError(t, rec, tc.code, tc.msg)
			} else if rec.Code != tc.code || rec.Body.Len() != 0 {
				t.Fatalf("status = %d body %q, want %d and no body", rec.Code, rec.Body.String(), tc.code)
			}
			got, err := e.reg.Unit(e.ctx, tc.unit)
			if tc.wantOpts == nil {
				if !registryNotFound(err) {
					t.Fatalf("unit stored after a refused create: %+v, %v", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("stored unit: %v", err)
			}
			f := canonical(t, tc.wantOpts)
			if got.Content != f.Serialize() || got.Hash != f.Hash() {
				t.Errorf("stored contents %q (hash %s), want %q (hash %s)", got.Content, got.Hash, f.Serialize(), f.Hash())
			}
			if got.Desired != tc.wantDesired || got.Global != tc.wantGlobal {
				t.Errorf("stored desired %q global %v, want %q %v", got.Desired, got.Global, tc.wantDesired, tc.wantGlobal)
			}
		})
	}
}

func registryNotFound(err error) bool {
	return err != nil && errors.Is(err, registry.ErrNotFound)
}

func TestPutUnitBody(t *testing.T) {
	e := newEnv(t, api.Options{})
	body := unitJSON(t, api.Unit{Options: serviceOpts("x", "/bin/true")})
	tests := []struct {
		name   string
		body   string
		hdr    []string
		code   int
		msg    string
		prefix bool
	}{
		{name: "no content type", body: body, code: http.StatusUnsupportedMediaType, msg: "expected 1 Content-Type, got 0"},
		{name: "two content types", body: body, hdr: []string{"Content-Type", "application/json", "Content-Type", "application/json"},
			code: http.StatusUnsupportedMediaType, msg: "expected 1 Content-Type, got 2"},
		{name: "text content type", body: body, hdr: []string{"Content-Type", "text/plain"},
			code: http.StatusUnsupportedMediaType, msg: "only acceptable Content-Type is application/json"},
		{name: "malformed content type", body: body, hdr: []string{"Content-Type", "application/json; ="},
			code: http.StatusUnsupportedMediaType, msg: "only acceptable Content-Type is application/json"},
		{name: "undecodable body", body: "{", hdr: []string{"Content-Type", "application/json"},
			code: http.StatusBadRequest, msg: "unable to decode body: ", prefix: true},
		{name: "empty body", body: "", hdr: []string{"Content-Type", "application/json"},
			code: http.StatusBadRequest, msg: "unable to decode body: ", prefix: true},
		{name: "wrong field type", body: `{"options":"x"}`, hdr: []string{"Content-Type", "application/json"},
			code: http.StatusBadRequest, msg: "unable to decode body: ", prefix: true},
		{name: "media type parameters accepted", body: body, hdr: []string{"Content-Type", "application/json; charset=utf-8"},
			code: http.StatusCreated},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.request(http.MethodPut, "/fleet/v1/units/b"+strconv.Itoa(i)+".service", tc.body, tc.hdr...)
			switch {
			case tc.msg == "":
				if rec.Code != tc.code {
					t.Fatalf("status = %d (%q), want %d", rec.Code, rec.Body.String(), tc.code)
				}
			case tc.prefix:
				wantErrorPrefix(t, rec, tc.code, tc.msg)
			default:
				wantError(t, rec, tc.code, tc.msg)
			}
		})
	}
}

func TestGetAndDeleteUnit(t *testing.T) {
	e := newEnv(t, api.Options{})
	hello := serviceOpts("hello", "/bin/sleep 1000")
	global := append(serviceOpts("g", "/bin/true"), opts("X-Fleet", "Global", "true")...)
	e.storeUnit("a.service", hello, unit.StateLaunched)
	e.storeUnit("b.service", hello, unit.StateLoaded)
	e.storeUnit("global.service", global, unit.StateLaunched)

	m1 := "0123456789abcdef0123456789abcdef"
	lease := e.registerMachine(unit.Machine{ID: m1, PublicIP: "127.0.0.5"})
	ha := canonical(t, hello).Hash()
	e.schedule(registry.Place(unit.Placement{Unit: "a.service", Machine: m1, Hash: ha, Desired: unit.StateLaunched}),
		registry.SetReason("b.service", "no machine matches MachineMetadata region=mars"),
	)
	e.publish(lease, unit.State{Name: "a.service", MachineID: m1, Hash: ha, Current: unit.StateLaunched,
		SystemdState: unit.SystemdState{LoadState: "loaded", ActiveState: "active", SubState: "running"}})

	tests := []struct {
		name string
		unit string
		want api.Unit
	}{
		{name: "scheduled", unit: "a.service", want: api.Unit{Name: "a.service", Options: hello,
			DesiredState: "launched", CurrentState: "launched", MachineID: m1}},
		{name: "unplaceable", unit: "b.service", want: api.Unit{Name: "b.service", Options: hello,
			DesiredState: "loaded", CurrentState: "inactive", Reason: "no machine matches MachineMetadata region=mars"}},
		{name: "global has no current state", unit: "global.service", want: api.Unit{Name: "global.service", Options: global,
			DesiredState: "launched"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got api.Unit
			decodeOK(t, e.request(http.MethodGet, "/fleet/v1/units/"+tc.unit, ""), &got)
			wantUnit(t, &got, &tc.want)
		})
	}

	t.Run("list", func(t *testing.T) {
		var page api.UnitPage
		decodeOK(t, e.request(http.MethodGet, "/fleet/v1/units", ""), &page)
		if page.NextPageToken != "" || len(page.Units) != len(tests) {
			t.Fatalf("page: %d units, token %q", len(page.Units), page.NextPageToken)
		}
		for i, tc := range tests {
			want := tc.want
			if want.CurrentState == "" {
				want.CurrentState = "inactive" // a global unit in the list
			}
			wantUnit(t, page.Units[i], &want)
		}
	})

	t.Run("delete", func(t *testing.T) {
		rec := e.request(http.MethodDelete, "/fleet/v1/units/b.service", "")
		if rec.Code != http.StatusNoContent || rec.Body.Len() != 0 {
			t.Fatalf("DELETE = %d %q, want 204", rec.Code, rec.Body.String())
		}
		wantError(t, e.request(http.MethodGet, "/fleet/v1/units/b.service", ""), http.StatusNotFound, "unit does not exist")
		wantError(t, e.request(http.MethodDelete, "/fleet/v1/units/b.service", ""), http.StatusNotFound, "unit does not exist")
	})
}

func wantUnit(t *testing.T, got, want *api.Unit) {
	t.Helper()
	if got.Name != want.Name || got.DesiredState != want.DesiredState || got.CurrentState != want.CurrentState ||
		got.MachineID != want.MachineID || got.Reason != want.Reason {
		t.Errorf("unit = {%s %s %s %s %q}, want {%s %s %s %s %q}",
			got.Name, got.DesiredState, got.CurrentState, got.MachineID, got.Reason,
			want.Name, want.DesiredState, want.CurrentState, want.MachineID, want.Reason)
	}
	if !slices.EqualFunc(got.Options, want.Options, func(a, b *api.UnitOption) bool { return *a == *b }) {
		t.Errorf("%s options = %s, want %s", got.Name, unitJSON(t, api.Unit{Options: got.Options}), unitJSON(t, api.Unit{Options: want.Options}))
	}
}

func TestUnitsPagination(t *testing.T) {
	e := newEnv(t, api.Options{TokenLimit: 2})
	names := []string{"a.service", "b.service", "c.service", "d.service"}
	for _, n := range names {
		e.storeUnit(n, serviceOpts(n, "/bin/true"), unit.StateInactive)
	}
	pageTok := func(limit, page uint16) string {
		return base64Token(limit, page)
	}
	tests := []struct {
		name      string
		query     string
		wantNames []string
		wantNext  string
		code      int
		msg       string
	}{
		{name: "first page", query: "", wantNames: names[:2], wantNext: pageTok(2, 2), code: http.StatusOK},
		{name: "explicit first page", query: "?nextPageToken=" + pageTok(2, 1), wantNames: names[:2], wantNext: pageTok(2, 2), code: http.StatusOK},
		{name: "last full page", query: "?nextPageToken=" + pageTok(2, 2), wantNames: names[2:], wantNext: pageTok(2, 3), code: http.StatusOK},
		{name: "extra empty page", query: "?nextPageToken=" + pageTok(2, 3), code: http.StatusOK},
		{name: "wrong limit", query: "?nextPageToken=" + pageTok(100, 1), code: http.StatusBadRequest, msg: "token limit must be 2"},
		{name: "page zero", query: "?nextPageToken=" + pageTok(2, 0), code: http.StatusBadRequest, msg: "token page must be greater than zero"},
		{name: "repeated", query: "?nextPageToken=" + pageTok(2, 1) + "&nextPageToken=" + pageTok(2, 1),
			code: http.StatusBadRequest, msg: "too many values for page token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.request(http.MethodGet, "/fleet/v1/units"+tc.query, "")
			if tc.msg != "" {
				wantError(t, rec, tc.code, tc.msg)
				return
			}
			var page api.UnitPage
			decodeOK(t, rec, &page)
			var got []string
			for _, u := range page.Units {
				got = append(got, u.Name)
			}
			if !slices.Equal(got, tc.wantNames) || page.NextPageToken != tc.wantNext {
				t.Errorf("page = %v next %q, want %v next %q", got, page.NextPageToken, tc.wantNames, tc.wantNext)
			}
			if len(tc.wantNames) == 0 && tc.wantNext == "" && rec.Body.String() != "{}\n" {
				t.Errorf("empty page body = %q, want {}", rec.Body.String())
			}
		})
	}
}
