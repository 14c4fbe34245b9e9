package dashboard

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/floodgate/floodgate/audit"
	"github.com/floodgate/floodgate/auth"
	"github.com/floodgate/floodgate/config"
)

// admin returns the limits administration, or a 503 problem when none is configured.
func (a *api) admin() (LimitsAdmin, error) {
	if a.o.Admin == nil {
		return nil, unavailable("the limits administration is not configured on this server")
	}
	return a.o.Admin, nil
}

// domainFiles maps the domains of one snapshot to their files.
type domainFiles struct {
	digest string
	files  map[string]config.File
}

// fileOf returns the file holding domain in s (the mapping is kept for the running snapshot's digest).
func (a *api) fileOf(s *config.Snapshot, domain string) config.File {
	digest := s.Info().Digest
	df := a.domainFiles.Load()
	if df == nil || df.digest != digest {
		df = &domainFiles{digest: digest, files: make(map[string]config.File, len(s.Files()))}
		for _, f := range s.Files() {
			if d, err := config.DomainOf(f); err == nil {
				df.files[d] = f
			}
		}
		a.domainFiles.Store(df)
	}
	return df.files[domain]
}

// domainView is one domain in GET /api/v1/limits.
type domainView struct {
	Domain    string     `json:"domain"`
	File      string     `json:"file"`
	YAML      string     `json:"yaml"`
	Rules     []RuleView `json:"rules"`
	HTTPRules []HTTPView `json:"http_rules"`
}

type limitsDoc struct {
	Version   uint64       `json:"version,string"`
	Digest    string       `json:"digest"`
	Source    string       `json:"source"`
	Author    string       `json:"author"`
	CreatedAt time.Time    `json:"created_at"`
	LoadedAt  time.Time    `json:"loaded_at"`
	Domains   []domainView `json:"domains"`
}

func (a *api) domainViews(s *config.Snapshot) []domainView {
	view := limitsView(s)
	out := make([]domainView, 0, len(view.Domains))
	for _, d := range view.Domains {
		f := a.fileOf(s, d.Domain)
		out = append(out, domainView{Domain: d.Domain, File: f.Name, YAML: string(f.Data), Rules: d.Rules, HTTPRules: d.HTTPRules})
	}
	return out
}

// writeYAML answers with YAML documents joined as one stream.
func writeYAML(w http.ResponseWriter, files []config.File) error {
	var b bytes.Buffer
	for i, f := range files {
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(f.Data)
		if len(f.Data) > 0 && f.Data[len(f.Data)-1] != '\n' {
			b.WriteByte('\n')
		}
	}
	w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
	_, _ = w.Write(b.Bytes())
	return nil
}

func (a *api) getLimits(w http.ResponseWriter, r *http.Request) error {
	adm, err := a.admin()
	if err != nil {
		return err
	}
	s := adm.Snapshot()
	info := s.Info()
	setETag(w, info.Version)
	w.Header().Set("Vary", "Accept")
	if wantsYAML(r) {
		return writeYAML(w, s.Files())
	}
	return writeJSON(w, http.StatusOK, limitsDoc{Version: info.Version, Digest: info.Digest, Source: info.Source,
		Author: info.Author, CreatedAt: info.CreatedAt, LoadedAt: info.LoadedAt, Domains: a.domainViews(s)})
}

// snapshotDomain returns the running snapshot and the view of one of its domains, or 404.
func (a *api) snapshotDomain(r *http.Request) (*config.Snapshot, domainView, error) {
	adm, err := a.admin()
	if err != nil {
		return nil, domainView{}, err
	}
	s := adm.Snapshot()
	name := r.PathValue("domain")
	for _, d := range a.domainViews(s) {
		if d.Domain == name {
			return s, d, nil
		}
	}
	return nil, domainView{}, notFound(fmt.Sprintf("no domain %q in limits version %d", name, s.Info().Version))
}

