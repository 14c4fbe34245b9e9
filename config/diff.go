package config

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/floodgate/floodgate/limiter"
)

// Change is one difference between two snapshots, for the admin API's previews, the limits history and the
// audit trail.
type Change struct {
	Op     string `json:"op"` // "add", "remove", "change"
	Domain string `json:"domain"`
	Kind   string `json:"kind"` // "domain", "rule" (a descriptor rule), "http_rule"
	// Path is Rule.Path for a descriptor rule ("api.user_vip"), the name for an HTTP rule, the domain name
	// for a domain.
	Path string `json:"path"`
	// Fields names what differs for Op "change", in the configuration's words: requests_per_unit, unit,
	// unit_multiplier, window, algorithm, burst, limits (their number), name, unlimited, shadow_mode,
	// quota_mode, detailed_metric, share_threshold, replaces, host, path_prefix, methods, key, on_missing.
	Fields []string `json:"fields,omitempty"`
	// Before and After describe the rule on each side (nil for domains and on the side where it is absent).
	Before *RuleSummary `json:"before,omitempty"`
	After  *RuleSummary `json:"after,omitempty"`
	// Text is one human line: "api.user_vip: 10/minute → 20/minute", "api.user_gold: added 5/second
	// token_bucket burst 10", "domain other: removed".
	Text string `json:"text"`
}

// Change operations and kinds.
const (
	OpAdd    = "add"
	OpRemove = "remove"
	OpChange = "change"

	KindDomain   = "domain"
	KindRule     = "rule"
	KindHTTPRule = "http_rule"
)

// RuleSummary is the JSON description of a rule in a Change.
type RuleSummary struct {
	Name           string         `json:"name"`
	Limits         []LimitSummary `json:"limits"`
	Unlimited      bool           `json:"unlimited,omitempty"`
	Shadow         bool           `json:"shadow,omitempty"`
	Quota          bool           `json:"quota,omitempty"`
	DetailedMetric bool           `json:"detailed_metric,omitempty"`
	Replaces       []string       `json:"replaces,omitempty"`
	// SharedValues mirrors Rule.SharedValues (share_threshold patterns per entry).
	SharedValues []string `json:"shared_values,omitempty"`

	// HTTP rules only.
	Host       string   `json:"host,omitempty"`
	PathPrefix string   `json:"path_prefix,omitempty"`
	Methods    []string `json:"methods,omitempty"`
	// Key lists the key parts: "client_ip", "header:x-api-key", "header:authorization (hashed)", "jwt_claim:sub".
	Key       []string `json:"key,omitempty"`
	OnMissing string   `json:"on_missing,omitempty"`
}

// LimitSummary is one quota of a RuleSummary.
type LimitSummary struct {
	Name            string  `json:"name"`
	Algorithm       string  `json:"algorithm"`
	RequestsPerUnit uint64  `json:"requests_per_unit"`
	Unit            string  `json:"unit"`
	UnitMultiplier  uint32  `json:"unit_multiplier"`
	WindowSeconds   float64 `json:"window_seconds"`
	Burst           uint64  `json:"burst,omitempty"`
}

// Diff lists what changes from before to after: domains added and removed, and within the domains both
// have, descriptor rules (by Rule.Path) then HTTP rules (by name) added, changed and removed. The order is
// deterministic: domains sorted by name; within a domain the added and changed rules in after's file order,
// then the removed ones in before's file order. A nil snapshot counts as empty. Equal snapshots give nil.
func Diff(before, after *Snapshot) []Change {
	names := append(before.Domains(), after.Domains()...)
	slices.Sort(names)
	names = slices.Compact(names)
	var out []Change
	for _, d := range names {
		switch inB, inA := before.HasDomain(d), after.HasDomain(d); {
		case inA && !inB:
			out = append(out, Change{Op: OpAdd, Domain: d, Kind: KindDomain, Path: d,
				Text: "domain " + d + ": added (" + countText(after, d) + ")"})
		case inB && !inA:
			out = append(out, Change{Op: OpRemove, Domain: d, Kind: KindDomain, Path: d,
				Text: "domain " + d + ": removed (" + countText(before, d) + ")"})
		default:
			out = diffRules(out, d, KindRule, descriptorItems(before.Rules(d)), descriptorItems(after.Rules(d)))
			out = diffRules(out, d, KindHTTPRule, httpItems(before.HTTPRules(d)), httpItems(after.HTTPRules(d)))
		}
	}
	return out
}

