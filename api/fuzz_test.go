package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	gsunit "github.com/coreos/go-systemd/v22/unit"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/registry"
	"github.com/fleet-next/fleet/registry/registrytest"
	"github.com/fleet-next/fleet/unit"
)

// fuzzMachine is the machine registered for the handler fuzzer.
const fuzzMachine = "f1ee7000f1ee7000"

// FuzzHandler sends arbitrary requests (method, path, header lines "K: V",
// body) to the whole API handler on a real registry on embedded etcd, and
// checks that:
//
//   - no request is answered 5xx (etcd stays up);
//   - every 2xx write reads back identically through GET: a created or
//     replaced unit has exactly the canonical options of the request, the
//     contents fleetctl cat would print equal those stored, a new desired
//     state is the one asked for, a destroyed unit is gone, and metadata
//     set or removed shows in the machine list;
//   - every stored unit parses identically with go-systemd's unit parser
//     and ours, and passes the checks it was admitted with.
//
// testdata/fuzz/FuzzHandler holds every input of the issue "Hostile
// input" that the API must refuse.
func FuzzHandler(f *testing.F) {
	reg := registrytest.New(f)
	ctx := context.Background()
	if _, err := reg.Register(ctx, unit.Machine{ID: fuzzMachine, PublicIP: "127.0.0.9"}, "fuzz", time.Hour); err != nil {
		f.Fatal(err)
	}
	h := api.NewHandler(reg, api.Options{Version: "fuzz", TokenLimit: 3})
	f.Add("PUT", "/fleet/v1/units/hello.service", "Content-Type: application/json",
		[]byte(`{"desiredState":"launched","options":[{"section":"Service","name":"ExecStart","value":"/bin/true"}]}`))
	f.Add("PUT", "/v1-alpha/units/hello.service", "Content-Type: application/json; charset=utf-8",
		[]byte(`{"desiredState":"loaded"}`))
	f.Add("DELETE", "/fleet/v1/units/hello.service", "", []byte(nil))
	f.Add("GET", "/fleet/v1/units?nextPageToken=AwACAA==", "", []byte(nil))
	f.Add("PATCH", "/fleet/v1/machines", "Content-Type: application/json",
		[]byte(`[{"op":"add","path":"/`+fuzzMachine+`/metadata/rack","value":{"value":"r1"}},{"op":"remove","path":"/`+fuzzMachine+`/metadata/x"}]`))
	f.Fuzz(func(t *testing.T, method, path, header string, body []byte) {
		req, err := http.NewRequestWithContext(ctx, method, "http://fleet"+path, bytes.NewReader(body))
		if err != nil || req.URL.Path == "" {
			return // not a request a client can send
		}
		for line := range strings.SplitSeq(header, "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && validHeaderName(k) {
				req.Header.Add(k, strings.TrimSpace(v))
			}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body)
		}
		if rec.Code/100 == 2 {
			checkWrite(t, h, reg, req, body, rec.Code)
		}
	})
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range []byte(k) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// checkWrite reads back what a 2xx request wrote.
func checkWrite(t *testing.T, h http.Handler, reg *registry.Etcd, req *http.Request, body []byte, code int) {
	t.Helper()
	route := unitRoute(req.URL.Path)
	switch {
	case req.Method == http.MethodPut && route != "":
		var sent api.Unit
		if err := json.Unmarshal(body, &sent); err != nil {
			t.Fatalf("PUT %s answered %d to a body that does not decode: %v", req.URL.Path, code, err)
		}
		got := getUnit(t, h, route)
		if got == nil {
			t.Fatalf("PUT %s answered %d, then GET found nothing", req.URL.Path, code)
		}
		stored, err := reg.Unit(req.Context(), got.Name)
		if err != nil {
			t.Fatalf("registry after PUT %s: %v", req.URL.Path, err)
		}
		checkStored(t, stored.Content)
		if code == http.StatusCreated {
			checkCreated(t, sent, got, stored.Content)
		} else if got.DesiredState != sent.DesiredState {
			t.Fatalf("PUT %s answered %d with desired state %q, GET says %q", req.URL.Path, code, sent.DesiredState, got.DesiredState)
		}
	case req.Method == http.MethodDelete && route != "":
		if got := getUnit(t, h, route); got != nil {
			t.Fatalf("DELETE %s answered %d, then GET found %+v", req.URL.Path, code, got)
		}
	case req.Method == http.MethodPatch:
		checkMetadata(t, h, body)
	}
}

