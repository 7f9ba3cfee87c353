package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
)

// ClientOptions configures a Client.
type ClientOptions struct {
	// Timeout bounds each HTTP request, including reading the body; zero
	// means no limit beyond the caller's context.
	Timeout time.Duration
	// TLS configures https endpoints; nil uses the system defaults.
	TLS *tls.Config
	// Logger receives debug logs of requests; nil discards them.
	Logger *slog.Logger
	// Host, when set, is sent as the Host header instead of the
	// endpoint's host: the remote API's own host:port when the endpoint is
	// the local end of a tunnel to it. fleetd's TCP listeners refuse Host
	// names that are not theirs (DNS rebinding).
	Host string
}

// Client talks to the fleet HTTP API v1. It is safe for concurrent use.
type Client struct {
	endpoint string // as given, for error messages
	base     url.URL
	host     string // Host header; "" = the endpoint's
	http     *http.Client
	log      *slog.Logger
}

// apiPrefix is the path of the v1 API below the endpoint.
const apiPrefix = "/fleet/v1"

// NewClient returns a client for endpoint: unix:///path/to/socket,
// http://host:port or https://host:port (a path after the host is kept as
// a prefix).
func NewClient(endpoint string, opts ClientOptions) (*Client, error) {
	if !strings.Contains(endpoint, "://") {
		return nil, errors.New("URL scheme undefined")
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("parse endpoint %q: %w", endpoint, err)
	}
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	base := url.URL{Scheme: u.Scheme, Host: u.Host, Path: strings.TrimSuffix(u.Path, "/")}
	switch u.Scheme {
	case "":
		return nil, errors.New("URL scheme undefined")
	case "http":
	case "https":
		if opts.TLS != nil {
			transport.TLSClientConfig = opts.TLS.Clone()
		}
	case "unix":
		sock := u.Path
		if u.Host != "" || !path.IsAbs(sock) {
			return nil, fmt.Errorf("unix socket path in %q must be absolute", endpoint)
		}
		transport.Proxy = nil
		transport.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}
		// The host is a placeholder; the transport always dials the socket.
		base = url.URL{Scheme: "http", Host: "fleet.sock"}
	default:
		return nil, fmt.Errorf("unsupported URL scheme %q", u.Scheme)
	}
	if base.Host == "" {
		return nil, fmt.Errorf("endpoint %q has no host", endpoint)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{
		endpoint: endpoint,
		base:     base,
		host:     opts.Host,
		http:     &http.Client{Transport: transport, Timeout: opts.Timeout},
		log:      log,
	}, nil
}

// IsNotFound reports whether err carries a 404 answer of the API.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == http.StatusNotFound
}

// Units returns every unit sorted by name, following page tokens.
func (c *Client) Units(ctx context.Context) ([]*Unit, error) {
	var all []*Unit
	err := c.eachPage(ctx, "/units", func(tok string) (string, error) {
		var page UnitPage
		if err := c.get(ctx, "/units", pageQuery(nil, tok), &page); err != nil {
			return "", err
		}
		all = append(all, page.Units...)
		return page.NextPageToken, nil
	})
	return all, err
}

