package audit

import "context"

// Search answers f from PostgreSQL when the recorder has a database, else from the in-memory ring of recent
// events (the fleet's, when a Redis stream feeds it), newest first, with the same filters.
func (r *Recorder) Search(ctx context.Context, f Filter) ([]Event, error) {
	if r.db != nil {
		return r.Query(ctx, f)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultQueryLimit
	}
	limit = min(limit, MaxQueryLimit)
	recent := r.Recent(len(r.hub.ring)) // the ring's length is fixed at New
	out := make([]Event, 0, min(limit, len(recent)))
	for i := len(recent) - 1; i >= 0 && len(out) < limit; i-- {
		if e := recent[i]; f.matches(&e) {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *Filter) matches(e *Event) bool {
	return (f.Since.IsZero() || !e.Time.Before(f.Since)) &&
		(f.Until.IsZero() || e.Time.Before(f.Until)) &&
		(f.Domain == "" || e.Domain == f.Domain) &&
		(f.Rule == "" || e.Rule == f.Rule) &&
		(f.Client == "" || e.ClientIP == f.Client) &&
		(f.Kind == "" || e.Kind == f.Kind)
}
