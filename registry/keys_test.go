package registry

import (
	"testing"
	"time"

	"github.com/fleet-next/fleet/access"
)

// The engine follows [engineRange, end of prefix) with one watch: exactly
// its inputs must sort there, and agent states must not.
func TestEngineRangeHoldsExactlyTheEngineInputs(t *testing.T) {
	k := newKeys(DefaultPrefix)
	from, end := k.engineRange(), prefixEnd(k.prefix)
	tests := []struct {
		name   string
		key    string
		inside bool
	}{
		{"unit", k.unit("a.service"), true},
		{"placement", k.placement("m1", "a.service"), true},
		{"reason", k.reason("a.service"), true},
		{"refusal", k.refusal("a.service", "m1"), true},
		{"machine", k.machine("m1"), true},
		{"dynamic metadata", k.metadataKey("m1", "region"), true},
		{"agent state", k.state("a.service", "m1"), false},
		{"election", k.election() + "/694d7f", false},
		{"grant", k.grant(access.Grant{Role: access.Admin, Subject: "user:alice"}), false},
		{"audit entry", k.auditKey(time.Now()), false},
		{"relayed request", k.relayAsk("m1", "0a1b"), false},
		{"relayed answer", k.relayChunk("m1", "0a1b", 3), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.key >= from && tc.key < end; got != tc.inside {
				t.Errorf("%s in the engine range = %v, want %v", tc.key, got, tc.inside)
			}
		})
	}
}