// Unit returns the named unit, or nil, nil when it does not exist.
func (c *Client) Unit(ctx context.Context, name string) (*Unit, error) {
	var u Unit
	err := c.get(ctx, "/units/"+url.PathEscape(name), nil, &u)
	switch {
	case IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return &u, nil
}

// CreateUnit creates u, or replaces the unit of that name when its options
// differ. Only the name, options and desired state are sent.
func (c *Client) CreateUnit(ctx context.Context, u *Unit) error {
	if u == nil {
		return errors.New("create unit: nil unit")
	}
	body := Unit{Name: u.Name, Options: u.Options, DesiredState: u.DesiredState}
	return c.do(ctx, http.MethodPut, "/units/"+url.PathEscape(u.Name), nil, body, nil)
}

// SetUnitTargetState changes the desired state of an existing unit.
func (c *Client) SetUnitTargetState(ctx context.Context, name, desiredState string) error {
	body := Unit{Name: name, DesiredState: desiredState}
	return c.do(ctx, http.MethodPut, "/units/"+url.PathEscape(name), nil, body, nil)
}

// DestroyUnit removes a unit. A missing unit gives an error satisfying
// IsNotFound.
func (c *Client) DestroyUnit(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/units/"+url.PathEscape(name), nil, nil, nil)
}

// UnitStates returns machine reports sorted by unit then machine,
// following page tokens. Empty filters match everything.
func (c *Client) UnitStates(ctx context.Context, machineID, unitName string) ([]*UnitState, error) {
	filter := url.Values{}
	if machineID != "" {
		filter.Set("machineID", machineID)
	}
	if unitName != "" {
		filter.Set("unitName", unitName)
	}
	var all []*UnitState
	err := c.eachPage(ctx, "/state", func(tok string) (string, error) {
		var page UnitStatePage
		if err := c.get(ctx, "/state", pageQuery(filter, tok), &page); err != nil {
			return "", err
		}
		all = append(all, page.States...)
		return page.NextPageToken, nil
	})
	return all, err
}

// UnitState returns the first machine report on the named unit, or nil,
// nil when there is none.
func (c *Client) UnitState(ctx context.Context, name string) (*UnitState, error) {
	var st UnitState
	err := c.get(ctx, "/state/"+url.PathEscape(name), nil, &st)
	switch {
	case IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return &st, nil
}

// Machines returns the live machines sorted by ID, following page tokens.
func (c *Client) Machines(ctx context.Context) ([]*Machine, error) {
	var all []*Machine
	err := c.eachPage(ctx, "/machines", func(tok string) (string, error) {
		var page MachinePage
		if err := c.get(ctx, "/machines", pageQuery(nil, tok), &page); err != nil {
			return "", err
		}
		all = append(all, page.Machines...)
		return page.NextPageToken, nil
	})
	return all, err
}

// PatchMachineMetadata sets the keys of set and removes the keys of remove
// in the dynamic metadata of one machine, all or nothing. A request with
// nothing to change sends nothing.
func (c *Client) PatchMachineMetadata(ctx context.Context, machineID string, set map[string]string, remove []string) error {
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	ops := make([]MetadataOp, 0, len(set)+len(remove))
	for _, k := range keys {
		ops = append(ops, MetadataOp{Op: MetadataAdd, Path: metadataOpPath(machineID, k), Value: MetadataValue{Value: set[k]}})
	}
	for _, k := range remove {
		ops = append(ops, MetadataOp{Op: MetadataRemove, Path: metadataOpPath(machineID, k)})
	}
	if len(ops) == 0 {
		return nil
	}
	return c.do(ctx, http.MethodPatch, "/machines", nil, ops, nil)
}

func metadataOpPath(machineID, key string) string {
	return "/" + machineID + "/metadata/" + key
}

// pageQuery returns filter plus the page token tok, if any.
func pageQuery(filter url.Values, tok string) url.Values {
	if tok == "" {
		return filter
	}
	q := url.Values{}
	for k, v := range filter {
		q[k] = v
	}
	q.Set(pageTokenParam, tok)
	return q
}

// eachPage calls fetch with "" and then with each next-page token it
// returns until there is none. A token seen twice is an error rather than
// an endless loop.
func (c *Client) eachPage(ctx context.Context, p string, fetch func(tok string) (string, error)) error {
	seen := map[string]bool{}
	tok := ""
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("GET %s: %w", apiPrefix+p, err)
		}
		next, err := fetch(tok)
		if err != nil {
			return err
		}
		if next == "" {
			return nil
		}
		if seen[next] {
			return fmt.Errorf("GET %s: server repeated page token %q", apiPrefix+p, next)
		}
		seen[next] = true
		tok = next
	}
}

func (c *Client) get(ctx context.Context, p string, q url.Values, out any) error {
	return c.do(ctx, http.MethodGet, p, q, nil, out)
}

// do sends one request to the API path p (below /fleet/v1, already
// escaped) with body
// encoded as JSON when non-nil, and decodes a 2xx answer into out when
// non-nil. A non-2xx answer is returned as a wrapped *Error.
func (c *Client) do(ctx context.Context, method, p string, q url.Values, body, out any) error {
	target := c.base.String() + apiPrefix + p
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	what := method + " " + apiPrefix + p

	var rdr io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s: encode request: %w", what, err)
		}
		rdr = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rdr)
	if err != nil {
		return fmt.Errorf("%s: build request: %w", what, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.host != "" {
		req.Host = c.host
	}

	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%s: request to fleet API at %s: %w", what, c.endpoint, err)
	}
	defer resp.Body.Close()
	c.log.LogAttrs(ctx, slog.LevelDebug, "api call",
		slog.String("method", method),
		slog.String("url", target),
		slog.Int("status", resp.StatusCode),
		slog.Duration("duration", time.Since(start)))

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s: %w", what, decodeError(resp))
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s: decode response: %w", what, err)
	}
	return nil
}

// decodeError reads the error envelope of a non-2xx answer. An answer
// without one still yields an *Error with the status code.
func decodeError(resp *http.Response) *Error {
	var env ErrorResponse
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err == nil && json.Unmarshal(b, &env) == nil && env.Error.Code != 0 {
		return &env.Error
	}
	return &Error{Code: resp.StatusCode}
}
