package dashboard

import (
	"time"

	"github.com/floodgate/floodgate/config"
)

// Limits is the Configuration pane's view of the limits in force (the "limits" field of /ws "hello").
type Limits struct {
	Version  uint64         `json:"version,string"` // a string: JavaScript numbers cannot hold every uint64
	LoadedAt time.Time      `json:"loaded_at"`
	Sources  []string       `json:"sources"`
	Domains  []DomainLimits `json:"domains"`
}

// DomainLimits are one domain's descriptor rules and ext_authz HTTP rules, in file order.
type DomainLimits struct {
	Domain    string     `json:"domain"`
	Rules     []RuleView `json:"rules"`
	HTTPRules []HTTPView `json:"http_rules"`
}

// RuleView is one descriptor rule.
type RuleView struct {
	Name      string      `json:"name"`
	Path      string      `json:"path"`
	Unlimited bool        `json:"unlimited"`
	Shadow    bool        `json:"shadow"`
	Limits    []LimitView `json:"limits"`
}

// HTTPView is one ext_authz rule.
type HTTPView struct {
	Name       string      `json:"name"`
	Host       string      `json:"host"`
	PathPrefix string      `json:"path_prefix"`
	Methods    []string    `json:"methods"`
	Key        []string    `json:"key"` // "client_ip", "header:x-api-key", "header:authorization (hashed)", "jwt_claim:sub"
	OnMissing  string      `json:"on_missing"`
	Shadow     bool        `json:"shadow"`
	Limits     []LimitView `json:"limits"`
}

// LimitView is one quota.
type LimitView struct {
	Name          string  `json:"name"`
	Algorithm     string  `json:"algorithm"`
	Requests      uint64  `json:"requests"`
	WindowSeconds float64 `json:"window_seconds"`
	Burst         uint64  `json:"burst"`
}

func limitViews(ls []config.Limit) []LimitView {
	out := make([]LimitView, 0, len(ls))
	for _, l := range ls {
		out = append(out, LimitView{Name: l.Name, Algorithm: l.Algorithm.String(), Requests: l.Requests,
			WindowSeconds: l.Window.Seconds(), Burst: l.Burst})
	}
	return out
}

func keyView(ks []config.KeySource) []string {
	out := make([]string, 0, len(ks))
	for _, k := range ks {
		out = append(out, k.String())
	}
	return out
}

// limitsView renders a snapshot for the dashboard.
func limitsView(s *config.Snapshot) Limits {
	info := s.Info()
	v := Limits{Version: info.Version, LoadedAt: info.LoadedAt, Sources: info.Sources, Domains: []DomainLimits{}}
	if v.Sources == nil {
		v.Sources = []string{}
	}
	for _, domain := range s.Domains() {
		d := DomainLimits{Domain: domain, Rules: []RuleView{}, HTTPRules: []HTTPView{}}
		for _, r := range s.Rules(domain) {
			d.Rules = append(d.Rules, RuleView{Name: r.Name, Path: r.Path, Unlimited: r.Unlimited, Shadow: r.Shadow,
				Limits: limitViews(r.Limits)})
		}
		for _, h := range s.HTTPRules(domain) {
			methods := h.Methods
			if methods == nil {
				methods = []string{}
			}
			d.HTTPRules = append(d.HTTPRules, HTTPView{Name: h.Name, Host: h.Host, PathPrefix: h.PathPrefix,
				Methods: methods, Key: keyView(h.Key), OnMissing: h.OnMissing, Shadow: h.Shadow, Limits: limitViews(h.Limits)})
		}
		v.Domains = append(v.Domains, d)
	}
	return v
}
