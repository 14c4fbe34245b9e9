package audit

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Event kinds.
const (
	KindDenial       = "denial"        // a 429 / OVER_LIMIT, or a shadow would-be denial (Shadow set)
	KindConfigChange = "config_change" // a change of the limits (admin API, rollback, file reload)
)

// MaxValueBytes bounds every request-derived string of an Event (descriptor values, host, path).
const MaxValueBytes = 256

// Entry is one descriptor entry, its value bounded by MaxValueBytes.
type Entry struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Limit describes the quota that denied.
type Limit struct {
	Name      string        `json:"name"`
	Requests  uint64        `json:"requests"`
	Window    time.Duration `json:"window_ns"`
	Algorithm string        `json:"algorithm"`
}

// Event is one audit record. Events are values: the pipeline never mutates one after it is queued.
type Event struct {
	// ID is a 26-character ULID (48-bit Unix milliseconds + 80 random bits, Crockford base32): IDs made by
	// one Recorder sort in the order the pipeline took the events, and sort by time across replicas.
	ID       string    `json:"id"`
	Time     time.Time `json:"time"` // when the decision was observed (replica clock)
	Kind     string    `json:"kind"`
	Service  string    `json:"service"` // "ratelimit" or "authz"
	Domain   string    `json:"domain"`
	Rule     string    `json:"rule"`
	Entries  []Entry   `json:"entries,omitempty"` // descriptor entries, when the observation carries them
	ClientIP string    `json:"client_ip,omitempty"`
	ProxyIP  string    `json:"proxy_ip,omitempty"`
	Method   string    `json:"method,omitempty"` // ext_authz only
	Host     string    `json:"host,omitempty"`
	Path     string    `json:"path,omitempty"`
	Limit    Limit     `json:"limit"`
	// Remaining is what was left of the quota (usually 0); RetryAfter the time until the hit would fit.
	Remaining     uint64        `json:"remaining"`
	RetryAfter    time.Duration `json:"retry_after_ns"`
	Replica       string        `json:"replica"`
	ConfigVersion uint64        `json:"config_version,string"` // a string: JavaScript numbers cannot hold every uint64
	Shadow        bool          `json:"shadow"`                // a would-be denial that did not block
	Degraded      bool          `json:"degraded"`              // decided while the store failed (the local fallback denied)

	// Change is set for KindConfigChange events only.
	Change *Change `json:"change,omitempty"`
}

// MaxDiffBytes bounds the JSON diff kept with a configuration change.
const MaxDiffBytes = 64 << 10

// Change describes one change of the limits: who, from where, which versions, what changed.
type Change struct {
	Actor         string `json:"actor"`            // the token subject ("anonymous" without auth, "file" for a file reload)
	Remote        string `json:"remote,omitempty"` // client address of the API call
	Action        string `json:"action"`           // "replace", "patch", "delete", "rollback", "file_reload"
	VersionBefore uint64 `json:"version_before,string"`
	VersionAfter  uint64 `json:"version_after,string"`
	Summary       string `json:"summary"` // one line per changed rule, e.g. "api.user_vip: 10/minute → 20/minute"
	// Diff is the structured diff (JSON array), cut to MaxDiffBytes (then replaced by a note saying so).
	Diff json.RawMessage `json:"diff,omitempty"`
}

// Bound returns s made safe for the audit trail: invalid UTF-8 bytes and NUL (which PostgreSQL text and
// jsonb refuse) are escaped as \xNN, and a result
// longer than MaxValueBytes is cut (at a rune boundary) and ends with "…sha256:" and the first 16 hex
// digits of the SHA-256 of the original s, so distinct long values stay distinguishable.
func Bound(s string) string {
	clean := utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
	if len(s) <= MaxValueBytes && clean {
		return s
	}
	v := s
	if !clean {
		b := make([]byte, 0, len(s)+8)
		for i := 0; i < len(s); {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 || r == 0 {
				b = append(b, `\x`...)
				b = append(b, hex.EncodeToString([]byte{s[i]})...)
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
		}
		v = string(b)
	}
	if len(v) <= MaxValueBytes {
		return v
	}
	sum := sha256.Sum256([]byte(s))
	suffix := "…sha256:" + hex.EncodeToString(sum[:8])
	cut := MaxValueBytes - len(suffix)
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return v[:cut] + suffix
}

// crockford is the ULID alphabet.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// idGen makes monotonic ULIDs. Not safe for concurrent use: the pipeline goroutine owns it.
type idGen struct {
	lastMS uint64
	hi     uint16 // 80 random bits as hi:lo, incremented within one millisecond
	lo     uint64
}

// next returns an ID strictly greater than every previous one: within one millisecond (or if the clock
// steps back) the random part is incremented instead of redrawn.
func (g *idGen) next(t time.Time) string {
	ms := uint64(t.UnixMilli())
	if ms > g.lastMS {
		g.lastMS = ms
		var b [10]byte
		_, _ = rand.Read(b[:])
		g.hi = binary.BigEndian.Uint16(b[:2]) & 0x7fff // room to increment without overflow
		g.lo = binary.BigEndian.Uint64(b[2:])
	} else {
		g.lo++
		if g.lo == 0 {
			g.hi++
		}
	}
	return encodeULID(g.lastMS, g.hi, g.lo)
}

// encodeULID writes 48 bits of ms and 80 random bits as 26 Crockford base32 digits.
func encodeULID(ms uint64, hi uint16, lo uint64) string {
	var raw [16]byte
	raw[0] = byte(ms >> 40)
	raw[1] = byte(ms >> 32)
	raw[2] = byte(ms >> 24)
	raw[3] = byte(ms >> 16)
	raw[4] = byte(ms >> 8)
	raw[5] = byte(ms)
	binary.BigEndian.PutUint16(raw[6:8], hi)
	binary.BigEndian.PutUint64(raw[8:16], lo)
	var out [26]byte
	// 128 bits as 26 digits of 5 bits, the first digit holding the top 3 bits.
	var acc uint64
	var bits uint
	j := 25
	for i := 15; i >= 0; i-- {
		acc |= uint64(raw[i]) << bits
		bits += 8
		for bits >= 5 && j >= 0 {
			out[j] = crockford[acc&31]
			acc >>= 5
			bits -= 5
			j--
		}
	}
	if j >= 0 {
		out[j] = crockford[acc&31]
	}
	return string(out[:])
}

// ulidTime returns the millisecond time encoded in a ULID made by idGen, or false.
func ulidTime(id string) (time.Time, bool) {
	if len(id) != 26 {
		return time.Time{}, false
	}
	var ms uint64
	for i := 0; i < 10; i++ {
		n := indexCrockford(id[i])
		if n < 0 {
			return time.Time{}, false
		}
		ms = ms<<5 | uint64(n)
	}
	// The first digit holds 3 bits and the next nine 45: the 48 bits of time.
	return time.UnixMilli(int64(ms)), true
}

func indexCrockford(c byte) int {
	for i := 0; i < len(crockford); i++ {
		if crockford[i] == c {
			return i
		}
	}
	return -1
}

// randomReplica returns a random replica id for Options without one.
func randomReplica() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "replica-" + strconv.FormatUint(uint64(binary.BigEndian.Uint32(b[:])), 16)
}
