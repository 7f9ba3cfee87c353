package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/fleet-next/fleet/unit"
)

// LocalUnits is this machine's systemd as the per-machine endpoints (unit
// status and journal) need it.
type LocalUnits interface {
	// UnitStatus reports what systemd says about the named unit. A unit
	// systemd does not know is not an error: the report says "not-found".
	UnitStatus(ctx context.Context, name string) (*UnitStatusReport, error)
	// Journal starts reading the named unit's journal and returns the text
	// as a stream. The stream ends when the lines asked for are written or,
	// with opts.Follow, when ctx ends; Close stops reading and says how the
	// reader ended. An error whose chain holds an error with a
	// JournalUnavailable() bool method returning true says the machine has no
	// journal to read; its text is the message clients see.
	Journal(ctx context.Context, name string, opts JournalOptions) (io.ReadCloser, error)
}

// Per-unit sub-resources served by the unit's own machine.
const (
	subStatus  = "status"
	subJournal = "journal"
)

// forwardedHeader marks a request one fleetd forwarded to another, naming
// the forwarding machine; a forwarded request is never forwarded again.
const forwardedHeader = "X-Fleet-Forwarded-By"

// DefaultJournalLines is the number of journal lines sent when a request
// does not say.
const DefaultJournalLines = 10

// journalOutputs are the journalctl output modes a journal request may ask
// for.
var journalOutputs = []string{
	"short", "short-full", "short-iso", "short-iso-precise", "short-precise", "short-monotonic",
	"short-unix", "short-delta", "with-unit", "verbose", "export", "json", "json-pretty", "json-sse",
	"json-seq", "cat",
}

// newForwardTransport is the transport of forwarded requests when
// Options.ForwardTransport is nil. Forwarding stays inside the cluster, so
// no HTTP proxy from the environment applies.
func newForwardTransport() http.RoundTripper {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: time.Minute,
	}
}

// unitStatus serves GET /units/<name>/status.
func (s *server) unitStatus(w http.ResponseWriter, r *http.Request) {
	if name, ok := pathName(w, r); ok {
		s.serveUnitMachine(w, r, name, subStatus, JournalOptions{})
	}
}

// unitJournal serves GET /units/<name>/journal: a stream that may last as
// long as the client follows it. The server's write timeout is for
// answers, not for streams: the write deadline moves with every chunk
// written (see streamWriter).
func (s *server) unitJournal(w http.ResponseWriter, r *http.Request) {
	name, ok := pathName(w, r)
	if !ok {
		return
	}
	jopts, err := parseJournalQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := s.untilStopping(r.Context())
	defer cancel()
	sw := newStreamWriter(w)
	s.serveUnitMachine(sw, r.WithContext(ctx), name, subJournal, jopts)
}

// StreamWriteTimeout is how long writing one chunk of a journal stream may
// take before the client is given up on.
const StreamWriteTimeout = time.Minute

// streamWriter writes a long stream under the server's deadlines: a write
// deadline of StreamWriteTimeout from each write or flush, so that a
// client that stops reading is dropped but one that waits for lines is
// not, and no read deadline (the request is read). Writers without
// deadlines (tests) are written to as they are.
type streamWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
}

func newStreamWriter(w http.ResponseWriter) *streamWriter {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{}) // unsupported only by writers without deadlines
	_ = rc.SetWriteDeadline(time.Now().Add(StreamWriteTimeout))
	return &streamWriter{ResponseWriter: w, rc: rc}
}

func (w *streamWriter) Write(b []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(StreamWriteTimeout))
	return w.ResponseWriter.Write(b)
}

