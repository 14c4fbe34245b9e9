package dashboard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/floodgate/floodgate/audit"
	"github.com/floodgate/floodgate/auth"
	"github.com/floodgate/floodgate/config"
)

func (a *api) getAuth(w http.ResponseWriter, _ *http.Request) error {
	return writeJSON(w, http.StatusOK, a.o.AuthInfo)
}

// getMe answers who the caller is. A token expiring outside the years 0 to 9999, which RFC 3339 (and so
// JSON) cannot write, has no expires_at: it does not expire in any time the dashboard needs to show.
func (a *api) getMe(w http.ResponseWriter, r *http.Request) error {
	p, _ := auth.FromContext(r.Context())
	exp := p.ExpiresAt
	if y := exp.Year(); y < 0 || y > 9999 {
		exp = time.Time{}
	}
	return writeJSON(w, http.StatusOK, struct {
		Subject   string    `json:"subject"`
		Role      string    `json:"role"`
		Issuer    string    `json:"issuer,omitempty"`
		ExpiresAt time.Time `json:"expires_at,omitzero"`
	}{p.Subject, p.Role.String(), p.Issuer, exp})
}

// statusDoc is GET /api/v1/status: config.Status plus the replicas' agreement.
type statusDoc struct {
	Source      string    `json:"source"`
	Version     uint64    `json:"version,string"`
	Digest      string    `json:"digest"`
	AppliedAt   time.Time `json:"applied_at"`
	LastLoadOK  bool      `json:"last_load_ok"`
	LastError   string    `json:"last_error"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	LastGoodAt  time.Time `json:"last_good_at,omitzero"`
	Reloads     uint64    `json:"reloads"`
	// StoreVersion is the newest stored version (the one replicas should run).
	StoreVersion   uint64 `json:"store_version,string"`
	Replicas       int    `json:"replicas"`
	ReplicasInSync int    `json:"replicas_in_sync"`
	// StoreError is set when the store or the replica registry could not be read (the rest still is).
	StoreError string `json:"store_error,omitempty"`
}

func (a *api) getStatus(w http.ResponseWriter, r *http.Request) error {
	adm, err := a.admin()
	if err != nil {
		return err
	}
	st := adm.Status()
	doc := statusDoc{Source: st.Source, Version: st.Version, Digest: st.Digest, AppliedAt: st.AppliedAt,
		LastLoadOK: st.LastLoadOK, LastError: st.LastError, LastErrorAt: st.LastErrorAt, LastGoodAt: st.LastGoodAt,
		Reloads: st.Reloads}
	current, replicas, err := a.replicas(r.Context(), adm)
	doc.StoreVersion = current
	if err != nil {
		doc.StoreError = err.Error()
	}
	for _, rp := range replicas {
		doc.Replicas++
		if rp.InSync {
			doc.ReplicasInSync++
		}
	}
	setETag(w, st.Version)
	return writeJSON(w, http.StatusOK, doc)
}

// replicaView is a replica's report and whether it runs the store's current version.
type replicaView struct {
	config.ReplicaStatus
	InSync bool `json:"in_sync"`
}

// replicas returns the store's current version and the live replicas. On a store error the running
// snapshot's version stands in for the current one.
func (a *api) replicas(ctx context.Context, adm LimitsAdmin) (uint64, []replicaView, error) {
	current := adm.Snapshot().Info().Version
	cur, curErr := adm.Store().Current(ctx)
	if curErr == nil {
		current = cur.Version
	}
	list, err := adm.Replicas(ctx)
	if err != nil {
		return current, nil, fmt.Errorf("list replicas: %w", err)
	}
	out := make([]replicaView, 0, len(list))
	for _, rp := range list {
		out = append(out, replicaView{ReplicaStatus: rp, InSync: rp.Version == current && rp.LastError == ""})
	}
	if curErr != nil {
		return current, out, fmt.Errorf("read the current version: %w", curErr)
	}
	return current, out, nil
}

func (a *api) getReplicas(w http.ResponseWriter, r *http.Request) error {
	adm, err := a.admin()
	if err != nil {
		return err
	}
	current, list, err := a.replicas(r.Context(), adm)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, struct {
		CurrentVersion uint64        `json:"current_version,string"`
		Replicas       []replicaView `json:"replicas"`
	}{current, list})
}

// usageRequest is the body of POST /api/v1/usage and /usage/reset.
type usageRequest struct {
	Domain  string `json:"domain"`
	Entries []struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	} `json:"entries"`
}

// usageQuery reads and checks a usage request.
func (a *api) usageQuery(w http.ResponseWriter, r *http.Request) (UsageInspector, string, []config.Entry, error) {
	if a.o.Usage == nil {
		return nil, "", nil, unavailable("usage inspection is not configured on this server")
	}
	body, _, err := readBody(w, r, mediaJSON)
	if err != nil {
		return nil, "", nil, err
	}
	var req usageRequest
	if err := decodeJSON(body, &req); err != nil {
		return nil, "", nil, err
	}
	if req.Domain == "" {
		return nil, "", nil, badRequest(`domain is required: {"domain": "api", "entries": [{"key": "user", "value": "u1"}]}`)
	}
	if len(req.Entries) == 0 || len(req.Entries) > maxEntries {
		return nil, "", nil, badRequest("entries must hold 1 to %d descriptor entries, got %d", maxEntries, len(req.Entries))
	}
	entries := make([]config.Entry, 0, len(req.Entries))
	for i, e := range req.Entries {
		if e.Key == "" {
			return nil, "", nil, badRequest("entries[%d].key must not be empty", i)
		}
		entries = append(entries, config.Entry{Key: e.Key, Value: e.Value})
	}
	if adm, err := a.admin(); err == nil && !adm.Snapshot().HasDomain(req.Domain) {
		return nil, "", nil, notFound(fmt.Sprintf("no domain %q in the limits", req.Domain))
	}
	return a.o.Usage, req.Domain, entries, nil
}

func (a *api) postUsage(w http.ResponseWriter, r *http.Request) error {
	ui, domain, entries, err := a.usageQuery(w, r)
	if err != nil {
		return err
	}
	us, err := ui.Usage(r.Context(), domain, entries)
	if err != nil {
		return usageError("read usage", domain, err)
	}
	return writeJSON(w, http.StatusOK, struct {
		Usage []Usage `json:"usage"`
	}{nonNilUsage(us)})
}

// resetUsage deletes a descriptor's counters; a dry run reports what it would reset.
func (a *api) resetUsage(w http.ResponseWriter, r *http.Request) error {
	dry, err := dryRun(r)
	if err != nil {
		return err
	}
	ui, domain, entries, err := a.usageQuery(w, r)
	if err != nil {
		return err
	}
	if dry {
		us, err := ui.Usage(r.Context(), domain, entries)
		if err != nil {
			return usageError("read usage", domain, err)
		}
		return writeJSON(w, http.StatusOK, struct {
			DryRun bool    `json:"dry_run"`
			Reset  []Usage `json:"reset"`
		}{true, nonNilUsage(us)})
	}
	us, err := ui.ResetUsage(r.Context(), domain, entries)
	if err != nil {
		return usageError("reset usage", domain, err)
	}
	var version uint64
	if adm, err := a.admin(); err == nil {
		version = adm.Snapshot().Info().Version
	}
	parts := make([]string, 0, len(entries))
	for _, e := range entries {
		parts = append(parts, e.Key+"="+e.Value)
	}
	summary := fmt.Sprintf("reset counters of %s (%s)", domain, strings.Join(parts, ", "))
	for _, u := range us {
		summary += fmt.Sprintf("\n%s: %d of %d used", u.Limit, u.Used, u.Requests)
	}
	a.record(r, audit.Change{Action: "reset_usage", VersionBefore: version, VersionAfter: version, Summary: summary}, nil)
	p, _ := auth.FromContext(r.Context())
	a.log.Info("usage reset", "actor", p.Subject, "remote", remoteIP(r), "domain", domain, "limits", len(us))
	return writeJSON(w, http.StatusOK, struct {
		Reset []Usage `json:"reset"`
	}{nonNilUsage(us)})
}

// usageError answers a UsageInspector's error: 404 when no rule matches the descriptor, 400 when the
// descriptor is refused (the inspector's text says why), else the server's failure (503, logged).
func usageError(op, domain string, err error) error {
	switch {
	case errors.Is(err, ErrNoRule):
		return notFound(fmt.Sprintf("no rule of domain %s matches the descriptor", quoted(domain)))
	case errors.Is(err, ErrInvalidDescriptor):
		return badRequest("%s", clip(err.Error(), 200))
	}
	return fmt.Errorf("%s: %w", op, err)
}

func nonNilUsage(us []Usage) []Usage {
	if us == nil {
		return []Usage{}
	}
	return us
}

// queryValueProblem returns why a query parameter's value is refused, or "": longer than maxQueryValue
// bytes, not UTF-8, or holding a control character (PostgreSQL refuses NUL in text, and none of these can
// match a stored value).
func queryValueProblem(v string) string {
	switch {
	case len(v) > maxQueryValue:
		return fmt.Sprintf("is %d bytes long; at most %d", len(v), maxQueryValue)
	case !utf8.ValidString(v):
		return "must be UTF-8"
	}
	for i := 0; i < len(v); i++ {
		if b := v[i]; b < 0x20 || b == 0x7f {
			return fmt.Sprintf("must not contain control characters (%#02x at byte %d)", b, i)
		}
	}
	return ""
}

// getAudit searches the audit trail: PostgreSQL when configured, else this replica's recent events.
func (a *api) getAudit(w http.ResponseWriter, r *http.Request) error {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return badRequest("malformed query string: %v", err)
	}
	known := []string{"kind", "rule", "client", "domain", "since", "until", "limit"}
	for name, vs := range q {
		if !slices.Contains(known, name) {
			return badRequest("unknown parameter %q; the filters are %s", name[:min(len(name), 64)], strings.Join(known, ", "))
		}
		if len(vs) > 1 {
			return badRequest("%s given %d times; give it once", name, len(vs))
		}
	}
	for _, name := range known {
		for _, v := range q[name] {
			if why := queryValueProblem(v); why != "" {
				return badRequest("%s %s", name, why)
			}
		}
	}
	f := audit.Filter{Kind: q.Get("kind"), Rule: q.Get("rule"), Client: q.Get("client"), Domain: q.Get("domain"), Limit: 100}
	if f.Kind != "" && f.Kind != audit.KindDenial && f.Kind != audit.KindConfigChange {
		return badRequest("kind must be %s or %s, got %q", audit.KindDenial, audit.KindConfigChange, f.Kind)
	}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(t.name); v != "" {
			tm, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return badRequest("%s must be an RFC 3339 time such as 2026-12-03T10:00:00Z, got %q", t.name, v)
			}
			*t.dst = tm
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxAuditLimit {
			return badRequest("limit must be a whole number from 1 to %d, got %q", maxAuditLimit, v)
		}
		f.Limit = n
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Since.After(f.Until) {
		return badRequest("since (%s) is after until (%s)", f.Since.Format(time.RFC3339Nano), f.Until.Format(time.RFC3339Nano))
	}
	var events []audit.Event
	if a.o.AuditQuery != nil {
		var err error
		if events, err = a.o.AuditQuery.Query(r.Context(), f); err != nil {
			return fmt.Errorf("query the audit trail: %w", err)
		}
	} else {
		events = recentMatching(a.o.Audit.Recent(maxAuditLimit*10), f)
	}
	if events == nil {
		events = []audit.Event{}
	}
	return writeJSON(w, http.StatusOK, struct {
		Events []audit.Event `json:"events"`
	}{events})
}

// recentMatching filters the in-memory recent events (oldest first) as Query would: newest first, at
// most f.Limit.
func recentMatching(recent []audit.Event, f audit.Filter) []audit.Event {
	var out []audit.Event
	for _, e := range slices.Backward(recent) {
		if len(out) >= f.Limit {
			break
		}
		if f.Kind != "" && e.Kind != f.Kind || f.Rule != "" && e.Rule != f.Rule || f.Client != "" && e.ClientIP != f.Client ||
			f.Domain != "" && e.Domain != f.Domain || !f.Since.IsZero() && e.Time.Before(f.Since) ||
			!f.Until.IsZero() && !e.Time.Before(f.Until) {
			continue
		}
		out = append(out, e)
	}
	return out
}
