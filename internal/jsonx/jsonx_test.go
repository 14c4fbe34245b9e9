package jsonx

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// Every string, valid UTF-8 or not, comes out as valid JSON that decodes to what encoding/json makes of it.
func TestAppendStringRoundTrip(t *testing.T) {
	cases := []string{"", "plain", `quo"te`, `back\slash`, "nl\ncr\rtab\t", "\x00\x1f\x7f", "<>&", "µs ✓ 😀",
		"bad \xff\xfe byte", "\xed\xa0\x80 surrogate", "\u2028\u2029"}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, rng.IntN(24))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		cases = append(cases, string(b))
	}
	for _, s := range cases {
		got := AppendString([]byte("x"), s)
		if got[0] != 'x' {
			t.Fatalf("%q: prefix lost: %q", s, got)
		}
		var back string
		if err := json.Unmarshal(got[1:], &back); err != nil {
			t.Fatalf("%q: %q is not a JSON string: %v", s, got[1:], err)
		}
		want, _ := json.Marshal(s)
		var wantBack string
		if err := json.Unmarshal(want, &wantBack); err != nil {
			t.Fatal(err)
		}
		if back != wantBack {
			t.Fatalf("%q: decodes to %q, encoding/json's to %q", s, back, wantBack)
		}
	}
}

func BenchmarkAppendString(b *testing.B) {
	buf := make([]byte, 0, 128)
	for b.Loop() {
		buf = AppendString(buf[:0], `rate limit "api_key" exceeded: 100 requests per 1m0s; retry in 12 s`)
	}
}
