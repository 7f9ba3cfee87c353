package engine

import "testing"

func TestUnplaceableAfter(t *testing.T) {
	tests := []struct {
		name    string
		reasons map[string]string
		changes []Change
		want    int
	}{
		{name: "no reasons, no changes", want: 0},
		{name: "existing reasons kept", reasons: map[string]string{"a": "x", "b": "y"}, want: 2},
		{name: "new reason", reasons: map[string]string{"a": "x"},
			changes: []Change{{Kind: SetReason, Unit: "b", Reason: "y"}}, want: 2},
		{name: "reason rewritten counts once", reasons: map[string]string{"a": "x"},
			changes: []Change{{Kind: SetReason, Unit: "a", Reason: "z"}}, want: 1},
		{name: "reason cleared", reasons: map[string]string{"a": "x", "b": "y"},
			changes: []Change{{Kind: ClearReason, Unit: "a"}}, want: 1},
		{name: "clearing an absent reason changes nothing", reasons: map[string]string{"a": "x"},
			changes: []Change{{Kind: ClearReason, Unit: "b"}}, want: 1},
		{name: "placements do not count", reasons: map[string]string{"a": "x"},
			changes: []Change{{Kind: Place, Unit: "c"}, {Kind: Unplace, Unit: "a"}}, want: 1},
		{name: "mixed", reasons: map[string]string{"a": "x", "b": "y"},
			changes: []Change{{Kind: ClearReason, Unit: "a"}, {Kind: SetReason, Unit: "c"}, {Kind: SetReason, Unit: "d"}},
			want:    3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := UnplaceableAfter(tt.reasons, tt.changes); got != tt.want {
				t.Errorf("UnplaceableAfter = %d, want %d", got, tt.want)
			}
		})
	}
}
