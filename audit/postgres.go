package audit

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/floodgate/floodgate/internal/jsonx"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Query limits.
const (
	DefaultQueryLimit = 1000
	MaxQueryLimit     = 10000
)

// Migrate applies the embedded migrations (audit/migrations/*.sql) that the database has not seen, in
// name order, under an advisory lock; running it again changes nothing. The pipeline calls it before its
// first write; call it yourself to fail fast at start.
func (r *Recorder) Migrate(ctx context.Context) error {
	if r.db == nil {
		return errors.New("audit: no database")
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	slices.Sort(names)
	tx, err := r.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("audit migrate: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(7242031)`); err != nil {
		return fmt.Errorf("audit migrate lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS audit_migrations (
		name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("audit migrate: %w", err)
	}
	for _, name := range names {
		var done bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM audit_migrations WHERE name = $1)`, name).Scan(&done); err != nil {
			return fmt.Errorf("audit migrate %s: %w", name, err)
		}
		if done {
			continue
		}
		sql, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, string(sql)); err != nil {
			return fmt.Errorf("audit migrate %s: %w", name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO audit_migrations (name) VALUES ($1)`, name); err != nil {
			return fmt.Errorf("audit migrate %s: %w", name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("audit migrate commit: %w", err)
	}
	r.migrated.Store(true)
	return nil
}

// insertSQL writes a batch as arrays in one statement; ON CONFLICT makes a retried batch harmless.
const insertSQL = `INSERT INTO audit_events (id, time, kind, service, domain, rule, entries, client_ip, proxy_ip,
	method, host, path, limit_name, limit_requests, limit_window_ms, algorithm, remaining, retry_after_ms, replica,
	config_version, shadow, degraded, change)
SELECT id, time, kind, service, domain, rule, entries::jsonb, client_ip, proxy_ip, method, host, path, limit_name,
	limit_requests, limit_window_ms, algorithm, remaining, retry_after_ms, replica, config_version, shadow, degraded,
	NULLIF(change, '')::jsonb
FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
	$9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::int8[], $15::int8[], $16::text[], $17::int8[],
	$18::int8[], $19::text[], $20::int8[], $21::bool[], $22::bool[], $23::text[])
	AS u(id, time, kind, service, domain, rule, entries, client_ip, proxy_ip, method, host, path, limit_name,
	limit_requests, limit_window_ms, algorithm, remaining, retry_after_ms, replica, config_version, shadow, degraded,
	change)
ON CONFLICT (id) DO NOTHING`

// batchBufs holds the buffers a batch is encoded into (COPY rows, stream entries), reused from batch to
// batch: at thousands of events per second, fresh ones were most of the pipeline's garbage.
var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512<<10); return &b }}

// copySQL writes a batch in COPY's text format (see appendCopyRow for the column order).
const copySQL = `COPY audit_events (id, time, kind, service, domain, rule, entries, client_ip, proxy_ip, method, host,
	path, limit_name, limit_requests, limit_window_ms, algorithm, remaining, retry_after_ms, replica, config_version,
	shadow, degraded, change) FROM STDIN`

// writePostgres writes one batch with COPY (the cheapest path for PostgreSQL and for this process: the rows
// are appended as text, no per-value encoding plans), applying the migrations first if they have not been
// yet. COPY is all or nothing; should a retried batch find some of its rows already stored (the first
// attempt committed but its answer was lost), the batch is written again with the idempotent INSERT … ON
// CONFLICT DO NOTHING.
func (r *Recorder) writePostgres(ctx context.Context, events []*Event) error {
	if !r.migrated.Load() {
		if err := r.Migrate(ctx); err != nil {
			return err
		}
	}
	bp := batchBufs.Get().(*[]byte)
	defer batchBufs.Put(bp)
	buf := (*bp)[:0]
	var scratch []byte
	for i, e := range events {
		buf, scratch = appendCopyRow(buf, scratch, e)
		if (i+1)%(4*yieldEvery) == 0 {
			runtime.Gosched() // see yieldEvery
		}
	}
	*bp = buf[:0] // kept for the next batch (CopyFrom has read it when it returns)
	conn, err := r.db.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("audit copy %d events: %w", len(events), err)
	}
	_, err = conn.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(buf), copySQL)
	conn.Release()
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "23505": // unique_violation
		return r.insertPostgres(ctx, events)
	case isDataError(err):
		return r.isolatePoison(ctx, events, err)
	case err != nil:
		return fmt.Errorf("audit copy %d events: %w", len(events), err)
	}
	return nil
}

// isDataError reports whether PostgreSQL refused the data itself (SQLSTATE class 22, data exception, e.g.
// a value it cannot store): retrying the same batch would fail forever.
func isDataError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "22")
}