// SummaryText joins the Text of every change, one per line.
func SummaryText(cs []Change) string {
	var b strings.Builder
	for i, c := range cs {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(c.Text)
	}
	return b.String()
}

func countText(s *Snapshot, d string) string {
	n, h := len(s.Rules(d)), len(s.HTTPRules(d))
	t := plural(n, "rule")
	if h > 0 {
		t += ", " + plural(h, "http rule")
	}
	return t
}

func plural(n int, what string) string {
	s := strconv.Itoa(n) + " " + what
	if n != 1 {
		s += "s"
	}
	return s
}

// diffItem is a rule with its identity (Path or HTTP rule name) and the name shown in texts.
type diffItem struct {
	id, label string
	sum       RuleSummary
}

func descriptorItems(rs []*Rule) []diffItem {
	out := make([]diffItem, 0, len(rs))
	for _, r := range rs {
		out = append(out, diffItem{id: r.Path, label: r.Path, sum: summarize(r)})
	}
	return out
}

func httpItems(hs []*HTTPRule) []diffItem {
	out := make([]diffItem, 0, len(hs))
	for _, h := range hs {
		s := summarize(&h.Rule)
		s.Host, s.PathPrefix, s.Methods, s.OnMissing = h.Host, h.PathPrefix, slices.Clone(h.Methods), h.OnMissing
		for _, k := range h.Key {
			s.Key = append(s.Key, keyText(k))
		}
		out = append(out, diffItem{id: h.Name, label: h.Path, sum: s})
	}
	return out
}

func summarize(r *Rule) RuleSummary {
	s := RuleSummary{Name: r.Name, Limits: make([]LimitSummary, 0, len(r.Limits)), Unlimited: r.Unlimited,
		Shadow: r.Shadow, Quota: r.Quota, DetailedMetric: r.DetailedMetric, Replaces: slices.Clone(r.Replaces),
		SharedValues: slices.Clone(r.SharedValues)}
	for _, l := range r.Limits {
		s.Limits = append(s.Limits, LimitSummary{Name: l.Name, Algorithm: l.Algorithm.String(),
			RequestsPerUnit: l.RequestsPerUnit, Unit: l.Unit.String(), UnitMultiplier: l.UnitMultiplier,
			WindowSeconds: l.Window.Seconds(), Burst: l.Burst})
	}
	return s
}

// keyText renders a key part as the dashboard shows it.
// String renders a key source for people: "client_ip", "header:x-api-key", "header:authorization (hashed)".
func (k KeySource) String() string { return keyText(k) }

func keyText(k KeySource) string {
	s := k.Kind
	if k.Name != "" {
		s += ":" + k.Name
	}
	if k.Hash {
		s += " (hashed)"
	}
	return s
}

func diffRules(out []Change, domain, kind string, before, after []diffItem) []Change {
	old := make(map[string]*diffItem, len(before))
	for i := range before {
		old[before[i].id] = &before[i]
	}
	seen := make(map[string]bool, len(after))
	for i := range after {
		a := &after[i]
		seen[a.id] = true
		b, ok := old[a.id]
		if !ok {
			out = append(out, Change{Op: OpAdd, Domain: domain, Kind: kind, Path: a.id, After: &a.sum,
				Text: a.label + ": added " + limitsText(a.sum)})
			continue
		}
		fields, text := compare(b.sum, a.sum)
		if len(fields) > 0 {
			out = append(out, Change{Op: OpChange, Domain: domain, Kind: kind, Path: a.id, Fields: fields,
				Before: &b.sum, After: &a.sum, Text: a.label + ": " + text})
		}
	}
	for i := range before {
		b := &before[i]
		if !seen[b.id] {
			out = append(out, Change{Op: OpRemove, Domain: domain, Kind: kind, Path: b.id, Before: &b.sum,
				Text: b.label + ": removed (was " + limitsText(b.sum) + ")"})
		}
	}
	return out
}