func (a *api) getDomain(w http.ResponseWriter, r *http.Request) error {
	s, d, err := a.snapshotDomain(r)
	if err != nil {
		return err
	}
	setETag(w, s.Info().Version)
	w.Header().Set("Vary", "Accept")
	if wantsYAML(r) {
		return writeYAML(w, []config.File{{Name: d.File, Data: []byte(d.YAML)}})
	}
	return writeJSON(w, http.StatusOK, struct {
		Version uint64 `json:"version,string"`
		domainView
	}{s.Info().Version, d})
}

func (a *api) getRule(w http.ResponseWriter, r *http.Request) error {
	s, d, err := a.snapshotDomain(r)
	if err != nil {
		return err
	}
	name := r.PathValue("rule")
	type ruleDoc struct {
		Version uint64 `json:"version,string"`
		Domain  string `json:"domain"`
		Kind    string `json:"kind"` // "rule" or "http_rule"
		Rule    any    `json:"rule"` // RuleView or HTTPView
	}
	doc := ruleDoc{Version: s.Info().Version, Domain: d.Domain}
	if i := slices.IndexFunc(d.Rules, func(v RuleView) bool { return v.Path == name }); i >= 0 {
		doc.Kind, doc.Rule = config.KindRule, d.Rules[i]
	} else if i := slices.IndexFunc(d.HTTPRules, func(v HTTPView) bool {
		return v.Name == name || d.Domain+".http_rules."+v.Name == name
	}); i >= 0 {
		doc.Kind, doc.Rule = config.KindHTTPRule, d.HTTPRules[i]
	} else {
		return notFound(fmt.Sprintf("no rule %q in domain %q (version %d)", name, d.Domain, s.Info().Version))
	}
	setETag(w, s.Info().Version)
	return writeJSON(w, http.StatusOK, doc)
}

// edit computes the new files from the current revision's.
type edit func(base config.Revision) ([]config.File, error)

// writeResult is the answer to a write that was stored.
type writeResult struct {
	Version uint64          `json:"version,string"`
	Changes []config.Change `json:"changes"`
	Summary string          `json:"summary"`
}

// dryRunResult is the answer to ?dry_run=true: nothing was stored.
type dryRunResult struct {
	DryRun      bool            `json:"dry_run"`
	Valid       bool            `json:"valid"`
	BaseVersion uint64          `json:"base_version,string"`
	Changes     []config.Change `json:"changes"`
	Summary     string          `json:"summary"`
}

