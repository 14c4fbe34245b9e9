package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/redistest"
)

// A configuration change travels the same way as a denial (ring, Redis stream, PostgreSQL), keeps its
// change record, is filterable by kind and never counts as an offender.
func TestConfigChangeEvents(t *testing.T) {
	db := newTestDB(t)
	rdb := redistest.Client(t)
	prefix := redistest.Prefix(t)
	r, err := New(Options{Replica: "r1", DB: db.pool(t, ""), Redis: rdb, StreamPrefix: prefix, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	// A second replica tailing the same stream sees the change too.
	r2, err := New(Options{Replica: "r2", Redis: redistest.Client(t), StreamPrefix: prefix, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	start(t, r2)
	time.Sleep(200 * time.Millisecond) // let r2's stream reader start at the stream's end

	want := Change{Actor: "alice", Remote: "192.0.2.7", Action: "patch", VersionBefore: 4, VersionAfter: 5,
		Summary: "api.user: 5/minute → 10/minute", Diff: json.RawMessage(`[{"op":"change","path":"api.user"}]`)}
	r.RecordChange(want)
	r.Observe(denial("192.0.2.1"))

	eventually(t, 10*time.Second, "two rows", func() bool { return db.count(t) == 2 })
	rows, err := r.Query(context.Background(), Filter{Kind: KindConfigChange})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 {
		t.Fatalf("got %d config_change rows, want 1", len(rows))
	}
	got := rows[0]
	if got.Kind != KindConfigChange || got.ConfigVersion != 5 || got.Replica != "r1" || got.Change == nil {
		t.Fatalf("got %+v, want a config_change of version 5 by r1 with its change", got)
	}
	// jsonb normalises whitespace; compare the decoded diff.
	var gd, wd any
	_ = json.Unmarshal(got.Change.Diff, &gd)
	_ = json.Unmarshal(want.Diff, &wd)
	if diff := cmp.Diff(wd, gd); diff != "" {
		t.Errorf("diff field (-want +got):\n%s", diff)
	}
	gc, wc := *got.Change, want
	gc.Diff, wc.Diff = nil, nil
	if diff := cmp.Diff(wc, gc); diff != "" {
		t.Errorf("change (-want +got):\n%s", diff)
	}
	denials, err := r.Query(context.Background(), Filter{Kind: KindDenial})
	if err != nil {
		t.Fatal(err)
	}
	if len(denials) != 1 || denials[0].Change != nil {
		t.Errorf("got %d denial rows (change %v), want 1 without a change", len(denials), denials)
	}

	eventually(t, 5*time.Second, "the change on the other replica", func() bool {
		for _, e := range r2.Recent(10) {
			if e.Kind == KindConfigChange && e.Change != nil && e.Change.Actor == "alice" {
				return true
			}
		}
		return false
	})
	if top := r.TopOffenders(time.Minute, 10); len(top.Rules) != 1 {
		t.Errorf("got offender rules %+v, want only the denial's rule", top.Rules)
	}
}

// Without a database, Search filters the in-memory ring, newest first.
func TestSearchWithoutDatabase(t *testing.T) {
	r, err := New(Options{Replica: "r1", Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	r.Observe(denial("192.0.2.1"))
	r.RecordChange(Change{Actor: "bob", Action: "replace", VersionBefore: 1, VersionAfter: 2})
	r.Observe(denial("192.0.2.2"))
	eventually(t, 5*time.Second, "three events", func() bool { return len(r.Recent(10)) == 3 })
	tests := []struct {
		name string
		give Filter
		want []string // kinds/clients, newest first
	}{
		{"all", Filter{}, []string{"192.0.2.2", "bob", "192.0.2.1"}},
		{"changes", Filter{Kind: KindConfigChange}, []string{"bob"}},
		{"denials", Filter{Kind: KindDenial}, []string{"192.0.2.2", "192.0.2.1"}},
		{"client", Filter{Client: "192.0.2.1"}, []string{"192.0.2.1"}},
		{"limit", Filter{Limit: 1}, []string{"192.0.2.2"}},
		{"future", Filter{Since: time.Now().Add(time.Hour)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Search(context.Background(), tt.give)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range got {
				if e.Change != nil {
					names = append(names, e.Change.Actor)
				} else {
					names = append(names, e.ClientIP)
				}
			}
			if diff := cmp.Diff(tt.want, names); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// Entries written by a replica of the previous format (one JSON event in field "e") are still read.
func TestStreamReadsSingleEventEntries(t *testing.T) {
	rdb := redistest.Client(t)
	prefix := redistest.Prefix(t)
	r, err := New(Options{Replica: "new", Redis: rdb, StreamPrefix: prefix, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	time.Sleep(200 * time.Millisecond) // the tailer starts at the stream's end
	old := Event{ID: "01JOLDFORMAT0000000000000", Kind: KindDenial, ClientIP: "192.0.2.99", Rule: "api.user", Replica: "old"}
	data, _ := json.Marshal(old)
	if err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: prefix + "audit",
		Values: []any{fieldReplica, "old", fieldEvent, data}}).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the old-format event", func() bool {
		for _, e := range r.Recent(10) {
			if e.ID == old.ID && e.ClientIP == "192.0.2.99" {
				return true
			}
		}
		return false
	})
}

// A batch written twice (its first commit's answer lost, then retried) stores each event once: COPY
// refuses the duplicate ids and the idempotent INSERT takes over.
func TestPostgresRetryIsIdempotent(t *testing.T) {
	db := newTestDB(t)
	r, err := New(Options{Replica: "r1", DB: db.pool(t, ""), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	ev := func(id string) *Event {
		return &Event{ID: id, Time: now, Kind: KindDenial, Service: "ratelimit", Domain: "api", Rule: "api.user",
			ClientIP: "192.0.2.1", Entries: []Entry{{Key: "user", Value: "u1"}}, Replica: "r1"}
	}
	first := []*Event{ev("01JAAAAAAAAAAAAAAAAAAAAAA1"), ev("01JAAAAAAAAAAAAAAAAAAAAAA2")}
	if err := r.writePostgres(ctx, first); err != nil {
		t.Fatal(err)
	}
	retry := append(first, ev("01JAAAAAAAAAAAAAAAAAAAAAA3"))
	if err := r.writePostgres(ctx, retry); err != nil {
		t.Fatalf("retried batch: %v", err)
	}
	if got := db.ids(t); len(got) != 3 {
		t.Errorf("got ids %v, want the 3 distinct events once each", got)
	}
	rows, err := r.Query(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0].Entries[0].Value != "u1" || rows[0].Change != nil {
		t.Errorf("rows: got %+v", rows)
	}
}

// Values with the characters COPY's text format and JSON must escape survive the trip to PostgreSQL
// exactly (after Bound), and the hand-written entries JSON decodes like encoding/json's.
func TestPostgresOddValues(t *testing.T) {
	db := newTestDB(t)
	r, err := New(Options{Replica: "r1", DB: db.pool(t, ""), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	odd := []string{"back\\slash", "tab\there", "new\nline", "cr\rhere", "quote\"d", "nul\x00byte", "bad\xffutf8",
		"émoji 🚦", `\N`, `\.`, "<html>&amp;", "ctl\x01\x1f", strings.Repeat("long", 100)}
	now := time.Now().UTC().Truncate(time.Microsecond)
	var events []*Event
	for i, v := range odd {
		events = append(events, &Event{ID: fmt.Sprintf("01JBBBBBBBBBBBBBBBBBBBBB%02d", i), Time: now, Kind: KindDenial,
			Service: "authz", Domain: Bound(v), Rule: "api.odd", Entries: []Entry{{Key: Bound(v), Value: Bound(v)}},
			ClientIP: "192.0.2.1", Path: Bound(v), Host: Bound(v), Replica: "r1"})
		var viaJSON, viaOurs []Entry
		ours := appendEntriesJSON(nil, events[i].Entries)
		std, _ := json.Marshal(events[i].Entries)
		if err := json.Unmarshal(ours, &viaOurs); err != nil {
			t.Fatalf("%q: our entries JSON %s does not decode: %v", v, ours, err)
		}
		_ = json.Unmarshal(std, &viaJSON)
		if diff := cmp.Diff(viaJSON, viaOurs); diff != "" {
			t.Errorf("%q: entries JSON differs from encoding/json's (-std +ours):\n%s", v, diff)
		}
	}
	if err := r.writePostgres(context.Background(), events); err != nil {
		t.Fatal(err)
	}
	rows, err := r.Query(context.Background(), Filter{Rule: "api.odd"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(odd) {
		t.Fatalf("got %d rows, want %d", len(rows), len(odd))
	}
	for _, got := range rows {
		var want *Event
		for _, e := range events {
			if e.ID == got.ID {
				want = e
			}
		}
		if diff := cmp.Diff(*want, got); diff != "" {
			t.Errorf("row %s (-want +got):\n%s", got.ID, diff)
		}
	}
}

// An event PostgreSQL cannot store (here a NUL that skipped Bound) costs that event only — dropped and
// counted — and never stalls the history behind it.
func TestPostgresPoisonEventIsolated(t *testing.T) {
	db := newTestDB(t)
	r, err := New(Options{Replica: "r1", DB: db.pool(t, ""), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	ev := func(id, domain string) *Event {
		return &Event{ID: id, Time: now, Kind: KindDenial, Service: "ratelimit", Domain: domain, Rule: "api.user", Replica: "r1",
			Entries: []Entry{{Key: "user", Value: domain}}}
	}
	batch := []*Event{ev("01JCCCCCCCCCCCCCCCCCCCCCC1", "ok"), ev("01JCCCCCCCCCCCCCCCCCCCCCC2", "nul\x00here"), ev("01JCCCCCCCCCCCCCCCCCCCCCC3", "ok")}
	if err := r.writePostgres(context.Background(), batch); err != nil {
		t.Fatalf("a batch with one unstorable event: %v, want it written without that event", err)
	}
	if got := db.ids(t); len(got) != 2 {
		t.Errorf("got rows %v, want the 2 storable events", got)
	}
	if got := r.Stats().PostgresDropped; got != 1 {
		t.Errorf("PostgresDropped: got %d, want 1", got)
	}
}
