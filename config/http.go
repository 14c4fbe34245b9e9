package config

import (
	"strings"

	"gopkg.in/yaml.v3"
)

var (
	httpRuleKeys = []string{"name", "match", "key", "on_missing", "rate_limit", "rate_limits", "shadow_mode"}
	matchKeys    = []string{"host", "path_prefix", "methods"}
	keySpecKeys  = []string{"header", "jwt_claim", "hash"}
	// httpMethods are the methods a rule may name (RFC 9110 plus PATCH).
	httpMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)

// Key source kinds of KeySource.Kind.
const (
	KeyClientIP = "client_ip"
	KeyHeader   = "header"
	KeyPath     = "path"
	KeyMethod   = "method"
	KeyHost     = "host"
	KeyJWTClaim = "jwt_claim"
)

// httpRules compiles the http_rules list of a domain.
func (p *parser) httpRules(n *yaml.Node, path, domainName string) []*HTTPRule {
	items, ok := p.list(n, path)
	if !ok {
		return nil
	}
	var rules []*HTTPRule
	seen := make(map[string]int, len(items))
	for i, item := range items {
		if p.exhausted {
			return rules
		}
		ipath := index(path, i)
		fs := p.fields(item, ipath, httpRuleKeys)
		if fs == nil {
			continue
		}
		line := lineOf(item)
		hr := &HTTPRule{Domain: domainName, OnMissing: OnMissingClientIP}

		var name string
		if f, ok := fs["name"]; ok {
			name, _ = p.str(f.val, join(ipath, "name"))
			if name == "" {
				p.errorf(f.key.Line, join(ipath, "name"), "must not be empty")
			} else if first, dup := seen[name]; dup {
				p.errorf(f.key.Line, join(ipath, "name"), "duplicate http rule name %q (first at line %d)", name, first)
			} else {
				seen[name] = f.key.Line
			}
		} else {
			p.errorf(line, join(ipath, "name"), "missing; every http rule has a unique name")
		}

		if f, ok := fs["match"]; ok {
			p.httpMatch(f.val, join(ipath, "match"), hr)
		}
		hr.Key = p.keySources(fs, ipath)
		if f, ok := fs["on_missing"]; ok {
			v, _ := p.str(f.val, join(ipath, "on_missing"))
			switch v {
			case OnMissingClientIP, OnMissingSkip, OnMissingDeny:
				hr.OnMissing = v
			default:
				p.errorf(f.val.Line, join(ipath, "on_missing"), "unknown policy %q (want client_ip, skip or deny)", v)
			}
		}
		var shadow bool
		if f, ok := fs["shadow_mode"]; ok {
			shadow, _ = p.boolean(f.val, join(ipath, "shadow_mode"))
		}
		_, hasOne := fs["rate_limit"]
		_, hasMany := fs["rate_limits"]
		if !hasOne && !hasMany {
			p.errorf(line, join(ipath, "rate_limit"), "missing; an http rule needs rate_limit or rate_limits")
			continue
		}
		if name == "" {
			continue
		}
		r := p.rule(fs, ipath, name)
		if r == nil {
			continue
		}
		r.Path = domainName + ".http_rules." + name
		r.Shadow = shadow
		hr.Rule = *r
		rules = append(rules, hr)
	}
	return rules
}

func (p *parser) httpMatch(n *yaml.Node, path string, hr *HTTPRule) {
	fs := p.fields(n, path, matchKeys)
	if fs == nil {
		return
	}
	if f, ok := fs["host"]; ok {
		v, _ := p.str(f.val, join(path, "host"))
		switch {
		case v == "":
			p.errorf(f.key.Line, join(path, "host"), "must not be empty when given")
		case strings.ContainsAny(v, " \t/?#*"):
			p.errorf(f.val.Line, join(path, "host"), "invalid host %q (want a host name such as api.example.com, optionally with :port)", v)
		default:
			hr.Host = strings.ToLower(v)
		}
	}
	if f, ok := fs["path_prefix"]; ok {
		v, _ := p.str(f.val, join(path, "path_prefix"))
		if !strings.HasPrefix(v, "/") || strings.ContainsAny(v, "?# \t") {
			p.errorf(f.val.Line, join(path, "path_prefix"), "invalid path prefix %q (want a path starting with /, without query)", v)
		} else {
			hr.PathPrefix = v
		}
	}
	if f, ok := fs["methods"]; ok {
		mpath := join(path, "methods")
		items, ok := p.list(f.val, mpath)
		if ok && len(items) == 0 {
			p.errorf(f.key.Line, mpath, "empty list; omit methods to match any method")
		}
		for i, item := range items {
			v, ok := p.str(item, index(mpath, i))
			if !ok {
				continue
			}
			m := strings.ToUpper(v)
			switch {
			case !contains(httpMethods, m):
				p.errorf(item.Line, index(mpath, i), "unknown method %q (want one of %s)", v, strings.Join(httpMethods, ", "))
			case contains(hr.Methods, m):
				p.errorf(item.Line, index(mpath, i), "method %s listed twice", m)
			default:
				hr.Methods = append(hr.Methods, m)
			}
		}
	}
}

