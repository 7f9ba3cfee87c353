package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"sort"
	"strings"

	"github.com/fleet-next/fleet/unit"
)

// serveUnits serves GET /units: one page of all units sorted by name.
func (s *server) serveUnits(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, msgOnlyGet)
		return
	}
	tok, err := pageTokenFromQuery(r.URL.Query(), s.limit)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	page, next, err := s.unitsPage(r.Context(), tok)
	if err != nil {
		s.internalError(w, r, fmt.Errorf("list units: %w", err))
		return
	}
	resp := UnitPage{NextPageToken: next}
	if len(page) > 0 {
		resp.Units = make([]*Unit, len(page))
		for i, us := range page {
			resp.Units[i] = s.unitToAPI(r.Context(), us, true)
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// unitsPage reads page tok of the unit listing like statesPage does.
func (s *server) unitsPage(ctx context.Context, tok pageToken) ([]unit.UnitStatus, string, error) {
	key := cursorKey{list: "units", page: tok.Page}
	after := ""
	if tok.Page > 1 {
		var ok bool
		if after, ok = s.cursors.get(key); !ok {
			name, err := s.reg.UnitNameAt(ctx, (int(tok.Page)-1)*int(tok.Limit)-1)
			if err != nil {
				return nil, "", err
			}
			if name == "" {
				return nil, "", nil // past the end
			}
			after = name
		}
	}
	page, err := s.reg.UnitsPage(ctx, after, int(tok.Limit))
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(page) == int(tok.Limit) && tok.Page < math.MaxUint16 {
		key.page = tok.Page + 1
		s.cursors.put(key, page[len(page)-1].Name)
		next = tok.next().encode()
	}
	return page, next, nil
}

// serveUnit serves GET, PUT and DELETE /units/<name>.
func (s *server) serveUnit(w http.ResponseWriter, r *http.Request, name string) {
	switch r.Method {
	case http.MethodGet:
		s.getUnit(w, r, name)
	case http.MethodPut:
		s.putUnit(w, r, name)
	case http.MethodDelete:
		s.deleteUnit(w, r, name)
	default:
		writeError(w, http.StatusMethodNotAllowed, msgOnlyGetPutDelete)
	}
}

func (s *server) getUnit(w http.ResponseWriter, r *http.Request, name string) {
	us, err := s.reg.Unit(r.Context(), name)
	switch {
	case isNotFound(err):
		writeError(w, http.StatusNotFound, msgUnitNotFound)
	case err != nil:
		s.internalError(w, r, fmt.Errorf("get unit: %w", err))
	default:
		writeJSON(w, http.StatusOK, s.unitToAPI(r.Context(), us, false))
	}
}

func (s *server) deleteUnit(w http.ResponseWriter, r *http.Request, name string) {
	err := s.reg.DestroyUnit(r.Context(), name)
	switch {
	case isNotFound(err):
		writeError(w, http.StatusNotFound, msgUnitNotFound)
	case err != nil:
		s.internalError(w, r, fmt.Errorf("destroy unit: %w", err))
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// putUnit creates, replaces or changes the desired state of a unit
// (spec §8.3). A new unit needs options; an existing unit is replaced when
// options with different contents are given, otherwise only its desired
// state changes. Unlike fleet, the desired state and the options are
// validated on every request.
func (s *server) putUnit(w http.ResponseWriter, r *http.Request, name string) {
	if code, msg := checkJSONContentType(r.Header); code != 0 {
		writeError(w, code, msg)
		return
	}
	var req Unit
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "unable to decode body: "+err.Error())
		return
	}
	if req.Name == "" {
		req.Name = name
	}
	if req.Name != name {
		writeError(w, http.StatusBadRequest,
			fmt.Sprintf("name in URL %q differs from unit name in request body %q", name, req.Name))
		return
	}
	if err := unit.ValidateName(name); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var desired unit.FleetState
	if req.DesiredState != "" {
		d, err := unit.ParseFleetState(req.DesiredState)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		desired = d
	}

	existing, err := s.reg.Unit(r.Context(), name)
	found := err == nil
	if err != nil && !isNotFound(err) {
		s.internalError(w, r, fmt.Errorf("get unit: %w", err))
		return
	}

	if len(req.Options) == 0 {
		if !found {
			writeError(w, http.StatusConflict, "unit does not exist and options field empty")
			return
		}
		s.setDesiredState(w, r, name, desired)
		return
	}
	f, err := fileFromAPI(req.Options)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if found && f.Hash() == existing.Hash {
		s.setDesiredState(w, r, name, desired)
		return
	}
	if desired == "" {
		desired = unit.StateInactive
	}
	if err := checkActivatable(name, desired); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if reqs := f.Requirements(name); len(reqs.Replaces) > 0 {
		cycle, err := s.replacesCycle(r.Context(), name, reqs)
		if err != nil {
			s.internalError(w, r, fmt.Errorf("check Replaces: %w", err))
			return
		}
		if cycle != "" {
			writeError(w, http.StatusBadRequest, "circular Replaces: "+cycle)
			return
		}
	}
	u := unit.Unit{
		Name:    name,
		Content: f.Serialize(),
		Hash:    f.Hash(),
		Desired: desired,
		Global:  f.IsGlobal(),
	}
	if err := s.reg.CreateUnit(r.Context(), u); err != nil {
		s.internalError(w, r, fmt.Errorf("create unit: %w", err))
		return
	}
	w.WriteHeader(http.StatusCreated)
}

// setDesiredState changes only the desired state of an existing unit.
func (s *server) setDesiredState(w http.ResponseWriter, r *http.Request, name string, desired unit.FleetState) {
	if desired == "" {
		writeError(w, http.StatusConflict, "must provide DesiredState to update existing unit")
		return
	}
	if err := checkActivatable(name, desired); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	err := s.reg.SetDesiredState(r.Context(), name, desired)
	switch {
	case isNotFound(err):
		writeError(w, http.StatusNotFound, msgUnitNotFound)
	case err != nil:
		s.internalError(w, r, fmt.Errorf("set desired state: %w", err))
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// checkJSONContentType enforces exactly one Content-Type header of media
// type application/json. It returns a zero code when the header is fine.
func checkJSONContentType(h http.Header) (code int, msg string) {
	vals := h.Values("Content-Type")
	if len(vals) != 1 {
		return http.StatusUnsupportedMediaType, fmt.Sprintf("expected 1 Content-Type, got %d", len(vals))
	}
	mt, _, err := mime.ParseMediaType(vals[0])
	if err != nil || mt != "application/json" {
		return http.StatusUnsupportedMediaType, "only acceptable Content-Type is application/json"
	}
	return 0, ""
}

// checkActivatable refuses to load or launch a template unit.
func checkActivatable(name string, desired unit.FleetState) error {
	if desired != unit.StateInactive && unit.ParseName(name).IsTemplate() {
		return fmt.Errorf("cannot activate template %q", name)
	}
	return nil
}

// fileFromAPI builds and validates unit contents from wire options.
func fileFromAPI(opts []*UnitOption) (*unit.File, error) {
	uopts := make([]unit.Option, 0, len(opts))
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("invalid unit option: null")
		}
		uopts = append(uopts, unit.Option{Section: o.Section, Name: o.Name, Value: o.Value})
	}
	f, err := unit.FromOptions(uopts)
	if err != nil {
		return nil, err
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return f, nil
}

// unitToAPI converts a stored unit to its wire form. A unit without a
// derived current state (a global unit) has no currentState on a single
// GET but "inactive" in the list, as fleet reported it. Stored contents
// that fail to parse are logged and the unit is shown without options.
func (s *server) unitToAPI(ctx context.Context, us unit.UnitStatus, inList bool) *Unit {
	u := &Unit{
		Name:         us.Name,
		DesiredState: string(us.Desired),
		CurrentState: string(us.Current),
		MachineID:    us.Target,
		Reason:       us.Reason,
	}
	if inList && u.CurrentState == "" {
		u.CurrentState = string(unit.StateInactive)
	}
	f, err := unit.Parse(us.Content)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, "stored unit does not parse",
			slog.String("unit", us.Name), slog.Any("error", err))
		return u
	}
	u.Options = make([]*UnitOption, len(f.Options))
	for i, o := range f.Options {
		u.Options[i] = &UnitOption{Section: o.Section, Name: o.Name, Value: o.Value}
	}
	return u
}

// replacesCycle returns a description of a Replaces cycle the unit name
// (with requirements reqs) would close among the stored units, or "".
func (s *server) replacesCycle(ctx context.Context, name string, reqs unit.Requirements) (string, error) {
	all, err := s.reg.Units(ctx)
	if err != nil {
		return "", err
	}
	replaces := map[string]unit.Requirements{name: reqs}
	var names []string
	for _, us := range all {
		if us.Name == name || !strings.Contains(us.Content, "Replaces") {
			continue
		}
		f, err := unit.Parse(us.Content)
		if err != nil {
			continue
		}
		if r := f.Requirements(us.Name); len(r.Replaces) > 0 {
			replaces[us.Name] = r
			names = append(names, us.Name)
		}
	}
	names = append(names, name)
	sort.Strings(names)
	// Depth-first from name along "replaces" edges, looking for name again.
	var path []string
	seen := map[string]bool{}
	var walk func(cur string) bool
	walk = func(cur string) bool {
		path = append(path, cur)
		for _, next := range names {
			if !replaces[cur].ReplacesUnit(next) || next == cur {
				continue
			}
			if next == name {
				path = append(path, next)
				return true
			}
			if !seen[next] {
				seen[next] = true
				if walk(next) {
					return true
				}
			}
		}
		path = path[:len(path)-1]
		return false
	}
	if !walk(name) {
		return "", nil
	}
	parts := make([]string, 0, len(path)-1)
	for i := 0; i+1 < len(path); i++ {
		parts = append(parts, path[i]+" replaces "+path[i+1])
	}
	return strings.Join(parts, ", "), nil
}
