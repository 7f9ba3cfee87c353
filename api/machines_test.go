package api_test

import (
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/unit"
)

func TestMachinesList(t *testing.T) {
	e := newEnv(t, api.Options{})
	wantEmpty := e.request(http.MethodGet, "/fleet/v1/machines", "")
	if wantEmpty.Code != http.StatusOK || wantEmpty.Body.String() != "{}\n" {
		t.Fatalf("empty list = %d %q, want 200 {}", wantEmpty.Code, wantEmpty.Body.String())
	}
	e.registerMachine(unit.Machine{ID: "bbbb", PublicIP: "127.0.0.2"})
	e.registerMachine(unit.Machine{ID: "aaaa", PublicIP: "127.0.0.1", Metadata: map[string]string{"region": "eu", "disk": "ssd"}})

	var page api.MachinePage
	decodeOK(t, e.request(http.MethodGet, "/fleet/v1/machines", ""), &page)
	want := []api.Machine{
		{ID: "aaaa", PrimaryIP: "127.0.0.1", Metadata: map[string]string{"region": "eu", "disk": "ssd"}},
		{ID: "bbbb", PrimaryIP: "127.0.0.2"},
	}
	if len(page.Machines) != len(want) || page.NextPageToken != "" {
		t.Fatalf("got %d machines next %q", len(page.Machines), page.NextPageToken)
	}
	for i := range want {
		wantMachine(t, page.Machines[i], &want[i])
	}
	wantError(t, e.request(http.MethodGet, "/fleet/v1/machines?nextPageToken=EwBMLg==", ""),
		http.StatusBadRequest, "token limit must be 100")
}

func wantMachine(t *testing.T, got, want *api.Machine) {
	t.Helper()
	if got.ID != want.ID || got.PrimaryIP != want.PrimaryIP || !maps.Equal(got.Metadata, want.Metadata) {
		t.Errorf("machine = %+v, want %+v", *got, *want)
	}
}

