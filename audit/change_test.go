package audit

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

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
