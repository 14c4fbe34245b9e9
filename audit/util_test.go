package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
)

func sha16(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}

func utf8Valid(s string) bool { return utf8.ValidString(s) }

// counterWith returns the collector of metric name with label stage=stage from reg.
func counterWith(t testing.TB, reg *prometheus.Registry, name, stage string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "stage" && l.GetValue() == stage {
					return constCounter(m)
				}
			}
		}
	}
	t.Fatalf("no %s{stage=%q}", name, stage)
	return nil
}

func constCounter(m *dto.Metric) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"},
		func() float64 { return m.GetCounter().GetValue() })
}

// streamEvents decodes every event of the stream key, in order (entries carry batches).
func streamEvents(t testing.TB, rdb redis.UniversalClient, key string) []Event {
	t.Helper()
	msgs, err := rdb.XRange(context.Background(), key, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []Event
	for _, m := range msgs {
		var batch []Event
		if err := json.Unmarshal([]byte(m.Values[fieldBatch].(string)), &batch); err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 || len(batch) > eventsPerEntry {
			t.Fatalf("entry %s holds %d events, want 1..%d", m.ID, len(batch), eventsPerEntry)
		}
		out = append(out, batch...)
	}
	return out
}
