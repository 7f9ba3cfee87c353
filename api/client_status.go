package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// UnitStatus asks the machine running the named unit what systemd says
// about it. machineID "" means the unit's placement; a global unit needs a
// machineID. Every error, including a missing unit (IsNotFound), is
// returned as a wrapped *Error when the API answered.
func (c *Client) UnitStatus(ctx context.Context, name, machineID string) (*UnitStatusReport, error) {
	q := url.Values{}
	if machineID != "" {
		q.Set("machineID", machineID)
	}
	var rep UnitStatusReport
	if err := c.get(ctx, unitSubPath(name, "status"), q, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// Journal copies the journal of the named unit, as read on the machine
// running it (machineID "" = the unit's placement), to w as it arrives.
// Without opts.Follow it returns once the server has sent the requested
// lines. With opts.Follow it streams until ctx ends and then returns nil:
// cancelling ctx is how a caller stops following. A non-2xx answer is
// returned as a wrapped *Error (503 when the machine has no journal).
func (c *Client) Journal(ctx context.Context, name, machineID string, opts JournalOptions, w io.Writer) error {
	p := unitSubPath(name, "journal")
	what := http.MethodGet + " " + apiPrefix + p
	q := journalQuery(machineID, opts)
	target := c.base.String() + apiPrefix + p
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("%s: build request: %w", what, err)
	}
	req.Header.Set("Accept", "text/plain")
	if c.host != "" {
		req.Host = c.host
	}

	hc := c.http
	if opts.Follow {
		// The client's timeout covers reading the body; a followed journal
		// has no end, so only ctx bounds it.
		unbounded := *c.http
		unbounded.Timeout = 0
		hc = &unbounded
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		if opts.Follow && ctx.Err() != nil {
			return nil
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%s: request to fleet API at %s: %w", what, c.endpoint, err)
	}
	defer resp.Body.Close()
	c.log.DebugContext(ctx, "api call", "method", http.MethodGet, "url", target,
		"status", resp.StatusCode, "duration", time.Since(start))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %w", what, decodeError(resp))
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		if opts.Follow && ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("%s: read journal: %w", what, err)
	}
	return nil
}

// unitSubPath is the escaped API path of a per-unit sub-resource.
func unitSubPath(name, sub string) string {
	return "/units/" + url.PathEscape(name) + "/" + sub
}

// journalQuery encodes the query of a journal request; defaults are left
// out.
func journalQuery(machineID string, opts JournalOptions) url.Values {
	q := url.Values{}
	if machineID != "" {
		q.Set("machineID", machineID)
	}
	if opts.Lines != 0 {
		q.Set("lines", strconv.Itoa(opts.Lines))
	}
	if opts.Follow {
		q.Set("follow", "true")
	}
	if opts.Output != "" {
		q.Set("output", opts.Output)
	}
	return q
}
