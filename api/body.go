package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Request body limits. A body is read up to its limit before anything
// decodes it; a longer one is answered 413.
const (
	// MaxUnitBodyBytes bounds the body of PUT /units/<name>. A unit's
	// contents are limited to unit.MaxContentBytes once serialized; this
	// leaves room for the JSON around them (a short option costs about 40
	// bytes of JSON for 4 of contents).
	MaxUnitBodyBytes = 8 << 20
	// MaxPatchBodyBytes bounds the body of PATCH /machines: the metadata
	// of one request must fit in one store transaction.
	MaxPatchBodyBytes = 256 << 10
)

// bodyError is a request body the handler refuses, with its status.
type bodyError struct {
	code int
	msg  string
}

func (e *bodyError) Error() string { return e.msg }

// readJSON reads the body of r, at most limit bytes, and decodes it into
// v. It refuses (see docs/api.md, "Request bodies"):
//
//   - a body over limit: 413, stating the limit;
//   - a body that is not one JSON value: 400, trailing data included;
//   - an object with two keys naming the same field, exactly or in
//     another case (encoding/json matches field names case-insensitively
//     and would keep the last): 400;
//   - text that is not UTF-8, or an escaped lone surrogate: 400, since
//     decoding would silently replace it. When invalidUTF8 is not nil,
//     it is asked to name the field that held it, once v is decoded.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any, invalidUTF8 func() string) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return &bodyError{code: http.StatusRequestEntityTooLarge,
			msg: fmt.Sprintf("request body exceeds the limit of %d bytes (%s)", limit, sizeText(limit))}
	case err != nil:
		return &bodyError{code: http.StatusBadRequest, msg: "unable to read body: " + err.Error()}
	}
	if err := checkKeys(data); err != nil {
		return &bodyError{code: http.StatusBadRequest, msg: "unable to decode body: " + err.Error()}
	}
	if err := json.Unmarshal(data, v); err != nil {
		return &bodyError{code: http.StatusBadRequest, msg: "unable to decode body: " + err.Error()}
	}
	if !validJSONText(data) {
		msg := "request body is not valid UTF-8"
		if invalidUTF8 != nil {
			if field := invalidUTF8(); field != "" {
				msg = field + " is not valid UTF-8"
			}
		}
		return &bodyError{code: http.StatusBadRequest, msg: msg}
	}
	return nil
}

// sizeText renders a limit of whole KiB or MiB.
func sizeText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// validJSONText reports whether data is UTF-8 and every \u escape of a
// surrogate is one half of a pair, so that decoding replaces nothing with
// U+FFFD.
func validJSONText(data []byte) bool {
	if !utf8.Valid(data) {
		return false
	}
	inString := false
	for i := 0; i < len(data); i++ {
		switch c := data[i]; {
		case c == '"':
			inString = !inString
		case c == '\\' && inString:
			if i+1 < len(data) && data[i+1] == 'u' {
				r, ok := hex4(data, i+2)
				switch {
				case !ok:
				case utf16IsHigh(r):
					low, ok := hex4(data, i+8)
					if !ok || i+7 >= len(data) || data[i+6] != '\\' || data[i+7] != 'u' || !utf16IsLow(low) {
						return false
					}
					i += 6
				case utf16IsLow(r):
					return false
				}
			}
			i++ // the escaped character
		}
	}
	return true
}

func utf16IsHigh(r rune) bool { return 0xd800 <= r && r < 0xdc00 }
func utf16IsLow(r rune) bool  { return 0xdc00 <= r && r < 0xe000 }

// hex4 reads 4 hex digits at data[i:].
func hex4(data []byte, i int) (rune, bool) {
	if i < 0 || i+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// checkKeys refuses an object holding two keys that are equal, or equal
// but for case. Syntax errors are left to the decoder.
func checkKeys(data []byte) error {
	type frame struct {
		object  bool
		wantKey bool
		keys    map[string]string // folded key -> key as written
	}
	var stack []*frame
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].wantKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // the end, or a syntax error Unmarshal reports
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, &frame{object: true, wantKey: true, keys: map[string]string{}})
			case '[':
				stack = append(stack, &frame{})
			default:
				stack = stack[:len(stack)-1]
				valueDone()
			}
		case string:
			if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
				f := stack[n-1]
				folded := foldKey(t)
				if prev, dup := f.keys[folded]; dup {
					if prev == t {
						return fmt.Errorf("duplicate key %q", t)
					}
					return fmt.Errorf("keys %q and %q name the same field", prev, t)
				}
				f.keys[folded] = t
				f.wantKey = false
				continue
			}
			valueDone()
		default:
			valueDone()
		}
	}
}

// foldKey maps s to one representative of the strings equal to it under
// Unicode simple case folding (strings.EqualFold, which encoding/json uses
// to match keys to fields).
func foldKey(s string) string {
	return strings.Map(func(r rune) rune {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		return least
	}, s)
}