// isolatePoison writes a batch PostgreSQL refused one event at a time, so a single event it cannot store
// (which Bound should have made impossible) costs that event — dropped, counted and logged — instead of
// stalling the history behind it forever.
func (r *Recorder) isolatePoison(ctx context.Context, events []*Event, cause error) error {
	r.log.Warn("audit batch refused by PostgreSQL; writing its events one by one", "events", len(events), "err", cause)
	for _, e := range events {
		err := r.insertPostgres(ctx, []*Event{e})
		switch {
		case isDataError(err):
			r.pg.dropped.Add(1)
			r.log.Error("audit event dropped: PostgreSQL cannot store it", "id", e.ID, "kind", e.Kind, "err", err)
		case err != nil:
			return err // an outage: the batcher retries (the events already written are skipped by id)
		}
	}
	return nil
}

// appendCopyRow appends e as one line of COPY's text format: tab-separated columns in copySQL's order,
// \N for NULL, and backslash, newline, carriage return and tab escaped inside values. scratch is reused for
// the entries' JSON and returned.
func appendCopyRow(b, scratch []byte, e *Event) ([]byte, []byte) {
	b = appendCopyText(b, e.ID)
	b = append(b, '\t')
	b = e.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	for _, v := range []string{e.Kind, e.Service, e.Domain, e.Rule} {
		b = append(b, '\t')
		b = appendCopyText(b, v)
	}
	b = append(b, '\t')
	scratch = appendEntriesJSON(scratch[:0], e.Entries)
	b = appendCopyText(b, scratch)
	for _, v := range []string{e.ClientIP, e.ProxyIP, e.Method, e.Host, e.Path, e.Limit.Name} {
		b = append(b, '\t')
		b = appendCopyText(b, v)
	}
	b = append(b, '\t')
	b = strconv.AppendUint(b, e.Limit.Requests, 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, e.Limit.Window.Milliseconds(), 10)
	b = append(b, '\t')
	b = appendCopyText(b, e.Limit.Algorithm)
	b = append(b, '\t')
	b = strconv.AppendUint(b, e.Remaining, 10)
	b = append(b, '\t')
	b = strconv.AppendInt(b, e.RetryAfter.Milliseconds(), 10)
	b = append(b, '\t')
	b = appendCopyText(b, e.Replica)
	b = append(b, '\t')
	b = strconv.AppendUint(b, e.ConfigVersion, 10)
	b = append(b, '\t')
	b = appendCopyBool(b, e.Shadow)
	b = append(b, '\t')
	b = appendCopyBool(b, e.Degraded)
	b = append(b, '\t')
	if e.Change == nil {
		b = append(b, `\N`...)
	} else {
		data, err := json.Marshal(e.Change) // rare: configuration changes only
		if err != nil {
			data = []byte(`{"note":"unencodable change"}`)
		}
		b = appendCopyText(b, data)
	}
	return append(b, '\n'), scratch
}

func appendCopyBool(b []byte, v bool) []byte {
	if v {
		return append(b, 't')
	}
	return append(b, 'f')
}

// appendCopyText appends s escaped for COPY's text format, copying the runs between escapes in bulk.
func appendCopyText[T string | []byte](b []byte, s T) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		var esc byte
		switch s[i] {
		case '\\':
			esc = '\\'
		case '\n':
			esc = 'n'
		case '\r':
			esc = 'r'
		case '\t':
			esc = 't'
		default:
			continue
		}
		b = append(b, s[start:i]...)
		b = append(b, '\\', esc)
		start = i + 1
	}
	return append(b, s[start:]...)
}

