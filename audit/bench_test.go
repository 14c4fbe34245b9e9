package audit

import (
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/redistest"
)

// BenchmarkObserve measures the decision-path cost of a denial: building the Event and the non-blocking
// send (the pipeline drains the queue meanwhile).
func BenchmarkObserve(b *testing.B) {
	r, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	start(b, r)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		o := denial("198.51.100.7")
		for pb.Next() {
			r.Observe(o)
		}
	})
	b.ReportMetric(float64(r.Dropped()), "dropped")
}

// BenchmarkObserveSerial is Observe from one goroutine, the queue's receiver its only contender.
func BenchmarkObserveSerial(b *testing.B) {
	r, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	start(b, r)
	o := denial("198.51.100.7")
	b.ReportAllocs()
	for b.Loop() {
		r.Observe(o)
	}
	b.ReportMetric(float64(r.Dropped()), "dropped")
}

// BenchmarkPipeline measures the sustained rate of the whole pipeline with every sink (ring, Redis
// stream, PostgreSQL): b.N denials until the last is in PostgreSQL and in the stream.
func BenchmarkPipeline(b *testing.B) {
	db := newTestDB(b)
	rdb := redistest.Client(b)
	r, err := New(Options{DB: db.pool(b, ""), Redis: rdb, StreamPrefix: redistest.Prefix(b)})
	if err != nil {
		b.Fatal(err)
	}
	start(b, r)
	o := denial("198.51.100.7")
	b.ResetTimer()
	began := time.Now()
	for range b.N {
		// Pace the producer by the slowest sink: the rate measured is what every sink sustains.
		for len(r.queue) > cap(r.queue)/2 || r.stream.pending() > 50000 || r.pg.pending() > 50000 {
			time.Sleep(100 * time.Microsecond)
		}
		r.Observe(o)
	}
	for st := r.Stats(); st.PostgresWritten < uint64(b.N) || st.StreamWritten < uint64(b.N); st = r.Stats() {
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(began)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "denials/s")
	if st := r.Stats(); st.Dropped != 0 || st.PostgresDropped != 0 || st.StreamDropped != 0 {
		b.Errorf("got drops %+v, want none", st)
	}
}
