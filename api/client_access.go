package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/fleet-next/fleet/access"
)

// Grants returns every grant (admin only).
func (c *Client) Grants(ctx context.Context) ([]access.Grant, error) {
	var l GrantList
	if err := c.get(ctx, "/acl", nil, &l); err != nil {
		return nil, err
	}
	return l.Grants, nil
}

// Grant stores g (admin only); granting twice is not an error.
func (c *Client) Grant(ctx context.Context, g access.Grant) error {
	return c.do(ctx, http.MethodPut, "/acl", nil, g, nil)
}

// Revoke removes g (admin only); a grant that does not exist gives an
// error satisfying IsNotFound.
func (c *Client) Revoke(ctx context.Context, g access.Grant) error {
	q := url.Values{"role": {string(g.Role)}, "subject": {g.Subject}}
	if g.Units != "" {
		q.Set("units", g.Units)
	}
	return c.do(ctx, http.MethodDelete, "/acl", q, nil, nil)
}

// WhoAmI returns the caller's identity as the server sees it, and the
// grants that apply to it.
func (c *Client) WhoAmI(ctx context.Context) (*WhoAmI, error) {
	var w WhoAmI
	if err := c.get(ctx, "/whoami", nil, &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// Audit returns the audit entries passing f, oldest first, following page
// tokens (admin only).
func (c *Client) Audit(ctx context.Context, f access.AuditFilter) ([]access.Entry, error) {
	var all []access.Entry
	err := c.eachPage(ctx, "/audit", func(tok string) (string, error) {
		var page AuditPage
		if err := c.get(ctx, "/audit", auditQuery(f, tok), &page); err != nil {
			return "", err
		}
		all = append(all, page.Entries...)
		return page.NextPageToken, nil
	})
	return all, err
}
