package api

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/url"
)

// Page tokens (spec §8.4). A token is the padded base64url encoding of two
// little-endian uint16 values: the page size (Limit) then the 1-based page
// number (Page). The first page needs no token; it is page 1.

// pageToken selects one page of a collection.
type pageToken struct {
	Limit uint16
	Page  uint16
}

// pageTokenParam is the query parameter that carries a page token.
const pageTokenParam = "nextPageToken"

// encode returns the wire form of t.
func (t pageToken) encode() string {
	var b [4]byte
	binary.LittleEndian.PutUint16(b[0:2], t.Limit)
	binary.LittleEndian.PutUint16(b[2:4], t.Page)
	return base64.URLEncoding.EncodeToString(b[:])
}

// next returns the token of the page after t.
func (t pageToken) next() pageToken {
	return pageToken{Limit: t.Limit, Page: t.Page + 1}
}

// bounds returns the half-open index range [start, stop) of page t within a
// collection of total items, and whether another page follows. A page that
// ends exactly at the last item still has a (then empty) successor, as fleet
// clients expect.
func (t pageToken) bounds(total int) (start, stop int, more bool) {
	start = (int(t.Page) - 1) * int(t.Limit)
	stop = int(t.Page) * int(t.Limit)
	if start >= total {
		return total, total, false
	}
	if stop > total {
		return start, total, false
	}
	return start, stop, true
}

// decodePageToken parses the wire form of a token and checks it against
// the server's page size.
func decodePageToken(s string, limit uint16) (pageToken, error) {
	b, err := base64.URLEncoding.DecodeString(s)
	if err != nil {
		return pageToken{}, fmt.Errorf("invalid page token: %w", err)
	}
	if len(b) != 4 {
		return pageToken{}, errors.New("invalid page token: wrong length")
	}
	t := pageToken{
		Limit: binary.LittleEndian.Uint16(b[0:2]),
		Page:  binary.LittleEndian.Uint16(b[2:4]),
	}
	if t.Limit != limit {
		return pageToken{}, fmt.Errorf("token limit must be %d", limit)
	}
	if t.Page == 0 {
		return pageToken{}, errors.New("token page must be greater than zero")
	}
	return t, nil
}

// pageTokenFromQuery returns the page a request asks for: page 1 when the
// query has no token (or an empty one), otherwise the decoded token.
func pageTokenFromQuery(q url.Values, limit uint16) (pageToken, error) {
	vals := q[pageTokenParam]
	switch {
	case len(vals) > 1:
		return pageToken{}, errors.New("too many values for page token")
	case len(vals) == 0 || vals[0] == "":
		return pageToken{Limit: limit, Page: 1}, nil
	}
	return decodePageToken(vals[0], limit)
}

// paginate cuts page t out of all and returns it with the token of the next
// page, or "" when there is none.
func paginate[T any](all []T, t pageToken) ([]T, string) {
	start, stop, more := t.bounds(len(all))
	next := ""
	if more && t.Page < math.MaxUint16 {
		next = t.next().encode()
	}
	return all[start:stop], next
}
