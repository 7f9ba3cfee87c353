package api_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/unit"
)

// Pages are the same whether one fleetd serves them all (following its
// cursors) or every page comes from another fleetd (seeking by offset),
// with and without filters, including the empty page after a full one.
func TestStatesPagesWithAndWithoutCursors(t *testing.T) {
	e := newEnv(t, api.Options{TokenLimit: 3})
	other := api.NewHandler(e.reg, api.Options{Version: testVersion, TokenLimit: 3})
	la := e.registerMachine(unit.Machine{ID: "ma"})
	lb := e.registerMachine(unit.Machine{ID: "mb"})
	for i := range 7 {
		name := fmt.Sprintf("u%d.service", i)
		e.publish(la, unit.State{Name: name, MachineID: "ma", Current: unit.StateLaunched})
		if i%2 == 0 {
			e.publish(lb, unit.State{Name: name, MachineID: "mb", Current: unit.StateLoaded})
		}
	}
	tests := []struct {
		name   string
		filter url.Values
	}{
		{"all", url.Values{}},
		{"one machine", url.Values{"machineID": {"mb"}}},
		{"one unit", url.Values{"unitName": {"u2.service"}}},
		{"nothing matches", url.Values{"machineID": {"nope"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, err := e.reg.States(e.ctx, tc.filter.Get("unitName"), tc.filter.Get("machineID"))
			if err != nil {
				t.Fatal(err)
			}
			for _, alternate := range []bool{false, true} {
				var got []string
				tok, pages := "", 0
				for {
					q := url.Values{}
					for k, v := range tc.filter {
						q[k] = v
					}
					if tok != "" {
						q.Set("nextPageToken", tok)
					}
					h := e.h
					if alternate && pages%2 == 1 {
						h = other
					}
					rec := serve(h, http.MethodGet, "/fleet/v1/state?"+q.Encode())
					var page api.UnitStatePage
					decodeOK(t, rec, &page)
					for _, s := range page.States {
						got = append(got, s.Name+"/"+s.MachineID)
					}
					pages++
					if tok = page.NextPageToken; tok == "" {
						break
					}
				}
				if len(got) != len(want) {
					t.Fatalf("alternate=%v: got %v, want %d states", alternate, got, len(want))
				}
				for i := range want {
					if got[i] != want[i].Name+"/"+want[i].MachineID {
						t.Fatalf("alternate=%v: state %d = %s, want %s/%s", alternate, i, got[i], want[i].Name, want[i].MachineID)
					}
				}
				if wantPages := len(want)/3 + 1; pages != wantPages {
					t.Errorf("alternate=%v: %d pages, want %d", alternate, pages, wantPages)
				}
			}
		})
	}
}

func serve(h http.Handler, method, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

func TestUnitPagesWithAndWithoutCursors(t *testing.T) {
	e := newEnv(t, api.Options{TokenLimit: 4})
	other := api.NewHandler(e.reg, api.Options{Version: testVersion, TokenLimit: 4})
	lease := e.registerMachine(unit.Machine{ID: "ma"})
	var want []string
	for i := range 9 {
		name := fmt.Sprintf("u%d.service", i)
		want = append(want, name)
		content := "[Service]\nExecStart=/bin/true\n"
		if err := e.reg.CreateUnit(e.ctx, unit.Unit{Name: name, Content: content, Hash: unit.HashOf(content), Desired: unit.StateLaunched}); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			e.publish(lease, unit.State{Name: name, MachineID: "ma", Current: unit.StateLaunched})
		}
	}
	for _, alternate := range []bool{false, true} {
		var got []*api.Unit
		tok, pages := "", 0
		for {
			path := "/fleet/v1/units"
			if tok != "" {
				path += "?nextPageToken=" + url.QueryEscape(tok)
			}
			h := e.h
			if alternate && pages%2 == 1 {
				h = other
			}
			var page api.UnitPage
			decodeOK(t, serve(h, http.MethodGet, path), &page)
			got = append(got, page.Units...)
			pages++
			if tok = page.NextPageToken; tok == "" {
				break
			}
		}
		if len(got) != len(want) || pages != 3 {
			t.Fatalf("alternate=%v: %d units in %d pages, want %d in 3", alternate, len(got), pages, len(want))
		}
		for i, u := range got {
			wantState, wantMachine := "inactive", ""
			if i%3 == 0 {
				wantState, wantMachine = "launched", "ma"
			}
			if u.Name != want[i] || u.CurrentState != wantState || u.MachineID != wantMachine {
				t.Errorf("alternate=%v: unit %d = %s %s on %q, want %s %s on %q", alternate, i, u.Name, u.CurrentState,
					u.MachineID, want[i], wantState, wantMachine)
			}
		}
	}
}