// compare returns the fields that differ between b and a and the text describing them ("" when equal).
func compare(b, a RuleSummary) ([]string, string) {
	var fields, parts []string
	add := func(f string) {
		if !slices.Contains(fields, f) {
			fields = append(fields, f)
		}
	}
	if b.Unlimited != a.Unlimited {
		add("unlimited")
	}
	if len(b.Limits) != len(a.Limits) {
		if !b.Unlimited && !a.Unlimited {
			add("limits")
		}
	} else {
		for i := range b.Limits {
			lb, la := b.Limits[i], a.Limits[i]
			if lb.RequestsPerUnit != la.RequestsPerUnit {
				add("requests_per_unit")
			}
			switch {
			case lb.Unit != la.Unit:
				add("unit")
			case lb.UnitMultiplier != la.UnitMultiplier:
				add("unit_multiplier")
			case lb.WindowSeconds != la.WindowSeconds:
				add("window")
			}
			if lb.Algorithm != la.Algorithm {
				add("algorithm")
			}
			if lb.Burst != la.Burst {
				add("burst")
			}
			if lb.Name != la.Name {
				add("name")
			}
		}
	}
	if lt, at := limitsText(b), limitsText(a); lt != at {
		parts = append(parts, lt+" → "+at)
	}
	if b.Name != a.Name {
		add("name")
	}
	if slices.Contains(fields, "name") {
		parts = append(parts, "name "+namesText(b)+" → "+namesText(a))
	}
	flag := func(field string, x, y bool) {
		if x != y {
			add(field)
			parts = append(parts, field+" "+onOff(x)+" → "+onOff(y))
		}
	}
	flag("shadow_mode", b.Shadow, a.Shadow)
	flag("quota_mode", b.Quota, a.Quota)
	flag("detailed_metric", b.DetailedMetric, a.DetailedMetric)
	list := func(field string, x, y []string) {
		if !slices.Equal(x, y) {
			add(field)
			parts = append(parts, field+" "+listText(x)+" → "+listText(y))
		}
	}
	list("share_threshold", b.SharedValues, a.SharedValues)
	list("replaces", b.Replaces, a.Replaces)
	str := func(field, x, y string) {
		if x != y {
			add(field)
			parts = append(parts, field+" "+quoteOrAny(x)+" → "+quoteOrAny(y))
		}
	}
	str("host", b.Host, a.Host)
	str("path_prefix", b.PathPrefix, a.PathPrefix)
	list("methods", b.Methods, a.Methods)
	list("key", b.Key, a.Key)
	str("on_missing", b.OnMissing, a.OnMissing)
	return fields, strings.Join(parts, "; ")
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func listText(xs []string) string {
	return "[" + strings.Join(xs, ", ") + "]"
}

func quoteOrAny(s string) string {
	if s == "" {
		return "(any)"
	}
	return strconv.Quote(s)
}

// namesText is the rule name, followed by the limit names that differ from it.
func namesText(s RuleSummary) string {
	t := strconv.Quote(s.Name)
	var ls []string
	for _, l := range s.Limits {
		if l.Name != s.Name {
			ls = append(ls, l.Name)
		}
	}
	if len(ls) > 0 {
		t += " (limits " + strings.Join(ls, ", ") + ")"
	}
	return t
}

// limitsText renders a rule's quotas: "unlimited", "10/minute", "5/second token_bucket burst 10",
// "10/second + 1000/day".
func limitsText(s RuleSummary) string {
	if s.Unlimited {
		return "unlimited"
	}
	if len(s.Limits) == 0 {
		return "no limit"
	}
	parts := make([]string, 0, len(s.Limits))
	for _, l := range s.Limits {
		parts = append(parts, limitText(l))
	}
	return strings.Join(parts, " + ")
}

func limitText(l LimitSummary) string {
	t := strconv.FormatUint(l.RequestsPerUnit, 10) + "/"
	switch {
	case l.UnitMultiplier == 1:
		t += l.Unit
	case l.UnitMultiplier > 1:
		t += strconv.FormatUint(uint64(l.UnitMultiplier), 10) + " " + l.Unit + "s"
	default:
		t += time.Duration(l.WindowSeconds * float64(time.Second)).Round(time.Millisecond).String()
	}
	if l.Algorithm != limiter.FixedWindow.String() {
		t += " " + l.Algorithm
	}
	if l.Burst > 0 {
		t += " burst " + strconv.FormatUint(l.Burst, 10)
	}
	return t
}
