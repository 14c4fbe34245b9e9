package limiter_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/limiter"
)

var tagRE = regexp.MustCompile(`^\{[0-9a-f]{16}\}:`)

// tagOf returns the hash tag Redis Cluster would use for storage key k built with prefix: the first {...}.
func tagOf(t testing.TB, k, prefix string) string {
	t.Helper()
	rest := strings.TrimPrefix(k, prefix)
	if !tagRE.MatchString(rest) {
		t.Fatalf("key %.80q: no {16 hex} tag right after the prefix", k)
	}
	open := strings.IndexByte(k, '{')
	end := strings.IndexByte(k[open:], '}')
	return k[open+1 : open+end]
}

func TestStorageKey(t *testing.T) {
	l := limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 5, Window: time.Minute}
	part := func(parts ...string) string {
		var b []byte
		for _, p := range parts {
			b = limiter.AppendKeyPart(b, p)
		}
		return string(b)
	}
	if a, b := limiter.StorageKey("fg:", hit(part("a_b", "c"), l, 1)), limiter.StorageKey("fg:", hit(part("a", "b_c"), l, 1)); a == b {
		t.Errorf(`("a_b","c") and ("a","b_c") share the key %q`, a)
	}
	if got, want := limiter.StorageKey("fg:", hit("k", l, 1)), "fg:{"+tagOf(t, limiter.StorageKey("fg:", hit("k", l, 1)), "fg:")+"}:fw:60000:k"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	values := []string{"plain", "{evil}", "}{", "a{b}c{d}", "x\r\ny\x00z", strings.Repeat("x", 8192), "\xff\xfe\xfd", "ключ-😀",
		strings.Repeat("{", 400), "h:" + strings.Repeat("0", 64)}
	tags := map[string]string{}
	for _, v := range values {
		for _, alg := range algorithms {
			for _, prefix := range []string{"fg:", "", "{x}", strings.Repeat("p", 100)} {
				h := hit(v, limiter.Limit{Algorithm: alg, Requests: 1, Window: 1500 * time.Millisecond}, 1)
				k := limiter.StorageKey(prefix, h)
				if len(k) > limiter.MaxKeyLen {
					t.Errorf("value %.20q prefix %.10q: got key length %d, want <= %d", v, prefix, len(k), limiter.MaxKeyLen)
				}
				clean := strings.NewReplacer("{", "(", "}", ")").Replace(prefix)
				if len(prefix) > limiter.MaxPrefixLen {
					clean = k[:strings.IndexByte(k, '{')]
				}
				tag := tagOf(t, k, clean)
				if old, ok := tags[v]; ok && old != tag {
					t.Errorf("value %.20q: tag %s here, %s elsewhere: the tag must depend on the hit key only", v, tag, old)
				}
				tags[v] = tag
			}
		}
	}
	seen := map[string]string{}
	for v, tag := range tags {
		if other, ok := seen[tag]; ok {
			t.Errorf("values %.20q and %.20q share tag %s", v, other, tag)
		}
		seen[tag] = v
	}
	// "h:"-prefixed short keys are hashed, so one cannot alias the hashed form of a long key.
	long := strings.Repeat("z", 400)
	hashed := limiter.StorageKey("", hit(long, l, 1))
	alias := hashed[strings.LastIndex(hashed, ":h:")+1:]
	if limiter.StorageKey("", hit(alias, l, 1))[21:] == hashed[21:] {
		t.Errorf("the short key %q aliases the long key's storage key", alias)
	}
	// Requests is not in the key; algorithm and window are.
	base := limiter.StorageKey("", hit("k", l, 1))
	if limiter.StorageKey("", hit("k", limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 99, Window: time.Minute, Burst: 3}, 1)) != base {
		t.Errorf("changing Requests or Burst changed the key")
	}
	if limiter.StorageKey("", hit("k", limiter.Limit{Algorithm: limiter.SlidingWindow, Requests: 5, Window: time.Minute}, 1)) == base ||
		limiter.StorageKey("", hit("k", limiter.Limit{Algorithm: limiter.FixedWindow, Requests: 5, Window: time.Hour}, 1)) == base {
		t.Errorf("changing the algorithm or window kept the key")
	}
}

func TestKeySlot(t *testing.T) {
	if got := limiter.CRC16([]byte("123456789")); got != 0x31c3 {
		t.Errorf("crc16(123456789): got %#x, want 0x31c3", got)
	}
	// Slots published in the Redis Cluster specification and redis-cli CLUSTER KEYSLOT.
	for key, want := range map[string]uint16{"foo": 12182, "somekey": 11058} {
		if got := limiter.CRC16([]byte(key)) % 16384; got != want {
			t.Errorf("slot(%q): got %d, want %d", key, got, want)
		}
	}
	if limiter.KeySlot("a") == limiter.KeySlot("b") && limiter.KeySlot("b") == limiter.KeySlot("c") {
		t.Errorf("three keys in one slot: the tag does not spread keys")
	}
}

func FuzzStorageKey(f *testing.F) {
	for _, s := range []string{"", "k", "{a}", "}{", strings.Repeat("x", 301), "h:abc", "\x00\r\n"} {
		f.Add(s, "fg:", int64(60000))
	}
	f.Fuzz(func(t *testing.T, key, prefix string, windowMS int64) {
		if windowMS <= 0 || windowMS > 1<<40 {
			windowMS = 1000
		}
		h := hit(key, limiter.Limit{Algorithm: limiter.SlidingWindow, Requests: 1, Window: time.Duration(windowMS) * time.Millisecond}, 1)
		k := limiter.StorageKey(prefix, h)
		if len(k) > limiter.MaxKeyLen {
			t.Fatalf("key length %d above %d", len(k), limiter.MaxKeyLen)
		}
		open := strings.IndexByte(k, '{')
		if open < 0 || open > limiter.MaxPrefixLen || k[open+17] != '}' {
			t.Fatalf("key %.80q: the first {...} is not the 16-hex tag", k)
		}
		other := limiter.StorageKey("other:", hit(key, limiter.Limit{Algorithm: limiter.TokenBucket, Requests: 9, Window: time.Second}, 1))
		if got, want := k[open+1:open+17], other[7:23]; got != want {
			t.Fatalf("tag %s with one prefix and limit, %s with another", got, want)
		}
	})
}