func TestMachinesPatch(t *testing.T) {
	e := newEnv(t, api.Options{})
	e.registerMachine(unit.Machine{ID: "m1", PublicIP: "127.0.0.1", Metadata: map[string]string{"region": "eu", "disk": "hdd"}})
	tests := []struct {
		name   string
		body   string
		code   int
		msg    string
		prefix bool
		want   map[string]string // m1's metadata afterwards
	}{
		{name: "add", body: `[{"op":"add","path":"/m1/metadata/rack","value":{"value":"r1"}}]`,
			code: http.StatusNoContent, want: map[string]string{"region": "eu", "disk": "hdd", "rack": "r1"}},
		{name: "replace overrides config", body: `[{"op":"replace","path":"/m1/metadata/disk","value":{"value":"ssd"}}]`,
			code: http.StatusNoContent, want: map[string]string{"region": "eu", "disk": "ssd", "rack": "r1"}},
		{name: "remove hides config", body: `[{"op":"remove","path":"/m1/metadata/region"}]`,
			code: http.StatusNoContent, want: map[string]string{"disk": "ssd", "rack": "r1"}},
		{name: "several ops", body: `[{"op":"add","path":"/m1/metadata/a.b_c-d","value":{"value":"1"}},` +
			`{"op":"remove","path":"/m1/metadata/rack"},{"op":"add","path":"/m1/metadata/x","value":{"value":"y\tz"}},` +
			`{"op":"remove","path":"/m1/metadata/x"}]`,
			code: http.StatusNoContent, want: map[string]string{"disk": "ssd", "a.b_c-d": "1"}},
		{name: "a machine that is not registered changes nothing",
			body: `[{"op":"add","path":"/m1/metadata/k","value":{"value":"v"}},{"op":"add","path":"/m2/metadata/x","value":{"value":"y"}}]`,
			code: http.StatusNotFound, msg: "machine m2 not found"},
		{name: "dot-dot key", body: `[{"op":"add","path":"/m1/metadata/..","value":{"value":"x"}}]`,
			code: http.StatusBadRequest, msg: "machine metadata path invalid"},
		{name: "hidden key", body: `[{"op":"remove","path":"/m1/metadata/.x"}]`,
			code: http.StatusBadRequest, msg: "machine metadata path invalid"},
		{name: "key too long", body: `[{"op":"remove","path":"/m1/metadata/` + strings.Repeat("k", 254) + `"}]`,
			code: http.StatusBadRequest, msg: "machine metadata path invalid"},
		{name: "control character in a value", body: `[{"op":"add","path":"/m1/metadata/k","value":{"value":"a\u001b[2Jb"}}]`,
			code: http.StatusBadRequest, msg: `invalid value of metadata key k: it holds the control character '\x1b'`},
		{name: "trailing data", body: `[{"op":"add","path":"/m1/metadata/k","value":{"value":"v"}}] [{"op":"add","path":"/m1/metadata/j","value":{"value":"v"}}]`,
			code: http.StatusBadRequest, msg: "unable to decode body: invalid character '[' after top-level value"},
		{name: "body over the limit", body: `[{"op":"add","path":"/m1/metadata/k","value":{"value":"` +
			strings.Repeat("v", api.MaxPatchBodyBytes) + `"}}]`,
			code: http.StatusRequestEntityTooLarge, msg: "request body exceeds the limit of 262144 bytes (256 KiB)"},
		{name: "invalid UTF-8", body: "[{\"op\":\"add\",\"path\":\"/m1/metadata/k\",\"value\":{\"value\":\"\xff\"}}]",
			code: http.StatusBadRequest, msg: "request body is not valid UTF-8"},
		{name: "empty list", body: `[]`, code: http.StatusNoContent, want: map[string]string{"disk": "ssd", "a.b_c-d": "1"}},
		{name: "invalid op", body: `[{"op":"test","path":"/m1/metadata/disk","value":{"value":"x"}}]`,
			code: http.StatusBadRequest, msg: "invalid op: expect add, remove, or replace"},
		{name: "bad key", body: `[{"op":"add","path":"/m1/metadata/a b","value":{"value":"x"}}]`,
			code: http.StatusBadRequest, msg: "machine metadata path invalid"},
		{name: "machine with slash", body: `[{"op":"add","path":"/m1/x/metadata/k","value":{"value":"x"}}]`,
			code: http.StatusBadRequest, msg: "machine metadata path invalid"},
		{name: "no key", body: `[{"op":"add","path":"/m1/metadata/","value":{"value":"x"}}]`,
			code: http.StatusBadRequest, msg: "machine metadata path invalid"},
		{name: "not metadata", body: `[{"op":"add","path":"/m1/labels/k","value":{"value":"x"}}]`,
			code: http.StatusBadRequest, msg: "machine metadata path invalid"},
		{name: "add without value", body: `[{"op":"add","path":"/m1/metadata/k"}]`,
			code: http.StatusBadRequest, msg: "invalid value: add and replace require a value"},
		{name: "replace with empty value", body: `[{"op":"replace","path":"/m1/metadata/k","value":{"value":""}}]`,
			code: http.StatusBadRequest, msg: "invalid value: add and replace require a value"},
		{name: "flat value is not accepted", body: `[{"op":"add","path":"/m1/metadata/k","value":"v"}]`,
			code: http.StatusBadRequest, msg: "unable to decode body: ", prefix: true},
		{name: "object body", body: `{"op":"add"}`, code: http.StatusBadRequest, msg: "unable to decode body: ", prefix: true},
		{name: "too many ops for one transaction", body: manyOps(api.MaxMetadataOps + 1),
			code: http.StatusBadRequest, msg: "too many operations: 129 (at most 128 in one request)"},
		{name: "invalid op later in the list changes nothing",
			body: `[{"op":"add","path":"/m1/metadata/disk","value":{"value":"nvme"}},{"op":"move","path":"/m1/metadata/x"}]`,
			code: http.StatusBadRequest, msg: "invalid op: expect add, remove, or replace"},
	}
	want := map[string]string{"region": "eu", "disk": "hdd"}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.request(http.MethodPatch, "/fleet/v1/machines", tc.body, "Content-Type", "application/json")
			switch {
			case tc.prefix:
				wantErrorPrefix(t, rec, tc.code, tc.msg)
			case tc.msg != "":
				wantError(t, rec, tc.code, tc.msg)
			default:
				if rec.Code != tc.code || rec.Body.Len() != 0 {
					t.Fatalf("PATCH = %d %q, want %d and no body", rec.Code, rec.Body.String(), tc.code)
				}
				if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q, want application/json", ct)
				}
			}
			if tc.want != nil {
				want = tc.want
			}
			ms, err := e.reg.Machines(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != 1 || !maps.Equal(ms[0].Metadata, want) {
				t.Errorf("machines after PATCH = %+v, want m1 with %v", ms, want)
			}
		})
	}
}

// manyOps is a PATCH body of n valid add operations on m1.
func manyOps(n int) string {
	ops := make([]string, n)
	for i := range ops {
		ops[i] = fmt.Sprintf(`{"op":"add","path":"/m1/metadata/k%d","value":{"value":"v"}}`, i)
	}
	return "[" + strings.Join(ops, ",") + "]"
}
