package api

import (
	"context"
	"fmt"
	"math"
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
	page, next, err := s.statesPage(r.Context(), q.Get("unitName"), q.Get("machineID"), tok)
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

// statesPage reads page tok of the states listing: from the cursor the
// previous page left, or else from the key at the page's offset. A full
// page has a successor (possibly empty, as in fleet).
func (s *server) statesPage(ctx context.Context, unitName, machineID string, tok pageToken) ([]unit.State, string, error) {
	key := cursorKey{list: "states", filter: unitName + "\x00" + machineID, page: tok.Page}
	after := ""
	if tok.Page > 1 {
		var ok bool
		if after, ok = s.cursors.get(key); !ok {
			k, err := s.reg.StateKeyAt(ctx, unitName, machineID, (int(tok.Page)-1)*int(tok.Limit)-1)
			if err != nil {
				return nil, "", err
			}
			if k == "" {
				return nil, "", nil // past the end
			}
			after = k
		}
	}
	page, err := s.reg.StatesPage(ctx, unitName, machineID, after, int(tok.Limit))
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(page) == int(tok.Limit) && tok.Page < math.MaxUint16 {
		last := page[len(page)-1]
		key.page = tok.Page + 1
		s.cursors.put(key, last.Name+"/"+last.MachineID)
		next = tok.next().encode()
	}
	return page, next, nil
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
		Reason:             st.Reason,
	}
	if !st.Hash.IsZero() {
		out.Hash = st.Hash.String()
	}
	return out
}