// write applies one change of the limits: it reads the store's current revision, checks If-Match against
// it (412 when stale), computes the new files with ed and either answers the diff (dry run) or stores them
// expecting that revision. This replica's writes take turns (a.writing); a race lost to another replica's
// writer is retried when the request had no If-Match (the edit is then applied to whatever is current,
// after a short jittered wait, up to writeAttempts times within writeRetryFor), else answered 409. A write
// that changes nothing stores nothing. Every stored change is recorded in the audit trail and logged.
func (a *api) write(w http.ResponseWriter, r *http.Request, action, source, message string, ed edit) error {
	adm, err := a.admin()
	if err != nil {
		return err
	}
	versions, pinned, err := ifMatch(r)
	if err != nil {
		return err
	}
	dry, err := dryRun(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	p, _ := auth.FromContext(ctx)
	if !dry {
		select {
		case a.writing <- struct{}{}:
			defer func() { <-a.writing }()
		case <-ctx.Done():
			return fmt.Errorf("wait for this replica's other writes: %w", context.Cause(ctx))
		}
	}
	start := time.Now()
	for attempt := 1; ; attempt++ {
		base, err := adm.Store().Current(ctx)
		if err != nil {
			return fmt.Errorf("read the current limits: %w", err)
		}
		if pinned && !slices.Contains(versions, base.Version) {
			return preconditionFailed(w, versions, base.Version)
		}
		files, err := ed(base)
		if err != nil {
			return err
		}
		before := a.compiled(adm, base)
		if dry {
			after, err := config.ParseFiles(files...)
			if err != nil {
				return err
			}
			cs := nonNil(config.Diff(before, after))
			setETag(w, base.Version)
			return writeJSON(w, http.StatusOK, dryRunResult{DryRun: true, Valid: true, BaseVersion: base.Version,
				Changes: cs, Summary: config.SummaryText(cs)})
		}
		if config.DigestFiles(files) == config.DigestFiles(base.Files) {
			setETag(w, base.Version)
			return writeJSON(w, http.StatusOK, writeResult{Version: base.Version, Changes: []config.Change{}})
		}
		rev, after, err := adm.Update(ctx, base.Version, files, config.Revision{Author: p.Subject, Remote: remoteIP(r),
			Source: source, Message: message})
		if errors.Is(err, config.ErrConflict) && !pinned && attempt < writeAttempts && time.Since(start) < writeRetryFor {
			if err := retryWait(ctx, attempt); err != nil {
				return err
			}
			continue
		}
		if errors.Is(err, config.ErrConflict) {
			setETag(w, base.Version)
			if cur, cerr := adm.Store().Current(ctx); cerr == nil {
				detail := fmt.Sprintf("the limits changed meanwhile (now version %d); reload and try again", cur.Version)
				if !pinned {
					detail = fmt.Sprintf("the limits kept changing while this write was retried (%d attempts in %s; now version %d); try again",
						attempt, time.Since(start).Round(time.Millisecond), cur.Version)
				}
				return &problem{Status: http.StatusConflict, slug: "conflict", CurrentVersion: strconv.FormatUint(cur.Version, 10),
					Detail: detail}
			}
		}
		if err != nil {
			return err
		}
		cs := nonNil(config.Diff(before, after))
		summary := config.SummaryText(cs)
		a.record(r, audit.Change{Action: action, VersionBefore: base.Version, VersionAfter: rev.Version, Summary: summary}, cs)
		a.log.Info("limits changed", "action", action, "actor", p.Subject, "remote", remoteIP(r),
			"version_before", base.Version, "version_after", rev.Version, "changes", len(cs))
		setETag(w, rev.Version)
		return writeJSON(w, http.StatusOK, writeResult{Version: rev.Version, Changes: cs, Summary: summary})
	}
}

// retryWait waits before retry number attempt of a write that lost a race: writeBackoff doubled per
// attempt up to writeBackoffMax, half of it random. It returns early with ctx's error.
func retryWait(ctx context.Context, attempt int) error {
	d := min(writeBackoff<<min(attempt-1, 16), writeBackoffMax)
	d = d/2 + rand.N(d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("retry the write: %w", context.Cause(ctx))
	case <-t.C:
		return nil
	}
}

// record puts a change into the audit trail with the request's principal and address.
func (a *api) record(r *http.Request, c audit.Change, cs []config.Change) {
	if a.o.Changes == nil {
		return
	}
	p, _ := auth.FromContext(r.Context())
	c.Actor, c.Remote = p.Subject, remoteIP(r)
	if cs != nil {
		c.Diff, _ = json.Marshal(cs)
	}
	a.o.Changes.RecordChange(c)
}

func nonNil(cs []config.Change) []config.Change {
	if cs == nil {
		return []config.Change{}
	}
	return cs
}

// compiled returns the snapshot of rev: the running one when it is that version, else rev compiled (nil,
// an empty document for Diff, should a stored version not compile).
func (a *api) compiled(adm LimitsAdmin, rev config.Revision) *config.Snapshot {
	if s := adm.Snapshot(); s != nil && s.Info().Version == rev.Version && s.Info().Digest == config.DigestFiles(rev.Files) {
		return s
	}
	s, err := config.ParseFiles(rev.Files...)
	if err != nil {
		return nil
	}
	return s
}

// putLimits replaces the whole document: {"domains": {"<domain>": "<yaml>" or {JSON object}}} or a YAML
// stream with one domain per document.
func (a *api) putLimits(w http.ResponseWriter, r *http.Request) error {
	body, mt, err := readBody(w, r, mediaJSON, mediaYAML)
	if err != nil {
		return err
	}
	var docs []domainDoc
	if mt == mediaJSON {
		docs, err = jsonDomains(body)
	} else {
		docs, err = yamlDomains(body)
	}
	if err != nil {
		return err
	}
	return a.write(w, r, "replace", config.SourceAPI, "replace all domains", func(base config.Revision) ([]config.File, error) {
		return replaceAll(base.Files, docs)
	})
}

// domainDoc is one domain's document of a whole-document PUT.
type domainDoc struct {
	domain string
	data   []byte
	name   string // for errors: "document N" of a YAML stream, else empty
}

// reservedDomain returns the error for a domain the API refuses to create because a route under
// /api/v1/limits/ has its name, so that GET /api/v1/limits/{domain} could not read it (file names the
// error's file), or nil.
func reservedDomain(domain, file string) *config.Error {
	switch domain {
	case "history", "rollback":
	default:
		return nil
	}
	return &config.Error{File: file, Path: "domain", Reason: fmt.Sprintf(
		"%q is reserved: /api/v1/limits/%s is an API route, so the domain could not be read there; name the domain otherwise", domain, domain)}
}

func jsonDomains(body []byte) ([]domainDoc, error) {
	var req struct {
		Domains map[string]json.RawMessage `json:"domains"`
	}
	if err := decodeJSON(body, &req); err != nil {
		return nil, err
	}
	if len(req.Domains) == 0 {
		return nil, badRequest(`the body names no domain; want {"domains": {"<domain>": "<yaml>"}}`)
	}
	names := make([]string, 0, len(req.Domains))
	for d := range req.Domains {
		names = append(names, d)
	}
	slices.Sort(names)
	docs := make([]domainDoc, 0, len(names))
	for _, d := range names {
		raw := bytes.TrimSpace(req.Domains[d])
		switch {
		case len(raw) > 0 && raw[0] == '"':
			var text string
			if err := json.Unmarshal(raw, &text); err != nil {
				return nil, badRequest("domains.%s: %v", clip(d, maxEchoed), err)
			}
			docs = append(docs, domainDoc{domain: d, data: []byte(text)})
		case len(raw) > 0 && raw[0] == '{':
			docs = append(docs, domainDoc{domain: d, data: raw})
		default:
			return nil, badRequest("domains.%s: want the domain's YAML as a string, or its document as a JSON object", clip(d, maxEchoed))
		}
	}
	return docs, nil
}

// yamlDomains splits a YAML stream into its documents ("---" lines) and reads each one's domain.
// Documents holding only comments or nothing are skipped.
func yamlDomains(body []byte) ([]domainDoc, error) {
	var parts [][]byte
	var cur bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), maxBody+1)
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.Equal(bytes.TrimRight(line, " \t\r"), []byte("---")) || bytes.HasPrefix(line, []byte("--- ")) || bytes.HasPrefix(line, []byte("---\t")) {
			parts = append(parts, bytes.Clone(cur.Bytes()))
			cur.Reset()
			if rest := bytes.TrimSpace(line[3:]); len(rest) > 0 && rest[0] != '#' {
				cur.Write(rest)
				cur.WriteByte('\n')
			}
			continue
		}
		cur.Write(line)
		cur.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, badRequest("read YAML stream: %v", err)
	}
	parts = append(parts, cur.Bytes())
	var docs []domainDoc
	var errs config.Errors
	for i, p := range parts {
		if onlyComments(p) {
			continue
		}
		name := "document " + strconv.Itoa(i+1)
		d, err := config.DomainOf(config.File{Name: name, Data: p})
		if err != nil {
			errs = append(errs, configErrors(err)...)
			continue
		}
		if j := slices.IndexFunc(docs, func(x domainDoc) bool { return x.domain == d }); j >= 0 {
			errs = append(errs, &config.Error{File: name, Path: "domain", Reason: fmt.Sprintf("domain %q is already defined in an earlier document", d)})
			continue
		}
		docs = append(docs, domainDoc{domain: d, data: p, name: name})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if len(docs) == 0 {
		return nil, badRequest("the YAML stream holds no document; want one document per domain, separated by ---")
	}
	return docs, nil
}