// Flush sends buffered data, under a fresh write deadline.
func (w *streamWriter) Flush() {
	_ = w.rc.SetWriteDeadline(time.Now().Add(StreamWriteTimeout))
	_ = w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *streamWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// serveUnitMachine serves the status or the journal (sub) of a unit:
// answered here when the unit's machine is this one, else relayed to that
// machine through the store, or forwarded to the API URL it publishes
// when the handler has no relay.
func (s *server) serveUnitMachine(w http.ResponseWriter, r *http.Request, name, sub string, jopts JournalOptions) {
	q := r.URL.Query()
	us, err := s.reg.Unit(r.Context(), name)
	switch {
	case isNotFound(err):
		writeError(w, http.StatusNotFound, msgUnitNotFound)
		return
	case err != nil:
		s.internalError(w, r, fmt.Errorf("get unit: %w", err))
		return
	}
	machineID := q.Get("machineID")
	if machineID == "" {
		switch {
		case us.Global:
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unit %s is global: name a machineID", name))
			return
		case us.Target == "":
			writeError(w, http.StatusConflict, fmt.Sprintf("unit %s is not scheduled", name))
			return
		}
		machineID = us.Target
	}
	if machineID == s.machineID && s.machineID != "" {
		if sub == subStatus {
			s.localStatus(w, r, name)
		} else {
			s.localJournal(w, r, name, jopts)
		}
		return
	}
	if by := r.Header.Get(forwardedHeader); by != "" {
		writeError(w, http.StatusBadGateway, fmt.Sprintf(
			"request for machine %s, forwarded by machine %s, reached machine %s", machineID, by, s.machineID))
		return
	}
	if s.relay != nil {
		s.relayTo(w, r, machineID, q.Get("machineID") != "", sub == subJournal && jopts.Follow)
		return
	}
	s.forward(w, r, machineID, q.Get("machineID") != "")
}

// untilStopping returns a context that also ends when the handler is
// stopping.
func (s *server) untilStopping(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if s.stopping != nil {
		go func() {
			select {
			case <-s.stopping:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	return ctx, cancel
}

// parseJournalQuery reads lines, follow and output from a journal request.
func parseJournalQuery(q url.Values) (JournalOptions, error) {
	var o JournalOptions
	if v := q.Get("lines"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return o, fmt.Errorf("invalid lines %q: want a number of lines, 0 or more", v)
		}
		o.Lines = n
	}
	if o.Lines == 0 {
		o.Lines = DefaultJournalLines
	}
	if v := q.Get("follow"); v != "" {
		f, err := strconv.ParseBool(v)
		if err != nil {
			return o, fmt.Errorf("invalid follow %q: want true or false", v)
		}
		o.Follow = f
	}
	o.Output = q.Get("output")
	if o.Output != "" && !slices.Contains(journalOutputs, o.Output) {
		return o, fmt.Errorf("invalid output %q: want one of %v", o.Output, journalOutputs)
	}
	return o, nil
}

// msgNoLocal answers per-machine requests when the handler has no
// LocalUnits.
const msgNoLocal = "this fleetd does not serve per-machine requests"

func (s *server) localStatus(w http.ResponseWriter, r *http.Request, name string) {
	if s.local == nil {
		writeError(w, http.StatusNotImplemented, msgNoLocal)
		return
	}
	rep, err := s.local.UnitStatus(r.Context(), name)
	if err != nil {
		s.internalError(w, r, fmt.Errorf("unit status: %w", err))
		return
	}
	rep.Name, rep.MachineID = name, s.machineID
	writeJSON(w, http.StatusOK, rep)
}

// isJournalUnavailable reports whether err says that the machine has no
// journal to read.
func isJournalUnavailable(err error) bool {
	var ju interface{ JournalUnavailable() bool }
	return errors.As(err, &ju) && ju.JournalUnavailable()
}

// localJournal streams this machine's journal of name, flushing every
// chunk as it arrives, until the reader ends or the client goes away.
func (s *server) localJournal(w http.ResponseWriter, r *http.Request, name string, opts JournalOptions) {
	if s.local == nil {
		writeError(w, http.StatusNotImplemented, msgNoLocal)
		return
	}
	stream, err := s.local.Journal(r.Context(), name, opts)
	switch {
	case isJournalUnavailable(err):
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	case err != nil:
		s.internalError(w, r, fmt.Errorf("read journal: %w", err))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush() // headers now, so a follower sees the answer before the first line
	copyErr := copyFlushing(w, rc, stream)
	closeErr := stream.Close()
	if r.Context().Err() != nil {
		return // the client went away: not a failure
	}
	if err := errors.Join(copyErr, closeErr); err != nil {
		// The status line is sent: the failure can only be logged.
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "journal stream ended with an error",
			slog.String("unit", name), slog.Any("error", err))
	}
}

// copyFlushing copies src to w, flushing after each chunk.
func copyFlushing(w io.Writer, rc *http.ResponseController, src io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return fmt.Errorf("write journal: %w", werr)
			}
			if ferr := rc.Flush(); ferr != nil {
				return fmt.Errorf("flush journal: %w", ferr)
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return fmt.Errorf("read journal: %w", err)
		}
	}
}

// forward relays the request to the API of machineID, as that machine
// publishes it, with the status code, headers and body of its answer
// streamed back. named says the client named the machine (a machine
// unknown then is the client's error, not the cluster's).
func (s *server) forward(w http.ResponseWriter, r *http.Request, machineID string, named bool) {
	m, ok := s.liveMachine(w, r, machineID, named)
	switch {
	case !ok:
		return
	case m.APIURL == "":
		writeError(w, http.StatusBadGateway, fmt.Sprintf(
			"machine %s publishes no API address; give it a tcp:// api_listen", machineID))
		return
	}
	target, err := url.Parse(m.APIURL)
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		writeError(w, http.StatusBadGateway, fmt.Sprintf("machine %s publishes an unusable API address %q", machineID, m.APIURL))
		return
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			q := pr.In.URL.Query()
			q.Set("machineID", machineID) // the owner answers for itself, wherever the unit is now
			pr.Out.URL.RawQuery = q.Encode()
			pr.Out.Header.Set(forwardedHeader, s.machineID)
		},
		Transport:     s.forwardTransport,
		FlushInterval: -1, // journals stream: relay every chunk at once
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client went away
			}
			w.Header().Set("Server", "fleetd/"+s.version)
			writeError(w, http.StatusBadGateway, fmt.Sprintf("forward to machine %s at %s: %v", machineID, m.APIURL, err))
		},
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	// The owner's answer carries its own Server header; relay that one.
	w.Header().Del("Server")
	proxy.ServeHTTP(w, r)
}

// findMachine looks up a live machine by ID.
func (s *server) findMachine(ctx context.Context, id string) (unit.Machine, bool, error) {
	ms, err := s.reg.Machines(ctx)
	if err != nil {
		return unit.Machine{}, false, err
	}
	for _, m := range ms {
		if m.ID == id {
			return m, true, nil
		}
	}
	return unit.Machine{}, false, nil
}