// unitRoute returns path if it names one unit of either base path.
func unitRoute(path string) string {
	for _, base := range []string{"/fleet/v1/units/", "/v1-alpha/units/"} {
		if name, ok := strings.CutPrefix(path, base); ok && name != "" && !strings.Contains(name, "/") {
			return base + url.PathEscape(name)
		}
	}
	return ""
}

func getUnit(t *testing.T, h http.Handler, path string) *api.Unit {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://fleet"+path, nil))
	switch rec.Code {
	case http.StatusNotFound:
		return nil
	case http.StatusOK:
	default:
		t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
	}
	var u api.Unit
	if err := json.Unmarshal(rec.Body.Bytes(), &u); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return &u
}

// checkCreated compares a unit read back with the request that created
// or replaced it, and with what fleetctl cat would print.
func checkCreated(t *testing.T, sent api.Unit, got *api.Unit, stored string) {
	t.Helper()
	want, err := unit.FromOptions(toOptions(sent.Options))
	if err != nil {
		t.Fatalf("created a unit whose options do not build: %v", err)
	}
	canon, err := unit.Parse(want.Serialize())
	if err != nil {
		t.Fatalf("created a unit whose canonical form does not parse: %v", err)
	}
	if gotOpts := toOptions(got.Options); !slices.Equal(gotOpts, canon.Options) {
		t.Fatalf("GET options %q, want %q", gotOpts, canon.Options)
	}
	cat, err := unit.FromOptions(toOptions(got.Options)) // what fleetctl cat prints
	if err != nil {
		t.Fatalf("fleetctl cat would fail: %v", err)
	}
	if cat.Serialize() != stored || stored != want.Serialize() {
		t.Fatalf("fleetctl cat %q, stored %q, sent %q", cat.Serialize(), stored, want.Serialize())
	}
	wantDesired := sent.DesiredState
	if wantDesired == "" {
		wantDesired = string(unit.StateInactive)
	}
	if got.DesiredState != wantDesired {
		t.Fatalf("created with desired state %q, GET says %q", wantDesired, got.DesiredState)
	}
}

// checkStored parses stored contents with go-systemd and with unit.Parse,
// expects the same options, and the admission checks to pass again.
func checkStored(t *testing.T, content string) {
	t.Helper()
	ours, err := unit.Parse(content)
	if err != nil {
		t.Fatalf("stored unit does not parse: %v\n%q", err, content)
	}
	gs, err := gsunit.DeserializeOptions(strings.NewReader(content))
	if err != nil {
		t.Fatalf("go-systemd cannot parse a stored unit: %v\n%q", err, content)
	}
	theirs := make([]unit.Option, len(gs))
	for i, o := range gs {
		theirs[i] = unit.Option{Section: o.Section, Name: o.Name, Value: o.Value}
	}
	if !slices.Equal(ours.Options, theirs) {
		t.Fatalf("stored unit parses differently:\nours       %q\ngo-systemd %q", ours.Options, theirs)
	}
	if err := ours.Validate(); err != nil {
		t.Fatalf("stored unit fails validation: %v\n%q", err, content)
	}
}

func toOptions(in []*api.UnitOption) []unit.Option {
	out := make([]unit.Option, 0, len(in))
	for _, o := range in {
		if o != nil {
			out = append(out, unit.Option{Section: o.Section, Name: o.Name, Value: o.Value})
		}
	}
	return out
}

// checkMetadata checks that the last change of each key of an accepted
// PATCH shows in the machine list.
func checkMetadata(t *testing.T, h http.Handler, body []byte) {
	t.Helper()
	var ops []api.MetadataOp
	if err := json.Unmarshal(body, &ops); err != nil {
		t.Fatalf("PATCH accepted a body that does not decode: %v", err)
	}
	want := map[string]string{} // key -> value, "" removed
	for _, op := range ops {
		id, key, ok := strings.Cut(strings.TrimPrefix(op.Path, "/"), "/metadata/")
		if !ok || id != fuzzMachine {
			t.Fatalf("PATCH accepted path %q", op.Path)
		}
		want[key] = op.Value.Value
		if op.Op == api.MetadataRemove {
			want[key] = ""
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://fleet/fleet/v1/machines", nil))
	var page api.MachinePage
	if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil || len(page.Machines) == 0 {
		t.Fatalf("GET /machines after PATCH: %d %s", rec.Code, rec.Body)
	}
	md := page.Machines[0].Metadata
	for k, v := range want {
		if got, ok := md[k]; v == "" && ok || v != "" && got != v {
			t.Fatalf("after PATCH, metadata %s = %q (set: %v), want %q", k, got, ok, v)
		}
	}
}
