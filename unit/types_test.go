package unit

import (
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"testing"
)

func TestParseDesiredState(t *testing.T) {
	tests := []struct {
		in      string
		want    FleetState
		rank    int
		wantErr bool
	}{
		{in: "inactive", want: StateInactive, rank: 0},
		{in: "loaded", want: StateLoaded, rank: 1},
		{in: "launched", want: StateLaunched, rank: 2},
		{in: "Launched", wantErr: true},
		{in: "", wantErr: true},
		{in: "running", wantErr: true},
	}
	for _, tc := range tests {
		t.Run("state "+tc.in, func(t *testing.T) {
			got, err := ParseFleetState(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseFleetState(%q) error = %v, want error: %v", tc.in, err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if got != tc.want || got.Rank() != tc.rank {
				t.Fatalf("ParseFleetState(%q) = %q rank %d, want %q rank %d", tc.in, got, got.Rank(), tc.want, tc.rank)
			}
		})
	}
}

func TestShortID(t *testing.T) {
	tests := []struct{ name, id, want string }{
		{name: "full machine ID", id: "113f16a7fbe2422e8d3d7fc0a54e2b8f", want: "113f16a7"},
		{name: "exactly eight", id: "12345678", want: "12345678"},
		{name: "shorter", id: "abc", want: "abc"},
		{name: "empty", id: "", want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ShortID(tc.id); got != tc.want {
				t.Fatalf("ShortID(%q) = %q, want %q", tc.id, got, tc.want)
			}
		})
	}
}

func TestParseHash(t *testing.T) {
	sum := sha1.Sum([]byte("[Service]\nExecStart=/bin/true\n"))
	full := hex.EncodeToString(sum[:])
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{name: "lower case", in: full},
		{name: "upper case", in: strings.ToUpper(full)},
		{name: "short form", in: full[:7], wantErr: true},
		{name: "not hex", in: strings.Repeat("z", 40), wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ParseHash(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseHash(%q) error = %v, want error: %v", tc.in, err, tc.wantErr)
			}
			if tc.wantErr {
				if !h.IsZero() {
					t.Fatalf("ParseHash(%q) = %s on error, want zero", tc.in, h)
				}
				return
			}
			if h != Hash(sum) || h.String() != full || h.IsZero() {
				t.Fatalf("ParseHash(%q) = %s", tc.in, h)
			}
		})
	}
}
