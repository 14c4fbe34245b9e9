package extauthz

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"

	"github.com/floodgate/floodgate/limiter"
)

// maxKeyLen is the longest counter key handed to the store as is; longer keys are replaced by
// "#" + hex(SHA-256(key)), which no length-prefixed key can equal (those start with a digit). With the
// store's prefix, algorithm, window and hash tag the Redis key stays well under 512 bytes.
const maxKeyLen = 200

// Leading parts that keep the two services' counters apart.
const (
	keyRLS   = "rls"
	keyAuthz = "authz"
)

// appendPart appends one length-prefixed key part.
func appendPart(b []byte, s string) []byte {
	return limiter.AppendKeyPart(b, s)
}

// appendIndex appends a limit's index as a key part, encoded like appendPart.
func appendIndex(b []byte, i int) []byte {
	var tmp [20]byte
	digits := strconv.AppendInt(tmp[:0], int64(i), 10)
	b = strconv.AppendInt(b, int64(len(digits)), 10)
	b = append(b, ':')
	return append(b, digits...)
}

// finishKey returns the counter key for b (see maxKeyLen).
func finishKey(b []byte) string {
	if len(b) <= maxKeyLen {
		return string(b)
	}
	sum := sha256.Sum256(b)
	var out [1 + 2*sha256.Size]byte
	out[0] = '#'
	hex.Encode(out[1:], sum[:])
	return string(out[:])
}

// appendDescriptorKey appends the RLS key prefix of a descriptor: the service marker, the domain and every
// entry key and value of the request (so each wildcard value counts on its own, like envoyproxy/ratelimit),
// except where shared (config.Rule.SharedValues, from share_threshold) names the wildcard pattern that every
// matching value shares a counter under.
func appendDescriptorKey(b []byte, domain string, entries []*ratelimitv3.RateLimitDescriptor_Entry, shared []string) []byte {
	b = appendPart(b, keyRLS)
	b = appendPart(b, domain)
	for i, e := range entries {
		b = appendPart(b, e.GetKey())
		if i < len(shared) && shared[i] != "" {
			b = appendPart(b, shared[i])
			continue
		}
		b = appendPart(b, e.GetValue())
	}
	return b
}

// hashHex returns the SHA-256 of s in hex, for key sources marked hash.
func hashHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
