package fleetd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/fleet-next/fleet/api"
	"github.com/fleet-next/fleet/registry"
)

// storeRelay is the API's relay through the store: requests for another
// machine's unit status and journal go as keys in etcd, which every fleetd
// reaches with its own credentials, so no fleetd needs an open port for
// them.
type storeRelay struct {
	reg       *registry.Etcd
	machineID string
}

func (s storeRelay) Relay(ctx context.Context, target string, req api.RelayedRequest) (*api.RelayedAnswer, error) {
	ans, err := s.reg.Relay(ctx, s.machineID, target, registry.RelayRequest{Path: req.Path, Subject: req.Subject,
		Stream: req.Stream})
	switch {
	case errors.Is(err, registry.ErrRelayNoAnswer):
		return nil, fmt.Errorf("%w: %w", api.ErrNoAnswer, err)
	case err != nil:
		return nil, err
	}
	return &api.RelayedAnswer{Code: ans.Code, ContentType: ans.ContentType, Body: ans.Body}, nil
}

// serveRelayed answers the requests other machines relay here with the
// API handler h, as the subject each names.
func serveRelayed(h http.Handler, log *slog.Logger) registry.RelayHandler {
	return func(ctx context.Context, req registry.RelayRequest, w *registry.RelayWriter) {
		r, err := api.NewRelayedRequest(ctx, req.From, req.Path, req.Subject)
		if err != nil {
			log.Warn("refused a relayed request", "from", req.From, "err", err)
			_ = w.Header(ctx, http.StatusBadRequest, "application/json")
			_ = w.End(ctx, err)
			return
		}
		rw := &relayResponse{ctx: ctx, w: w, header: http.Header{}}
		h.ServeHTTP(rw, r)
		if !rw.wrote {
			rw.WriteHeader(http.StatusOK)
		}
		// The end goes even when fleetd is stopping, so that the requester
		// is not left waiting; once the requester itself is gone, it fails.
		ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := w.End(ectx, rw.err); err != nil && ctx.Err() == nil {
			log.Warn("relayed answer not delivered", "from", req.From, "path", req.Path, "err", err)
		}
	}
}

// relayResponse is the http.ResponseWriter of a relayed request: the status
// and content type go as the answer's header, the body in chunks.
type relayResponse struct {
	ctx    context.Context
	w      *registry.RelayWriter
	header http.Header
	wrote  bool
	err    error // the first write failure
}

func (rw *relayResponse) Header() http.Header { return rw.header }

func (rw *relayResponse) WriteHeader(code int) {
	if rw.wrote {
		return
	}
	rw.wrote = true
	if err := rw.w.Header(rw.ctx, code, rw.header.Get("Content-Type")); err != nil {
		rw.err = err
	}
}

func (rw *relayResponse) Write(p []byte) (int, error) {
	if !rw.wrote {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.err != nil {
		return 0, rw.err
	}
	n, err := rw.w.Write(rw.ctx, p)
	if err != nil {
		rw.err = err
	}
	return n, err
}

// FlushError sends what is buffered (http.ResponseController uses it).
func (rw *relayResponse) FlushError() error {
	if !rw.wrote {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.err != nil {
		return rw.err
	}
	if err := rw.w.Flush(rw.ctx); err != nil {
		rw.err = err
	}
	return rw.err
}
