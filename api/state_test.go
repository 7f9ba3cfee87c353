package api_test

import (
	"net/http"
	"testing"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/unit"
)

func TestStates(t *testing.T) {
	e := newEnv(t, api.Options{TokenLimit: 2})
	m1, m2 := "1111111111111111", "2222222222222222"
	l1 := e.registerMachine(unit.Machine{ID: m1, PublicIP: "127.0.0.1"})
	l2 := e.registerMachine(unit.Machine{ID: m2, PublicIP: "127.0.0.2"})
	h := unit.HashOf("[Service]\nExecStart=/bin/true\n")
	running := unit.SystemdState{LoadState: "loaded", ActiveState: "active", SubState: "running"}
	failed := unit.SystemdState{LoadState: "loaded", ActiveState: "failed", SubState: "failed"}
	// Published out of order; the API sorts by unit then machine.
	e.publish(l2, unit.State{Name: "b.service", MachineID: m2, Hash: h, SystemdState: failed, Current: unit.StateLaunched})
	e.publish(l2, unit.State{Name: "a.service", MachineID: m2, Hash: h, SystemdState: running, Current: unit.StateLaunched})
	e.publish(l1, unit.State{Name: "a.service", MachineID: m1, Hash: h, SystemdState: running, Current: unit.StateLaunched})

	a1 := api.UnitState{Name: "a.service", Hash: h.String(), MachineID: m1, SystemdLoadState: "loaded",
		SystemdActiveState: "active", SystemdSubState: "running"}
	a2 := a1
	a2.MachineID = m2
	b2 := api.UnitState{Name: "b.service", Hash: h.String(), MachineID: m2, SystemdLoadState: "loaded",
		SystemdActiveState: "failed", SystemdSubState: "failed"}

	list := []struct {
		name     string
		query    string
		want     []api.UnitState
		wantNext string
	}{
		{name: "all, first page", query: "", want: []api.UnitState{a1, a2}, wantNext: base64Token(2, 2)},
		{name: "all, second page", query: "?nextPageToken=" + base64Token(2, 2), want: []api.UnitState{b2}},
		{name: "by machine", query: "?machineID=" + m2, want: []api.UnitState{a2, b2}, wantNext: base64Token(2, 2)},
		{name: "by unit", query: "?unitName=b.service", want: []api.UnitState{b2}},
		{name: "by unit and machine", query: "?unitName=a.service&machineID=" + m1, want: []api.UnitState{a1}},
		{name: "machine prefix does not match", query: "?machineID=1111", want: nil},
		{name: "unknown unit", query: "?unitName=zzz.service", want: nil},
	}
	for _, tc := range list {
		t.Run(tc.name, func(t *testing.T) {
			var page api.UnitStatePage
			decodeOK(t, e.request(http.MethodGet, "/fleet/v1/state"+tc.query, ""), &page)
			if len(page.States) != len(tc.want) || page.NextPageToken != tc.wantNext {
				t.Fatalf("got %d states next %q, want %d next %q", len(page.States), page.NextPageToken, len(tc.want), tc.wantNext)
			}
			for i := range tc.want {
				if *page.States[i] != tc.want[i] {
					t.Errorf("state %d = %+v, want %+v", i, *page.States[i], tc.want[i])
				}
			}
		})
	}
	t.Run("bad token", func(t *testing.T) {
		wantError(t, e.request(http.MethodGet, "/fleet/v1/state?nextPageToken=EwBMLg==", ""),
			http.StatusBadRequest, "token limit must be 2")
	})

	single := []struct {
		name string
		unit string
		want *api.UnitState
	}{
		{name: "first machine's report", unit: "a.service", want: &a1},
		{name: "only report", unit: "b.service", want: &b2},
		{name: "no report", unit: "c.service"},
	}
	for _, tc := range single {
		t.Run("get "+tc.name, func(t *testing.T) {
			rec := e.request(http.MethodGet, "/fleet/v1/state/"+tc.unit, "")
			if tc.want == nil {
				wantError(t, rec, http.StatusNotFound, "unit state does not exist")
				return
			}
			var got api.UnitState
			decodeOK(t, rec, &got)
			if got != *tc.want {
				t.Errorf("got %+v, want %+v", got, *tc.want)
			}
		})
	}
}
