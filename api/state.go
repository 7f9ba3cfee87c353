package api

import (
	"fmt"
	"net/http"

	"github.com/fleet-next/fleet/unit"
)

// serveStates serves GET /state: one page of machine reports sorted by unit
// then machine, filtered by the exact-match query parameters machineID and
// unitName.
func (s *server) serveStates(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, msgOnlyGet)
		return
	}
	q := r.URL.Query()
	tok, err := pageTokenFromQuery(q, s.limit)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	all, err := s.reg.States(r.Context(), q.Get("unitName"), q.Get("machineID"))
	if err != nil {
		s.internalError(w, r, fmt.Errorf("list unit states: %w", err))
		return
	}
	page, next := paginate(all, tok)
	resp := UnitStatePage{NextPageToken: next}
	if len(page) > 0 {
		resp.States = make([]*UnitState, len(page))
		for i, st := range page {
			resp.States[i] = stateToAPI(st)
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// serveState serves GET /state/<name>: the first report on that unit.
func (s *server) serveState(w http.ResponseWriter, r *http.Request, name string) {
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, msgOnlyGet)
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
	}
	if !st.Hash.IsZero() {
		out.Hash = st.Hash.String()
	}
	return out
}
