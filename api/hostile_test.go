package api_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/unit"
)

// TestPutUnitRefusesHostileInput sends each input of the issue "Hostile
// input" that the API stored before, and checks that it is refused with
// the expected status and message and that nothing is stored.
func TestPutUnitRefusesHostileInput(t *testing.T) {
	e := newEnv(t, api.Options{})
	svc := serviceOpts("x", "/bin/true")
	with := func(extra ...string) string {
		return unitJSON(t, api.Unit{Options: append(serviceOpts("x", "/bin/true"), opts(extra...)...)})
	}
	plain := unitJSON(t, api.Unit{Options: svc})
	long := strings.Repeat("a", 241-len(".service")) + ".service"
	// bigUnit is a unit of n options of 1000 bytes each: "[Service]\n",
	// then n lines "Environment=" + 987 bytes + "\n".
	bigUnit := func(n int) string {
		o := make([]*api.UnitOption, n)
		for i := range o {
			o[i] = &api.UnitOption{Section: "Service", Name: "Environment", Value: strings.Repeat("x", 987)}
		}
		return unitJSON(t, api.Unit{Options: o})
	}
	tests := []struct {
		name string
		unit string
		body string
		code int
		msg  string
	}{
		// Option values systemd would split into several lines.
		{name: "carriage return in ExecStart", body: with("Service", "ExecStartPost", "/bin/sleep 9\rExecStartPre=/bin/touch /tmp/x"),
			code: 400, msg: `value of ExecStartPost in [Service] holds the control character '\r', which systemd would not read as part of the value`},
		{name: "NUL in a value", body: `{"options":[{"section":"Service","name":"ExecStart","value":"/bin/true\u0000ExecStartPre=/bin/x"}]}`,
			code: 400, msg: `value of ExecStart in [Service] holds the control character '\x00', which systemd would not read as part of the value`},

		// Names systemd 252 or the agent cannot handle.
		{name: "only a type", unit: ".service", body: plain, code: 400,
			msg: `unit name cannot start in ".": systemd ignores hidden unit files`},
		{name: "dot dot", unit: "..service", body: plain, code: 400,
			msg: `unit name cannot start in ".": systemd ignores hidden unit files`},
		{name: "241 characters", unit: long, body: plain, code: 400, msg: "unit name exceeds maximum length (240)"},
		{name: "256 characters", unit: strings.Repeat("b", 256-len(".service")) + ".service", body: plain, code: 400,
			msg: "unit name exceeds maximum length (240)"},
		{name: "snapshot", unit: "x.snapshot", body: plain, code: 400,
			msg: `unsupported unit type "snapshot": systemd removed snapshot units in version 228`},
		{name: "busname", unit: "x.busname", body: plain, code: 400,
			msg: `unsupported unit type "busname": systemd removed busname units in version 230`},
		{name: "root mount", unit: "-.mount", body: plain, code: 400,
			msg: `unit name "-.mount" is reserved: systemd manages that unit itself`},

		// Sizes: the unit limit, and the body limit before decoding.
		{name: "a 1.6 MB unit", body: bigUnit(1600), code: 413,
			msg: "unit contents are 1600010 bytes: unit contents exceed the limit of 524288 bytes (512 KiB)"},
		{name: "a 5 MB unit", body: bigUnit(5000), code: 413,
			msg: "unit contents are 5000010 bytes: unit contents exceed the limit of 524288 bytes (512 KiB)"},
		{name: "a body over 8 MiB", body: bigUnit(8500), code: 413,
			msg: "request body exceeds the limit of 8388608 bytes (8 MiB)"},

		// Bodies that are more, or other, than one JSON object.
		{name: "trailing garbage", body: plain + "garbage", code: 400,
			msg: "unable to decode body: invalid character 'g' after top-level value"},
		{name: "a second object", body: plain + `{"desiredState":"launched"}`, code: 400,
			msg: "unable to decode body: invalid character '{' after top-level value"},
		{name: "duplicate key", body: `{"desiredState":"inactive","options":[],"desiredState":"launched"}`, code: 400,
			msg: `unable to decode body: duplicate key "desiredState"`},
		{name: "case-variant keys", body: `{"options":` + optsJSON(t, svc) + `,"Options":[]}`, code: 400,
			msg: `unable to decode body: keys "options" and "Options" name the same field`},
		{name: "duplicate key in an option", body: `{"options":[{"section":"Service","name":"ExecStart","value":"/bin/true","NAME":"x"}]}`,
			code: 400, msg: `unable to decode body: keys "name" and "NAME" name the same field`},

		// Malformed options fleet stored.
		{name: "empty option name", body: with("Service", "", "/bin/true"), code: 400,
			msg: `option without a name in [Service] (value "/bin/true")`},
		{name: "empty section", body: with("", "ExecStart", "/bin/true"), code: 400,
			msg: `option "ExecStart" is in a section without a name`},
		{name: "invalid UTF-8", body: "{\"options\":[{\"section\":\"Unit\",\"name\":\"Description\",\"value\":\"caf\xe9\"}]}",
			code: 400, msg: "value of Description in [Unit] is not valid UTF-8"},
		{name: "invalid UTF-8 in a name", body: "{\"options\":[{\"section\":\"Unit\",\"name\":\"D\xff\",\"value\":\"x\"}]}",
			code: 400, msg: "an option name in [Unit] is not valid UTF-8"},
		{name: "lone surrogate", body: `{"options":[{"section":"Unit","name":"Description","value":"\ud800"}]}`,
			code: 400, msg: "value of Description in [Unit] is not valid UTF-8"},
		{name: "Global maybe", body: with("X-Fleet", "Global", "maybe"), code: 400,
			msg: `invalid Global value "maybe": want true or false (yes/no, 1/0, on/off, t/f)`},
		{name: "unterminated quote", body: with("X-Fleet", "Conflicts", `"unterminated`), code: 400,
			msg: `value of Conflicts in [X-Fleet] has an unterminated quote: "\"unterminated"`},
		{name: "WantedBy a path", body: with("Install", "WantedBy", "../.."), code: 400,
			msg: `invalid WantedBy value "../.." in [Install]: invalid unit type: ""`},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := tc.unit
			if name == "" {
				name = fmt.Sprintf("h%d.service", i)
			}
			wantError(t, e.putJSON("/fleet/v1/units/"+name, tc.body), tc.code, tc.msg)
			if _, err := e.reg.Unit(e.ctx, name); !registryNotFound(err) {
				t.Errorf("unit %s stored after a refused PUT: %v", name, err)
			}
		})
	}
}