// onlyComments reports whether a YAML document holds nothing but blank and comment lines.
func onlyComments(p []byte) bool {
	for line := range bytes.SplitSeq(p, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' && !bytes.Equal(t, []byte("...")) {
			return false
		}
	}
	return true
}

// replaceAll builds the new document from docs, keeping the file names of the domains base already has.
func replaceAll(base []config.File, docs []domainDoc) ([]config.File, error) {
	names := make(map[string]string, len(base))
	for _, f := range base {
		if d, err := config.DomainOf(f); err == nil {
			names[d] = f.Name
		}
	}
	files := make([]config.File, 0, len(docs))
	var errs config.Errors
	for _, d := range docs {
		file := d.name
		if file == "" {
			file = "api/" + d.domain + ".yaml"
		}
		if e := reservedDomain(d.domain, file); e != nil {
			errs = append(errs, e)
			continue
		}
		one, err := config.ReplaceDomain(nil, d.domain, d.data) // checks the domain key and name, JSON → YAML
		if err != nil {
			if es := configErrors(err); es != nil {
				errs = append(errs, es...)
				continue
			}
			return nil, err
		}
		if name, ok := names[d.domain]; ok {
			one[0].Name = name
		}
		files = append(files, one[0])
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return files, nil
}

func (a *api) putDomain(w http.ResponseWriter, r *http.Request) error {
	body, mt, err := readBody(w, r, mediaYAML, mediaJSON)
	if err != nil {
		return err
	}
	if mt == mediaJSON {
		if err := checkDuplicateKeys(body, nil); err != nil {
			return err
		}
	}
	domain := r.PathValue("domain")
	if e := reservedDomain(domain, "api/"+domain+".yaml"); e != nil {
		return config.Errors{e}
	}
	return a.write(w, r, "replace", config.SourceAPI, "replace domain "+domain, func(base config.Revision) ([]config.File, error) {
		return config.ReplaceDomain(base.Files, domain, body)
	})
}

func (a *api) deleteDomain(w http.ResponseWriter, r *http.Request) error {
	domain := r.PathValue("domain")
	return a.write(w, r, "delete", config.SourceAPI, "delete domain "+domain, func(base config.Revision) ([]config.File, error) {
		return config.RemoveDomain(base.Files, domain)
	})
}

func (a *api) patchRule(w http.ResponseWriter, r *http.Request) error {
	body, _, err := readBody(w, r, mediaJSON, mediaMergePatch)
	if err != nil {
		return err
	}
	var p config.RulePatch
	if err := decodeJSON(body, &p); err != nil {
		return err
	}
	domain, rule := r.PathValue("domain"), r.PathValue("rule")
	return a.write(w, r, "patch", config.SourceAPI, "patch "+rule, func(base config.Revision) ([]config.File, error) {
		return config.PatchRule(base.Files, domain, rule, p)
	})
}

func (a *api) rollback(w http.ResponseWriter, r *http.Request) error {
	body, _, err := readBody(w, r, mediaJSON)
	if err != nil {
		return err
	}
	var req struct {
		Version jsonVersion `json:"version"`
	}
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	if req.Version == 0 {
		return badRequest(`want {"version": "<the version to restore>"}`)
	}
	adm, err := a.admin()
	if err != nil {
		return err
	}
	v := uint64(req.Version)
	return a.write(w, r, "rollback", config.SourceRollback, "rollback to "+strconv.FormatUint(v, 10), func(config.Revision) ([]config.File, error) {
		old, err := adm.Store().Get(r.Context(), v)
		if err != nil {
			if errors.Is(err, config.ErrNotFound) {
				return nil, notFound(fmt.Sprintf("version %d is not stored (never was, or trimmed from the history)", v))
			}
			return nil, err
		}
		return old.Files, nil
	})
}

// historyEntry is one version in GET /api/v1/limits/history.
type historyEntry struct {
	Version   uint64          `json:"version,string"`
	Author    string          `json:"author"`
	Source    string          `json:"source"`
	Remote    string          `json:"remote"`
	Message   string          `json:"message"`
	CreatedAt time.Time       `json:"created_at"`
	Digest    string          `json:"digest"`
	Changes   []config.Change `json:"changes"` // null when the previous version is no longer stored
	Summary   string          `json:"summary"`
}

func (a *api) getHistory(w http.ResponseWriter, r *http.Request) error {
	adm, err := a.admin()
	if err != nil {
		return err
	}
	n := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			return badRequest("limit must be a whole number from 1 to %d, got %q", maxHistory, v)
		}
		n = min(n, maxHistory)
	}
	revs, err := adm.Store().History(r.Context(), n+1)
	if err != nil {
		return fmt.Errorf("read the limits history: %w", err)
	}
	snaps := make([]*config.Snapshot, len(revs)) // compiled on demand, once
	compile := func(i int) *config.Snapshot {
		if snaps[i] == nil {
			snaps[i] = a.compiled(adm, revs[i])
		}
		return snaps[i]
	}
	out := make([]historyEntry, 0, min(n, len(revs)))
	for i, rev := range revs[:min(n, len(revs))] {
		e := historyEntry{Version: rev.Version, Author: rev.Author, Source: rev.Source, Remote: rev.Remote,
			Message: rev.Message, CreatedAt: rev.CreatedAt, Digest: rev.Digest}
		switch {
		case i+1 < len(revs) && revs[i+1].Version == rev.Version-1:
			e.Changes = a.diffCached(revs[i+1].Digest, rev.Digest, func() []config.Change {
				return config.Diff(compile(i+1), compile(i))
			})
		case rev.Version == 1:
			e.Changes = a.diffCached("", rev.Digest, func() []config.Change { return config.Diff(nil, compile(i)) })
		}
		e.Summary = config.SummaryText(e.Changes)
		out = append(out, e)
	}
	return writeJSON(w, http.StatusOK, out)
}

// diffCached returns the diff between two revisions (by digest), computing it once; revisions never change.
func (a *api) diffCached(before, after string, diff func() []config.Change) []config.Change {
	key := before + ">" + after
	a.mu.Lock()
	cs, ok := a.diffs[key]
	a.mu.Unlock()
	if ok {
		return cs
	}
	cs = nonNil(diff())
	a.mu.Lock()
	if len(a.diffs) >= diffCacheSize {
		clear(a.diffs)
	}
	a.diffs[key] = cs
	a.mu.Unlock()
	return cs
}

func (a *api) getRevision(w http.ResponseWriter, r *http.Request) error {
	adm, err := a.admin()
	if err != nil {
		return err
	}
	s := r.PathValue("version")
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v == 0 {
		return badRequest("version must be a positive whole number, got %q", s)
	}
	rev, err := adm.Store().Get(r.Context(), v)
	if err != nil {
		if errors.Is(err, config.ErrNotFound) {
			return notFound(fmt.Sprintf("version %d is not stored (never was, or trimmed from the history)", v))
		}
		return fmt.Errorf("read limits version %d: %w", v, err)
	}
	setETag(w, rev.Version)
	return writeJSON(w, http.StatusOK, rev)
}