// appendEntriesJSON appends entries as the JSON array [{"key":…,"value":…},…] (what json.Marshal gives,
// without its reflection: the audit writes one per event).
func appendEntriesJSON(b []byte, entries []Entry) []byte {
	b = append(b, '[')
	for i, e := range entries {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"key":`...)
		b = jsonx.AppendString(b, e.Key)
		b = append(b, `,"value":`...)
		b = jsonx.AppendString(b, e.Value)
		b = append(b, '}')
	}
	return append(b, ']')
}

// insertPostgres inserts one batch idempotently (rows whose id is already stored are skipped).
func (r *Recorder) insertPostgres(ctx context.Context, events []*Event) error {
	n := len(events)
	var (
		ids, kinds, services, domains, rules, entries, clients, proxies = make([]string, n), make([]string, n),
			make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		methods, hosts, paths, names, algos, replicas = make([]string, n), make([]string, n), make([]string, n),
			make([]string, n), make([]string, n), make([]string, n)
		times                                     = make([]time.Time, n)
		requests, windows, remaining, retry, cfgV = make([]int64, n), make([]int64, n), make([]int64, n),
			make([]int64, n), make([]int64, n)
		shadow, degraded = make([]bool, n), make([]bool, n)
		changes          = make([]string, n)
	)
	for i, e := range events {
		ids[i], times[i], kinds[i], services[i], domains[i], rules[i] = e.ID, e.Time, e.Kind, e.Service, e.Domain, e.Rule
		ents := e.Entries
		if ents == nil {
			ents = []Entry{}
		}
		b, err := json.Marshal(ents)
		if err != nil {
			return err
		}
		entries[i] = string(b)
		clients[i], proxies[i], methods[i], hosts[i], paths[i] = e.ClientIP, e.ProxyIP, e.Method, e.Host, e.Path
		names[i], requests[i], windows[i], algos[i] = e.Limit.Name, int64(e.Limit.Requests), e.Limit.Window.Milliseconds(), e.Limit.Algorithm
		remaining[i], retry[i], replicas[i], cfgV[i] = int64(e.Remaining), e.RetryAfter.Milliseconds(), e.Replica, int64(e.ConfigVersion)
		shadow[i], degraded[i] = e.Shadow, e.Degraded
		if e.Change != nil {
			b, err := json.Marshal(e.Change)
			if err != nil {
				return err
			}
			changes[i] = string(b)
		}
	}
	_, err := r.db.Exec(ctx, insertSQL, ids, times, kinds, services, domains, rules, entries, clients, proxies,
		methods, hosts, paths, names, requests, windows, algos, remaining, retry, replicas, cfgV, shadow, degraded, changes)
	if err != nil {
		return fmt.Errorf("audit insert %d events: %w", n, err)
	}
	return nil
}

// Filter selects events for Query. Zero fields do not filter.
type Filter struct {
	Since, Until time.Time // Since inclusive, Until exclusive
	Domain, Rule string
	Client       string // client IP exactly as recorded
	Kind         string // KindDenial or KindConfigChange
	// Limit caps the rows (default 1000, at most 10,000).
	Limit int
}

// Query reads events from PostgreSQL, newest first.
func (r *Recorder) Query(ctx context.Context, f Filter) ([]Event, error) {
	if r.db == nil {
		return nil, errors.New("audit: no database")
	}
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if !f.Since.IsZero() {
		// An id's time is never before its event's millisecond: the id bound uses the primary key.
		ms := f.Since.UnixMilli()
		if f.Since.Before(time.UnixMilli(ms)) {
			ms-- // a negative, non-whole-millisecond time rounds toward zero
		}
		add("id >= ?", encodeULID(uint64(max(ms, 0)), 0, 0))
		add("time >= ?", f.Since)
	}
	if !f.Until.IsZero() {
		add("time < ?", f.Until)
	}
	if f.Domain != "" {
		add("domain = ?", f.Domain)
	}
	if f.Rule != "" {
		add("rule = ?", f.Rule)
	}
	if f.Client != "" {
		add("client_ip = ?", f.Client)
	}
	if f.Kind != "" {
		add("kind = ?", f.Kind)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultQueryLimit
	}
	limit = min(limit, MaxQueryLimit)
	sql := `SELECT id, time, kind, service, domain, rule, entries::text, client_ip, proxy_ip, method, host, path,
		limit_name, limit_requests, limit_window_ms, algorithm, remaining, retry_after_ms, replica, config_version,
		shadow, degraded, coalesce(change::text, '') FROM audit_events`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY id DESC LIMIT " + strconv.Itoa(limit)
	rows, err := r.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("audit query: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Event, error) {
		var e Event
		var entries, change string
		var requests, window, remaining, retry, cfgV int64
		err := row.Scan(&e.ID, &e.Time, &e.Kind, &e.Service, &e.Domain, &e.Rule, &entries, &e.ClientIP, &e.ProxyIP,
			&e.Method, &e.Host, &e.Path, &e.Limit.Name, &requests, &window, &e.Limit.Algorithm, &remaining, &retry,
			&e.Replica, &cfgV, &e.Shadow, &e.Degraded, &change)
		if err != nil {
			return e, err
		}
		if err := json.Unmarshal([]byte(entries), &e.Entries); err != nil {
			return e, err
		}
		if len(e.Entries) == 0 {
			e.Entries = nil
		}
		if change != "" {
			e.Change = new(Change)
			if err := json.Unmarshal([]byte(change), e.Change); err != nil {
				return e, err
			}
		}
		e.Time = e.Time.UTC()
		e.Limit.Requests, e.Limit.Window = uint64(requests), time.Duration(window)*time.Millisecond
		e.Remaining, e.RetryAfter, e.ConfigVersion = uint64(remaining), time.Duration(retry)*time.Millisecond, uint64(cfgV)
		return e, nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit query: %w", err)
	}
	return out, nil
}
