package audit

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The hand-written event JSON decodes to exactly what encoding/json's does, for events with odd values and
// every optional field present or absent.
func TestEventJSONMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	odd := []string{"", "plain", `quote"s`, `back\slash`, "tab\tnl\ncr\r", "ctl\x01\x1f", "<html>&amp;", "émoji 🚦", "\u2028sep", strings.Repeat("x", 300)}
	pick := func() string { return Bound(odd[rng.IntN(len(odd))]) }
	for i := range 2000 {
		e := &Event{ID: pick(), Time: time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).UTC(), Kind: KindDenial, Service: pick(),
			Domain: pick(), Rule: pick(), ClientIP: pick(), ProxyIP: pick(), Method: pick(), Host: pick(), Path: pick(),
			Limit:     Limit{Name: pick(), Requests: rng.Uint64(), Window: time.Duration(rng.Int64()), Algorithm: pick()},
			Remaining: rng.Uint64(), RetryAfter: time.Duration(rng.Int64N(1e12)), Replica: pick(), ConfigVersion: rng.Uint64(),
			Shadow: rng.IntN(2) == 0, Degraded: rng.IntN(2) == 0}
		for range rng.IntN(3) {
			e.Entries = append(e.Entries, Entry{Key: pick(), Value: pick()})
		}
		if i%7 == 0 {
			e.Kind = KindConfigChange
			e.Change = &Change{Actor: pick(), Action: "patch", VersionBefore: 1, VersionAfter: 2, Summary: pick(),
				Diff: json.RawMessage(`[{"op":"change"}]`)}
		}
		std, err := json.Marshal([]*Event{e})
		if err != nil {
			t.Fatal(err)
		}
		ours := appendEventsJSON(nil, []*Event{e})
		var want, got []Event
		if err := json.Unmarshal(std, &want); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(ours, &got); err != nil {
			t.Fatalf("our JSON does not decode: %v\n%s", err, ours)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("event %d (-encoding/json +ours):\n%s\nours: %s", i, diff, ours)
		}
	}
}

func BenchmarkEventsJSON(b *testing.B) {
	e := &Event{ID: "01JAAAAAAAAAAAAAAAAAAAAAA1", Time: time.Now(), Kind: KindDenial, Service: "ratelimit", Domain: "api",
		Rule: "api.user", Entries: []Entry{{Key: "user", Value: "u1"}}, ClientIP: "192.0.2.1",
		Limit: Limit{Name: "api.user", Requests: 100, Window: time.Minute, Algorithm: "fixed_window"}, Replica: "r1", ConfigVersion: 3}
	batch := make([]*Event, 256)
	for i := range batch {
		batch[i] = e
	}
	b.Run("ours", func(b *testing.B) {
		buf := make([]byte, 0, 1<<17)
		for b.Loop() {
			buf = appendEventsJSON(buf[:0], batch)
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(batch)
		}
	})
}
