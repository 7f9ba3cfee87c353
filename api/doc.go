// Package api is fleet's HTTP API v1: the server handler that fleetd
// mounts on its unix socket or TCP listener, and the client that fleetctl
// uses.
//
// Server. NewHandler serves the same resources under /fleet/v1/ and the
// legacy /v1-alpha/: units (list, get, create/replace/set desired state,
// destroy), state (machine reports, list and single), machines (list and
// PATCH of dynamic metadata) and discovery (a description of the API whose
// rootUrl is "$ENDPOINT/"). The routes are declared once, as ServeMux
// patterns ("/fleet/v1/units/{name}"); the pattern that matched is the
// route an Observer (WithObserver) is told. "/" and the bare base paths
// answer 405, any other path, including an item path with a trailing
// slash and a path not in canonical form, 404. Every response carries
// "Server: fleetd/<version>"; every error is the JSON envelope
// {"error":{"code":N,"message":"..."}} with Content-Type application/json.
// While Options.Ready returns an error, every request gets 503. /health
// answers {"status":"ok"} or 503 from the same check; /metrics serves
// Options.Metrics and is never gated.
//
// Request bodies are read up to a limit (MaxUnitBodyBytes,
// MaxPatchBodyBytes) before they are decoded, and answered 413 beyond it;
// a body must be exactly one JSON value in UTF-8, and an object may not
// hold two keys naming one field (encoding/json matches keys to fields
// regardless of case). Unit contents are checked by unit.ValidateName and
// unit.File.Validate, the checks fleetctl makes too; contents over
// unit.MaxContentBytes get 413.
//
// Lists are paginated with opaque tokens (Options.TokenLimit items per
// page); a page that ends at the last item is followed by one empty page.
// Each page re-reads the collection from the Registry.
//
// Units. A new unit needs options; its desired state defaults to
// inactive. An existing unit is replaced (201) when options with different
// contents are given, the desired state then being the given one or
// inactive; otherwise only its desired state changes (204). Unlike fleet,
// the desired state is validated on every PUT, the options on create and on
// replace, and a template unit can never be loaded or launched. A unit
// with Replaces is checked for a Replaces cycle and stored in one store
// transaction (Registry.CreateUnitIf). The list
// reports a unit without a derived current state (a global unit) as
// "inactive"; a single GET omits its currentState, as fleet did.
//
// Machines. PATCH validates every operation, then applies all of them in a
// single Registry call, so a request changes every key or none; a machine
// that is not registered makes it a 404.
//
// Store errors whose chain holds an error with a NotFound() bool method
// returning true are answered 404 where the API defines it; any other store
// error is a 500 carrying the error text.
//
// Client. NewClient dials unix://, http:// or https:// endpoints. List
// methods follow page tokens to the end; Unit and UnitState return nil, nil
// for a missing object; any other non-2xx answer is returned as a wrapped
// *Error (test with IsNotFound or errors.As).
package api
