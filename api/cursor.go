package api

import (
	"context"
	"math"
	"net/http"
	"sync"
)

// maxCursors bounds the cursor cache; when full it starts afresh.
const maxCursors = 4096

// cursorKey names the start of one page of one listing.
type cursorKey struct {
	list   string // "states", ...
	filter string // the listing's filter parameters
	page   uint16
}

// cursors remembers where the next page of a listing starts (the key of
// the last item served), so that a client walking the pages in order is
// served each page with one bounded read instead of a scan from the start.
// A miss (another fleetd served the previous page, or the cache was
// cleared) costs one keys-only read up to the page's offset.
type cursors struct {
	mu sync.Mutex // guards m
	m  map[cursorKey]string
}

func newCursors() *cursors { return &cursors{m: make(map[cursorKey]string)} }

func (c *cursors) get(k cursorKey) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok
}

func (c *cursors) put(k cursorKey, after string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCursors {
		clear(c.m)
	}
	c.m[k] = after
}

// lister reads one listing page by page for readPage.
type lister[T any] struct {
	// cursor names the listing and its filter; readPage sets the page.
	cursor cursorKey
	// keyAt returns the key of the item at 0-based position i, or "" if
	// there are fewer items.
	keyAt func(ctx context.Context, i int) (string, error)
	// read returns at most limit items after the key after ("" = from
	// the first).
	read func(ctx context.Context, after string, limit int) ([]T, error)
	// keyOf is the key of an item, what keyAt and read take.
	keyOf func(T) string
}

// readPage reads page tok of a listing: from the cursor the previous page
// left, else from the key at the page's offset (one keys-only read). It
// returns the page and the token of the next one: a full page has a
// successor, possibly empty, as fleet's clients expect.
func readPage[T any](ctx context.Context, s *server, tok pageToken, l lister[T]) ([]T, string, error) {
	key := l.cursor
	key.page = tok.Page
	after := ""
	if tok.Page > 1 {
		var ok bool
		if after, ok = s.cursors.get(key); !ok {
			k, err := l.keyAt(ctx, (int(tok.Page)-1)*int(tok.Limit)-1)
			if err != nil {
				return nil, "", err
			}
			if k == "" {
				return nil, "", nil // past the end
			}
			after = k
		}
	}
	page, err := l.read(ctx, after, int(tok.Limit))
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(page) == int(tok.Limit) && tok.Page < math.MaxUint16 {
		key.page = tok.Page + 1
		s.cursors.put(key, l.keyOf(page[len(page)-1]))
		next = tok.next().encode()
	}
	return page, next, nil
}

// pageToken reads the page a list request asks for, or answers 400.
func (s *server) pageToken(w http.ResponseWriter, r *http.Request) (pageToken, bool) {
	tok, err := pageTokenFromQuery(r.URL.Query(), s.limit)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return pageToken{}, false
	}
	return tok, true
}
