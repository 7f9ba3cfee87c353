package api

import "sync"

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