// keySources compiles the key list of an HTTP rule; the default is the client IP alone.
func (p *parser) keySources(fs map[string]field, ipath string) []KeySource {
	f, ok := fs["key"]
	if !ok {
		return []KeySource{{Kind: KeyClientIP}}
	}
	kpath := join(ipath, "key")
	items, ok := p.list(f.val, kpath)
	if !ok {
		return nil
	}
	if len(items) == 0 {
		p.errorf(f.key.Line, kpath, "empty list; omit key to key on the client IP")
		return nil
	}
	var out []KeySource
	for i, item := range items {
		spath := index(kpath, i)
		n := p.resolve(item)
		if n == nil {
			return nil
		}
		var ks KeySource
		switch n.Kind {
		case yaml.ScalarNode:
			switch n.Value {
			case KeyClientIP, KeyPath, KeyMethod, KeyHost:
				ks.Kind = n.Value
			default:
				p.errorf(n.Line, spath, "unknown key source %s (want client_ip, path, method, host, {header: NAME} or {jwt_claim: NAME})", describe(n))
				continue
			}
		case yaml.MappingNode:
			kf := p.fields(n, spath, keySpecKeys)
			if kf == nil {
				continue
			}
			h, hasHeader := kf["header"]
			c, hasClaim := kf["jwt_claim"]
			switch {
			case hasHeader && hasClaim:
				p.errorf(n.Line, spath, "header and jwt_claim are exclusive; use two key parts")
				continue
			case hasHeader:
				v, _ := p.str(h.val, join(spath, "header"))
				if !validHeaderName(v) {
					p.errorf(h.val.Line, join(spath, "header"), "invalid header name %q", v)
					continue
				}
				ks = KeySource{Kind: KeyHeader, Name: strings.ToLower(v)}
			case hasClaim:
				v, _ := p.str(c.val, join(spath, "jwt_claim"))
				if v == "" {
					p.errorf(c.key.Line, join(spath, "jwt_claim"), "must not be empty")
					continue
				}
				ks = KeySource{Kind: KeyJWTClaim, Name: v}
			default:
				p.errorf(n.Line, spath, "want header or jwt_claim")
				continue
			}
			if hf, ok := kf["hash"]; ok {
				ks.Hash, _ = p.boolean(hf.val, join(spath, "hash"))
			}
		default:
			p.errorf(n.Line, spath, "want a key source, got %s", describe(n))
			continue
		}
		for _, o := range out {
			if o.Kind == ks.Kind && o.Name == ks.Name {
				p.errorf(n.Line, spath, "key part listed twice")
			}
		}
		out = append(out, ks)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// validHeaderName accepts an RFC 9110 token, optionally as an HTTP/2 pseudo-header (":authority").
func validHeaderName(s string) bool {
	s = strings.TrimPrefix(s, ":")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// Matches reports whether a request with this host (":authority", a port is ignored unless the rule names
// one), path (the query string is ignored) and upper-case method falls under r. It does not allocate.
func (r *HTTPRule) Matches(host, path, method string) bool {
	if r.Host != "" && !strings.EqualFold(host, r.Host) && !strings.EqualFold(stripPort(host), r.Host) {
		return false
	}
	if r.PathPrefix != "" {
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
		if !strings.HasPrefix(path, r.PathPrefix) {
			return false
		}
	}
	if len(r.Methods) > 0 && !contains(r.Methods, method) {
		return false
	}
	return true
}

// stripPort removes a trailing ":port" from a host ("[::1]:80" → "[::1]"); a bare IPv6 address is kept.
func stripPort(host string) string {
	i := strings.LastIndexByte(host, ':')
	if i < 0 || strings.IndexByte(host[i:], ']') >= 0 {
		return host
	}
	if strings.IndexByte(host[:i], ':') >= 0 && !strings.HasPrefix(host, "[") {
		return host // bare IPv6 address
	}
	for _, c := range host[i+1:] {
		if c < '0' || c > '9' {
			return host
		}
	}
	return host[:i]
}
