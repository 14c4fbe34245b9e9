package audit

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/floodgate/floodgate/extauthz"
)

func TestQueryFilters(t *testing.T) {
	db := newTestDB(t)
	base := time.Date(2030, 3, 1, 12, 0, 0, 0, time.UTC)
	now := base
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	r, err := New(Options{DB: db.pool(t, ""), Now: clock, FlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, r)
	give := []struct {
		at             time.Duration
		domain, client string
	}{
		{0, "api", "192.0.2.1"},
		{time.Minute, "api", "192.0.2.2"},
		{2 * time.Minute, "edge", "192.0.2.1"},
		{3 * time.Minute, "api", "192.0.2.1"},
	}
	for _, g := range give {
		mu.Lock()
		now = base.Add(g.at)
		mu.Unlock()
		o := denial(g.client)
		o.Domain = g.domain
		r.Observe(o)
	}
	stop() // flushes
	if got := db.count(t); got != len(give) {
		t.Fatalf("got %d rows, want %d", got, len(give))
	}
	tests := []struct {
		name string
		give Filter
		want []time.Duration // event times, newest first
	}{
		{name: "all", give: Filter{}, want: []time.Duration{3 * time.Minute, 2 * time.Minute, time.Minute, 0}},
		{name: "since", give: Filter{Since: base.Add(time.Minute)}, want: []time.Duration{3 * time.Minute, 2 * time.Minute, time.Minute}},
		{name: "until", give: Filter{Until: base.Add(2 * time.Minute)}, want: []time.Duration{time.Minute, 0}},
		{name: "domain", give: Filter{Domain: "edge"}, want: []time.Duration{2 * time.Minute}},
		{name: "client and since", give: Filter{Client: "192.0.2.1", Since: base.Add(30 * time.Second)},
			want: []time.Duration{3 * time.Minute, 2 * time.Minute}},
		{name: "rule", give: Filter{Rule: "api.user", Limit: 2}, want: []time.Duration{3 * time.Minute, 2 * time.Minute}},
		{name: "no such rule", give: Filter{Rule: "nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := r.Query(context.Background(), tt.give)
			if err != nil {
				t.Fatal(err)
			}
			var got []time.Duration
			for _, e := range rows {
				got = append(got, e.Time.Sub(base))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("times (-want +got):\n%s", diff)
			}
		})
	}
}

// Observe keeps nothing of the Observation: the Service reuses it.
func TestObserveDoesNotRetain(t *testing.T) {
	r, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, r)
	o := denial("192.0.2.9")
	r.Observe(o)
	*o = extauthz.Observation{}
	stop()
	got := r.Recent(1)
	if len(got) != 1 || got[0].ClientIP != "192.0.2.9" || got[0].Rule != "api.user" || got[0].Limit.Requests != 5 {
		t.Errorf("got %+v, want the event of the original observation", got)
	}
}