func optsJSON(t *testing.T, o []*api.UnitOption) string {
	t.Helper()
	s := unitJSON(t, api.Unit{Options: o})
	return strings.TrimSuffix(strings.TrimPrefix(s, `{"options":`), "}")
}

// TestPutUnitStillAccepts checks that what fleet accepted, and a few
// spellings close to the refused ones, still get through.
func TestPutUnitStillAccepts(t *testing.T) {
	e := newEnv(t, api.Options{})
	longest := strings.Repeat("a", 240-len(".service")) + ".service"
	tests := []struct {
		name, unit, body string
	}{
		{name: "a 240-character name", unit: longest, body: unitJSON(t, api.Unit{Options: serviceOpts("x", "/bin/true")})},
		{name: "a unit of 512 KiB", unit: "big.service", body: unitJSON(t, api.Unit{Options: maxUnit()})},
		{name: "one case-variant key, as fleet matched it", unit: "case.service",
			body: `{"Options":[{"Section":"Service","NAME":"ExecStart","value":"/bin/true"}]}`},
		{name: "escaped surrogate pair", unit: "pair.service",
			body: `{"options":[{"section":"Unit","name":"Description","value":"\ud83d\ude80 \u00e9"}]}`},
		{name: "trailing whitespace", unit: "ws.service",
			body: unitJSON(t, api.Unit{Options: serviceOpts("x", "/bin/true")}) + " \n\t"},
		{name: "unknown fields and sections", unit: "unknown.service",
			body: `{"options":[{"section":"X-Mine","name":"Anything","value":"\"quoted"}],"currentState":"launched","extra":{"a":1}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.putJSON("/fleet/v1/units/"+tc.unit, tc.body)
			if rec.Code != http.StatusCreated {
				t.Fatalf("PUT = %d %q, want 201", rec.Code, rec.Body.String())
			}
			if _, err := e.reg.Unit(e.ctx, tc.unit); err != nil {
				t.Fatalf("stored unit: %v", err)
			}
		})
	}
}

// TestConcurrentReplacesCycleThroughTheAPI puts A (Replaces=B) and B
// (Replaces=A) at once through two handlers on one store: never both.
func TestConcurrentReplacesCycleThroughTheAPI(t *testing.T) {
	e := newEnv(t, api.Options{})
	other := api.NewHandler(e.reg, api.Options{Version: testVersion})
	const pairs = 15
	for i := range pairs {
		a, b := fmt.Sprintf("a%d.service", i), fmt.Sprintf("b%d.service", i)
		reqs := []struct {
			h          http.Handler
			name, body string
		}{
			{e.h, a, unitJSON(t, api.Unit{Options: append(serviceOpts("a", "/bin/true"), opts("X-Fleet", "Replaces", b)...)})},
			{other, b, unitJSON(t, api.Unit{Options: append(serviceOpts("b", "/bin/true"), opts("X-Fleet", "Replaces", a)...)})},
		}
		codes := make([]int, 2)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for j, rq := range reqs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				env := *e
				env.h = rq.h
				codes[j] = env.putJSON("/fleet/v1/units/"+rq.name, rq.body).Code
			}()
		}
		close(start)
		wg.Wait()
		stored := 0
		for _, n := range []string{a, b} {
			if _, err := e.reg.Unit(e.ctx, n); err == nil {
				stored++
			}
		}
		if stored != 1 || codes[0]+codes[1] != http.StatusCreated+http.StatusBadRequest {
			t.Fatalf("pair %d: codes %v, %d of 2 stored; want one 201, one 400, one stored", i, codes, stored)
		}
	}
}

// TestRoutesAndObserver checks the route every request is reported with,
// from the handler's own status recorder.
func TestRoutesAndObserver(t *testing.T) {
	e := newEnv(t, api.Options{Metrics: http.NotFoundHandler()})
	e.storeUnit("a.service", serviceOpts("a", "/bin/true"), unit.StateInactive)
	type seen struct {
		method, route string
		code          int
	}
	var mu sync.Mutex
	var got []seen
	h := api.WithObserver(e.h, func(method, route string, code int, elapsed time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, seen{method, route, code})
		if elapsed < 0 {
			t.Errorf("negative duration %v", elapsed)
		}
	})
	tests := []struct {
		method, path string
		want         seen
	}{
		{"GET", "/fleet/v1/units", seen{"GET", "/fleet/v1/units", 200}},
		{"GET", "/fleet/v1/units/a.service", seen{"GET", "/fleet/v1/units/{name}", 200}},
		{"DELETE", "/v1-alpha/units/nope.service", seen{"DELETE", "/v1-alpha/units/{name}", 404}},
		{"GET", "/fleet/v1/units/a.service/status", seen{"GET", "/fleet/v1/units/{name}/status", 409}},
		{"POST", "/fleet/v1/units/a.service/journal", seen{"POST", "/fleet/v1/units/{name}/journal", 405}},
		{"GET", "/fleet/v1/state/a.service", seen{"GET", "/fleet/v1/state/{name}", 404}},
		{"PATCH", "/fleet/v1/machines", seen{"PATCH", "/fleet/v1/machines", 400}},
		{"POST", "/fleet/v1/discovery", seen{"POST", "/fleet/v1/discovery", 400}},
		{"GET", "/", seen{"GET", "/", 405}},
		{"GET", "/fleet/v1", seen{"GET", "/fleet/v1", 405}},
		{"GET", "/health", seen{"GET", "/health", 200}},
		{"GET", "/metrics", seen{"GET", "/metrics", 404}},
		{"GET", "/fleet/v1/units/a.service/other", seen{"GET", "other", 404}},
		{"GET", "/fleet/v1/units/", seen{"GET", "other", 404}},
		{"GET", "/fleet/v1//units", seen{"GET", "other", 404}},
		{"GET", "/fleet/v1/units/../machines", seen{"GET", "other", 404}},
		{"GET", "/fleet/v1/units/a%2Fb.service", seen{"GET", "/fleet/v1/units/{name}", 404}},
		{"BREW", "/fleet/v1/units", seen{"BREW", "/fleet/v1/units", 405}},
	}
	for _, tc := range tests {
		req, err := http.NewRequestWithContext(e.ctx, tc.method, "http://fleet"+tc.path, strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		mu.Lock()
		last := got[len(got)-1]
		mu.Unlock()
		if last != tc.want {
			t.Errorf("%s %s: observed %+v, want %+v", tc.method, tc.path, last, tc.want)
		}
		if rec.Code != tc.want.code {
			t.Errorf("%s %s: status %d, observed %d", tc.method, tc.path, rec.Code, tc.want.code)
		}
	}
	if len(got) != len(tests) {
		t.Errorf("observed %d requests, want %d", len(got), len(tests))
	}
}

// maxUnit is a unit of exactly unit.MaxContentBytes: lines of 1000 bytes
// and one shorter last line.
func maxUnit() []*api.UnitOption {
	left := unit.MaxContentBytes - len("[Service]\n")
	var o []*api.UnitOption
	for left > 0 {
		n := min(left, 1000) - len("Environment=\n")
		o = append(o, &api.UnitOption{Section: "Service", Name: "Environment", Value: strings.Repeat("x", n)})
		left -= n + len("Environment=\n")
	}
	return o
}
