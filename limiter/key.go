package limiter

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// Storage key layout limits.
const (
	// MaxKeyLen is the longest storage key StorageKey builds, whatever its inputs.
	MaxKeyLen = 512
	// MaxPrefixLen is the longest prefix used verbatim; a longer one is shortened (see StorageKey).
	MaxPrefixLen = 64
	// maxRawKey is the longest Hit.Key stored verbatim; longer ones are replaced by "h:" + hex(sha256).
	maxRawKey = 300
)

// fnv64 is FNV-1a, 64 bit: stable across processes and versions, used for the hash tag and shard choice.
func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// algorithmCode is the short name of an algorithm inside storage keys.
func algorithmCode(a Algorithm) string {
	switch a {
	case FixedWindow:
		return "fw"
	case SlidingWindow:
		return "sw"
	case TokenBucket:
		return "tb"
	}
	return "a" + strconv.Itoa(int(a))
}

// StorageKey returns the key that holds h's counter:
//
//	prefix "{" hex16(fnv1a64(h.Key)) "}" ":" algorithm ":" window-ms ":" key-part
//
// key-part is h.Key itself when it is at most 300 bytes and does not start with "h:", else "h:" followed by
// the hex SHA-256 of h.Key. The Redis Cluster hash tag is the first {...}, which StorageKey always writes
// itself from a hash of the whole h.Key: braces inside h.Key cannot change the slot, and different descriptor
// values spread over slots. Requests and Burst are not part of the key, so changing a quota keeps the count;
// changing the algorithm or window starts a fresh counter. A prefix longer than MaxPrefixLen is shortened to
// its first 47 bytes, "~" and 16 hex digits of its hash; braces in a prefix become parentheses. The result
// is never longer than MaxKeyLen bytes.
func StorageKey(prefix string, h Hit) string {
	return string(AppendStorageKey(make([]byte, 0, 64+len(prefix)+min(len(h.Key), 2*maxRawKey)), prefix, h))
}

// AppendStorageKey appends StorageKey(prefix, h) to b.
func AppendStorageKey(b []byte, prefix string, h Hit) []byte {
	return appendStorageKey(b, prefix, &h, fnv64(h.Key))
}

// appendStorageKey is AppendStorageKey with the tag hash fnv64(h.Key) already computed.
func appendStorageKey(b []byte, prefix string, h *Hit, tag uint64) []byte {
	b = appendPrefix(b, prefix)
	b = append(b, '{')
	b = appendHex64(b, tag)
	b = append(b, "}:"...)
	b = append(b, algorithmCode(h.Limit.Algorithm)...)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(h.Limit.Window/1e6), 10)
	b = append(b, ':')
	if len(h.Key) <= maxRawKey && !strings.HasPrefix(h.Key, "h:") {
		return append(b, h.Key...)
	}
	sum := sha256.Sum256([]byte(h.Key))
	b = append(b, "h:"...)
	return hex.AppendEncode(b, sum[:])
}

func appendPrefix(b []byte, prefix string) []byte {
	if len(prefix) > MaxPrefixLen {
		b = appendPrefix(b, prefix[:47])
		b = append(b, '~')
		return appendHex64(b, fnv64(prefix))
	}
	for i := 0; i < len(prefix); i++ {
		switch c := prefix[i]; c {
		case '{':
			b = append(b, '(')
		case '}':
			b = append(b, ')')
		default:
			b = append(b, c)
		}
	}
	return b
}

func appendHex64(b []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, digits[(v>>uint(shift))&0xf])
	}
	return b
}
