package api

import (
	"net/url"
	"strings"
	"testing"
)

func TestPageTokenEncode(t *testing.T) {
	tests := []struct {
		name string
		tok  pageToken
		want string
	}{
		{name: "limit 100 page 1", tok: pageToken{Limit: 100, Page: 1}, want: "ZAABAA=="},
		{name: "limit 100 page 2", tok: pageToken{Limit: 100, Page: 2}, want: "ZAACAA=="},
		{name: "limit 19 page 11852", tok: pageToken{Limit: 19, Page: 11852}, want: "EwBMLg=="},
		{name: "url-safe alphabet", tok: pageToken{Limit: 0xfbff, Page: 0xffff}, want: "__v__w=="},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.tok.encode(); got != tc.want {
				t.Errorf("encode(%+v) = %q, want %q", tc.tok, got, tc.want)
			}
		})
	}
}

func TestDecodePageToken(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		limit   uint16
		want    pageToken
		wantErr string
	}{
		{name: "first page", in: "ZAABAA==", limit: 100, want: pageToken{Limit: 100, Page: 1}},
		{name: "third page", in: "ZAADAA==", limit: 100, want: pageToken{Limit: 100, Page: 3}},
		{name: "other configured limit", in: "EwBMLg==", limit: 19, want: pageToken{Limit: 19, Page: 11852}},
		{name: "limit mismatch", in: "EwBMLg==", limit: 100, wantErr: "token limit must be 100"},
		{name: "page zero", in: "ZAAAAA==", limit: 100, wantErr: "token page must be greater than zero"},
		{name: "not base64", in: "!!!!", limit: 100, wantErr: "invalid page token"},
		{name: "unpadded", in: "ZAABAA", limit: 100, wantErr: "invalid page token"},
		{name: "standard alphabet", in: "+/v//w==", limit: 100, wantErr: "invalid page token"},
		{name: "too short", in: "ZAA=", limit: 100, wantErr: "invalid page token: wrong length"},
		{name: "too long", in: "ZAABAAA=", limit: 100, wantErr: "invalid page token: wrong length"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodePageToken(tc.in, tc.limit)
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("decodePageToken(%q) error = %v, want prefix %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodePageToken(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("decodePageToken(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestPageTokenRoundTrip(t *testing.T) {
	for _, limit := range []uint16{1, 7, 100, 65535} {
		for _, page := range []uint16{1, 2, 255, 256, 65535} {
			tok := pageToken{Limit: limit, Page: page}
			got, err := decodePageToken(tok.encode(), limit)
			if err != nil {
				t.Fatalf("round trip %+v: %v", tok, err)
			}
			if got != tok {
				t.Errorf("round trip %+v = %+v", tok, got)
			}
		}
	}
}

func TestPageTokenFromQuery(t *testing.T) {
	tests := []struct {
		name    string
		query   string
		want    pageToken
		wantErr string
	}{
		{name: "absent", query: "", want: pageToken{Limit: 100, Page: 1}},
		{name: "empty value", query: "nextPageToken=", want: pageToken{Limit: 100, Page: 1}},
		{name: "explicit first page", query: "nextPageToken=ZAABAA%3D%3D", want: pageToken{Limit: 100, Page: 1}},
		{name: "second page", query: "nextPageToken=ZAACAA==", want: pageToken{Limit: 100, Page: 2}},
		{name: "repeated", query: "nextPageToken=ZAABAA==&nextPageToken=ZAABAA==", wantErr: "too many values for page token"},
		{name: "wrong limit", query: "nextPageToken=EwBMLg==", wantErr: "token limit must be 100"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := pageTokenFromQuery(q, 100)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestPaginate(t *testing.T) {
	items := func(n int) []int {
		s := make([]int, n)
		for i := range s {
			s[i] = i
		}
		return s
	}
	tests := []struct {
		name      string
		total     int
		tok       pageToken
		wantStart int
		wantLen   int
		wantNext  string
	}{
		{name: "empty collection", total: 0, tok: pageToken{Limit: 3, Page: 1}, wantLen: 0},
		{name: "short first page", total: 2, tok: pageToken{Limit: 3, Page: 1}, wantLen: 2},
		{name: "exact page gets a successor", total: 3, tok: pageToken{Limit: 3, Page: 1}, wantLen: 3,
			wantNext: pageToken{Limit: 3, Page: 2}.encode()},
		{name: "empty page after exact multiple", total: 3, tok: pageToken{Limit: 3, Page: 2}, wantStart: 3, wantLen: 0},
		{name: "full middle page", total: 7, tok: pageToken{Limit: 3, Page: 2}, wantStart: 3, wantLen: 3,
			wantNext: pageToken{Limit: 3, Page: 3}.encode()},
		{name: "last partial page", total: 7, tok: pageToken{Limit: 3, Page: 3}, wantStart: 6, wantLen: 1},
		{name: "beyond the end", total: 7, tok: pageToken{Limit: 3, Page: 9}, wantStart: 7, wantLen: 0},
		{name: "last representable page", total: 70000, tok: pageToken{Limit: 1, Page: 65535}, wantStart: 65534, wantLen: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			all := items(tc.total)
			page, next := paginate(all, tc.tok)
			if len(page) != tc.wantLen {
				t.Fatalf("page length = %d, want %d", len(page), tc.wantLen)
			}
			for i, v := range page {
				if v != tc.wantStart+i {
					t.Fatalf("page[%d] = %d, want %d", i, v, tc.wantStart+i)
				}
			}
			if next != tc.wantNext {
				t.Errorf("next = %q, want %q", next, tc.wantNext)
			}
		})
	}
}
