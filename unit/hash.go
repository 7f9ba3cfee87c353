package unit

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
)

// Hash identifies unit contents: the SHA1 of the canonical serialization.
type Hash [sha1.Size]byte

// HashOf hashes canonical unit contents.
func HashOf(canonical string) Hash { return sha1.Sum([]byte(canonical)) }

// String is the 40-character hex form.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Short is the 7-character hex form fleetctl shows without --full.
func (h Hash) Short() string { return h.String()[:7] }

// IsZero reports whether h is unset.
func (h Hash) IsZero() bool { return h == Hash{} }

// ParseHash parses the 40-character hex form.
func ParseHash(s string) (Hash, error) {
	var h Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("invalid unit hash %q", s)
	}
	copy(h[:], b)
	return h, nil
}
