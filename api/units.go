package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/fleet-next/fleet/access"
	"github.com/fleet-next/fleet/unit"
)

// listUnits serves GET /units: one page of all units sorted by name.
func (s *server) listUnits(w http.ResponseWriter, r *http.Request) {
	tok, ok := s.pageToken(w, r)
	if !ok {
		return
	}
	page, next, err := readPage(r.Context(), s, tok, lister[unit.UnitStatus]{
		cursor: cursorKey{list: "units"},
		keyAt:  s.reg.UnitNameAt,
		read:   s.reg.UnitsPage,
		keyOf:  func(us unit.UnitStatus) string { return us.Name },
	})
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

// pathName returns the {name} of the request's route. A name holding a
// '/' (sent escaped as %2F) or an empty one names no unit: 404.
func pathName(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("name")
	if name == "" || strings.Contains(name, "/") {
		notFound(w, r)
		return "", false
	}
	return name, true
}

func (s *server) getUnit(w http.ResponseWriter, r *http.Request) {
	name, ok := pathName(w, r)
	if !ok {
		return
	}
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

func (s *server) deleteUnit(w http.ResponseWriter, r *http.Request) {
	name, ok := pathName(w, r)
	if !ok {
		return
	}
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
func (s *server) putUnit(w http.ResponseWriter, r *http.Request) {
	name, ok := pathName(w, r)
	if !ok {
		return
	}
	if code, msg := checkJSONContentType(r.Header); code != 0 {
		writeError(w, code, msg)
		return
	}
	var req Unit
	if err := readJSON(w, r, MaxUnitBodyBytes, &req, func() string { return invalidOption(req.Options) }); err != nil {
		writeBodyError(w, err)
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
	// A caller that may not even read the unit learns nothing of it, not
	// whether it exists: it is refused what the request reads as.
	if ok, err := s.may(r, access.Request{Action: access.Read, Unit: name}); err != nil {
		s.internalError(w, r, err)
		return
	} else if !ok {
		a := desiredAction(desired, "")
		if len(req.Options) > 0 {
			a = access.Submit
		}
		s.allow(w, r, access.Request{Action: a, Unit: name})
		return
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
		s.setDesiredState(w, r, name, existing.Desired, desired)
		return
	}
	f, err := fileFromAPI(req.Options)
	switch {
	case errors.Is(err, unit.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if found && f.Hash() == existing.Hash {
		s.setDesiredState(w, r, name, existing.Desired, desired)
		return
	}
	if !s.allow(w, r, access.Request{Action: access.Submit, Unit: name}) {
		return
	}
	if desired == "" {
		desired = unit.StateInactive
	}
	if err := checkActivatable(name, desired); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	u := unit.Unit{
		Name:    name,
		Content: f.Serialize(),
		Hash:    f.Hash(),
		Desired: desired,
		Global:  f.IsGlobal(),
	}
	noteOf(r).hash = u.Hash.String()
	var cycle cycleError
	if reqs := f.Requirements(name); len(reqs.Replaces) > 0 {
		// The check and the write are one transaction, so that two units
		// replacing each other cannot both be stored at once.
		err = s.reg.CreateUnitIf(r.Context(), u, func(stored []unit.Unit) error {
			if c := unit.ReplacesCycle(name, reqs, unit.ReplacesOf(stored)); c != "" {
				return cycleError(c)
			}
			return nil
		})
	} else {
		err = s.reg.CreateUnit(r.Context(), u)
	}
	switch {
	case errors.As(err, &cycle):
		writeError(w, http.StatusBadRequest, cycle.Error())
	case err != nil:
		s.internalError(w, r, fmt.Errorf("create unit: %w", err))
	default:
		w.WriteHeader(http.StatusCreated)
	}
}

// cycleError is a Replaces cycle a unit would close.
type cycleError string

func (c cycleError) Error() string { return "circular Replaces: " + string(c) }

// writeBodyError answers a refused request body.
func writeBodyError(w http.ResponseWriter, err error) {
	var be *bodyError
	if errors.As(err, &be) {
		writeError(w, be.code, be.msg)
		return
	}
	writeError(w, http.StatusBadRequest, err.Error())
}

// invalidOption names the first option field holding U+FFFD, which is
// what invalid UTF-8 in the body became when decoded; "" if none.
func invalidOption(opts []*UnitOption) string {
	for _, o := range opts {
		switch {
		case o == nil:
		case strings.ContainsRune(o.Section, utf8.RuneError):
			return fmt.Sprintf("section name of option %q", o.Name)
		case strings.ContainsRune(o.Name, utf8.RuneError):
			return fmt.Sprintf("an option name in [%s]", o.Section)
		case strings.ContainsRune(o.Value, utf8.RuneError):
			return fmt.Sprintf("value of %s in [%s]", o.Name, o.Section)
		}
	}
	return ""
}

// desiredAction is the action of changing a unit's desired state from
// current ("" = unknown) to desired: start, stop (loaded from launched),
// load or unload.
func desiredAction(desired, current unit.FleetState) access.Action {
	switch desired {
	case unit.StateLaunched:
		return access.Start
	case unit.StateLoaded:
		if current == unit.StateLaunched {
			return access.Stop
		}
		return access.Load
	case unit.StateInactive:
		return access.Unload
	}
	return access.Start
}

// setDesiredState changes only the desired state of an existing unit,
// whose desired state is current.
func (s *server) setDesiredState(w http.ResponseWriter, r *http.Request, name string, current, desired unit.FleetState) {
	if desired == "" {
		writeError(w, http.StatusConflict, "must provide DesiredState to update existing unit")
		return
	}
	if !s.allow(w, r, access.Request{Action: desiredAction(desired, current), Unit: name}) {
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
