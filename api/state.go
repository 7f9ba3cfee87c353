package api

import (
	"context"
	"fmt"
	"net/http"

	"github.com/fleet-next/fleet/unit"
)

// listStates serves GET /state: one page of machine reports sorted by unit
// then machine, filtered by the exact-match query parameters machineID and
// unitName.
func (s *server) listStates(w http.ResponseWriter, r *http.Request) {
	tok, ok := s.pageToken(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	unitName, machineID := q.Get("unitName"), q.Get("machineID")
	page, next, err := readPage(r.Context(), s, tok, lister[unit.State]{
		cursor: cursorKey{list: "states", filter: unitName + "\x00" + machineID},
		keyAt: func(ctx context.Context, i int) (string, error) {
			return s.reg.StateKeyAt(ctx, unitName, machineID, i)
		},
		read: func(ctx context.Context, after string, limit int) ([]unit.State, error) {
			return s.reg.StatesPage(ctx, unitName, machineID, after, limit)
		},
		keyOf: func(st unit.State) string { return st.Name + "/" + st.MachineID },
	})
	if err != nil {
		s.internalError(w, r, fmt.Errorf("list unit states: %w", err))
		return
	}
	resp := UnitStatePage{NextPageToken: next}
	if len(page) > 0 {
		resp.States = make([]*UnitState, len(page))
		for i, st := range page {
			resp.States[i] = stateToAPI(st)
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// getState serves GET /state/<name>: the first report on that unit.
func (s *server) getState(w http.ResponseWriter, r *http.Request) {
	name, ok := pathName(w, r)
	if !ok {
		return
	}
	states, err := s.reg.States(r.Context(), name, "")
	switch {
	case err != nil:
		s.internalError(w, r, fmt.Errorf("list unit states: %w", err))
	case len(states) == 0:
		writeError(w, http.StatusNotFound, msgUnitStateNotFound)
	default:
		writeJSON(w, http.StatusOK, stateToAPI(states[0]))
	}
}

// stateToAPI converts a machine's report to its wire form.
func stateToAPI(st unit.State) *UnitState {
	out := &UnitState{
		Name:               st.Name,
		MachineID:          st.MachineID,
		SystemdLoadState:   st.LoadState,
		SystemdActiveState: st.ActiveState,
		SystemdSubState:    st.SubState,
		Reason:             st.Reason,
	}
	if !st.Hash.IsZero() {
		out.Hash = st.Hash.String()
	}
	return out
}
