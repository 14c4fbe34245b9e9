package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/floodgate/floodgate/limiter"
)

const (
	// maxErrorsPerFile bounds the report of a badly broken file.
	maxErrorsPerFile = 50
	// nodeBudget bounds the work of one file, aliases included (a "billion laughs" document stops here).
	nodeBudget = 200_000
	// maxDepth bounds descriptor nesting (Envoy descriptors have a handful of entries).
	maxDepth = 32
	// maxWindow is the longest window a limit may have.
	maxWindow = 10 * 365 * 24 * time.Hour
	// MaxDomainName bounds a domain name in bytes: the name becomes a file name ("api/<domain>.yaml").
	MaxDomainName = 128
)

// nameProblem returns why s cannot be a name (a domain, a descriptor key or value, a rule name), or "": it
// must not hold a control character (a byte below 0x20, or 0x7f: NUL, TAB, CR, LF, ...), which would end
// up in logs, metric labels, Redis keys and the audit database.
func nameProblem(s string) string {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < 0x20 || b == 0x7f {
			return fmt.Sprintf("must not contain control characters (%#02x at byte %d)", b, i)
		}
	}
	return ""
}

// DomainNameProblem returns why name cannot be a domain's name, or "". Besides being a name (no control
// characters) a domain names a file wherever limits are stored as files, so it must be non-empty, at most
// MaxDomainName bytes, without '/' or '\', and must not start with '.'.
func DomainNameProblem(name string) string {
	switch {
	case name == "":
		return "must not be empty"
	case len(name) > MaxDomainName:
		return fmt.Sprintf("is %d bytes long; at most %d (the domain names a file)", len(name), MaxDomainName)
	}
	if p := nameProblem(name); p != "" {
		return p
	}
	switch {
	case strings.ContainsAny(name, `/\`):
		return `must not contain '/' or '\' (the domain names a file)`
	case name[0] == '.':
		return "must not start with '.' (the domain names a file)"
	}
	return ""
}

// The keys each mapping accepts. Anything else is an error (envoyproxy/ratelimit also rejects unknown keys,
// but checks one flat list for every level).
var (
	rootKeys       = []string{"domain", "descriptors", "http_rules"}
	descriptorKeys = []string{"key", "value", "rate_limit", "rate_limits", "descriptors", "shadow_mode",
		"quota_mode", "detailed_metric", "value_to_metric", "share_threshold", "metadata"}
	rateLimitKeys = []string{"unit", "requests_per_unit", "unlimited", "name", "replaces", "algorithm", "burst",
		"window", "unit_multiplier"}
	replacesKeys = []string{"name"}
)

// entryKey identifies a child node by descriptor key and exact value. A struct key keeps ("a_b","c") and
// ("a","b_c") apart and lets Match look it up without allocating.
type entryKey struct{ key, value string }

// wildcard is a child node whose value contains '*', with the value pre-split on '*'.
type wildcard struct {
	key   string
	parts []string
	node  *node
}

// node is one level of a domain's descriptor tree.
type node struct {
	rule      *Rule // nil: no rate_limit here
	exact     map[entryKey]*node
	wildcards []wildcard // file order: the first matching pattern wins
	defaults  map[string]*node
}

// child returns the node an entry leads to: exact value, else the first matching wildcard, else the
// key-only default; nil when none.
func (n *node) child(e Entry) *node {
	if c := n.exact[entryKey{e.Key, e.Value}]; c != nil {
		return c
	}
	for i := range n.wildcards {
		w := &n.wildcards[i]
		if w.key == e.Key && wildcardMatch(w.parts, e.Value) {
			return w.node
		}
	}
	return n.defaults[e.Key]
}

// wildcardMatch reports whether value matches the pattern split on '*' (anchored at both ends; each '*'
// matches any run of bytes, including none). It does not allocate.
func wildcardMatch(parts []string, value string) bool {
	if len(parts) == 1 {
		return parts[0] == value
	}
	first, last := parts[0], parts[len(parts)-1]
	if len(value) < len(first)+len(last) || !strings.HasPrefix(value, first) || !strings.HasSuffix(value, last) {
		return false
	}
	rest := value[len(first) : len(value)-len(last)]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(rest, p)
		if i < 0 {
			return false
		}
		rest = rest[i+len(p):]
	}
	return true
}

// domain is one compiled file.
type domain struct {
	name  string
	file  string
	line  int
	root  node
	rules []*Rule // descriptor rules in file order (depth first)
	http  []*HTTPRule
}

// field is one key/value pair of a mapping.
type field struct{ key, val *yaml.Node }

// parser compiles one file and collects its errors.
type parser struct {
	file      string
	errs      Errors
	count     int // errors reported, including those past maxErrorsPerFile
	rules     []*Rule
	truncated bool
	nodes     int
	exhausted bool
}

func (p *parser) errorf(line int, path, format string, args ...any) {
	p.count++
	if len(p.errs) >= maxErrorsPerFile {
		if !p.truncated {
			p.truncated = true
			p.errs = append(p.errs, &Error{File: p.file, Line: line, Reason: "too many errors; stopped here"})
		}
		return
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Path: path, Reason: fmt.Sprintf(format, args...)})
}

// resolve follows aliases and charges the node budget. It returns nil once the budget is spent.
func (p *parser) resolve(n *yaml.Node) *yaml.Node {
	for hops := 0; n != nil && n.Kind == yaml.AliasNode; hops++ {
		if hops > 100 {
			return nil
		}
		n = n.Alias
	}
	p.nodes++
	if p.nodes > nodeBudget {
		if !p.exhausted {
			p.exhausted = true
			line := 0
			if n != nil {
				line = n.Line
			}
			p.errorf(line, "", "document too large (more than %d nodes, aliases expanded)", nodeBudget)
		}
		return nil
	}
	return n
}

// lineOf is the line of n, following aliases without charging the budget.
func lineOf(n *yaml.Node) int {
	for hops := 0; n != nil && n.Kind == yaml.AliasNode && hops <= 100; hops++ {
		n = n.Alias
	}
	if n == nil {
		return 0
	}
	return n.Line
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return "an unsupported node"
}

// fields checks that n is a mapping with string keys from allowed, each at most once.
// It returns nil (after reporting) when n is not a mapping.
func (p *parser) fields(n *yaml.Node, path string, allowed []string) map[string]field {
	n = p.resolve(n)
	if n == nil {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, path, "want a mapping, got %s", describe(n))
		return nil
	}
	out := make(map[string]field, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := p.resolve(n.Content[i])
		if k == nil {
			return nil
		}
		if k.Kind != yaml.ScalarNode {
			p.errorf(k.Line, path, "keys must be strings, got %s", describe(k))
			continue
		}
		if k.Tag == "!!merge" {
			p.errorf(k.Line, path, "merge keys (<<) are not supported")
			continue
		}
		name := k.Value
		if !slices.Contains(allowed, name) {
			p.errorf(k.Line, path, "unknown key %q (want %s)", name, strings.Join(allowed, ", "))
			continue
		}
		if prev, dup := out[name]; dup {
			p.errorf(k.Line, join(path, name), "duplicate key %q (first at line %d)", name, prev.key.Line)
			continue
		}
		out[name] = field{key: k, val: n.Content[i+1]}
	}
	return out
}

// list returns the items of a sequence; null counts as an empty list.
func (p *parser) list(n *yaml.Node, path string) ([]*yaml.Node, bool) {
	n = p.resolve(n)
	if n == nil {
		return nil, false
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n.Line, path, "want a list, got %s", describe(n))
		return nil, false
	}
	return n.Content, true
}

// str reads a scalar as a string (numbers as written, null as ""), like envoyproxy/ratelimit's YAML decoder.
// A string holding a control character is reported (see nameProblem) and returned with ok false: every
// string of a limits file is a name, a value matched against requests or a keyword, none has a use for one.
func (p *parser) str(n *yaml.Node, path string) (string, bool) {
	n = p.resolve(n)
	if n == nil {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		p.errorf(n.Line, path, "want a string, got %s", describe(n))
		return "", false
	}
	if n.Tag == "!!null" {
		return "", true
	}
	if reason := nameProblem(n.Value); reason != "" {
		p.errorf(n.Line, path, "%s", reason)
		return n.Value, false
	}
	return n.Value, true
}

func (p *parser) boolean(n *yaml.Node, path string) (bool, bool) {
	n = p.resolve(n)
	if n == nil {
		return false, false
	}
	if n.Kind == yaml.ScalarNode {
		if n.Tag == "!!null" {
			return false, true
		}
		switch strings.ToLower(n.Value) {
		case "true", "yes", "on":
			return true, true
		case "false", "no", "off":
			return false, true
		}
	}
	p.errorf(n.Line, path, "want true or false, got %s", describe(n))
	return false, false
}

// whole reads a non-negative integer no larger than limit.
func (p *parser) whole(n *yaml.Node, path string, limit uint64) (uint64, bool) {
	n = p.resolve(n)
	if n == nil {
		return 0, false
	}
	if n.Kind == yaml.ScalarNode && n.Tag != "!!int" && n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 && decimal.MatchString(n.Value) {
		// Too long for the YAML resolver's int64: say so rather than "not a number".
		if strings.HasPrefix(n.Value, "-") {
			p.errorf(n.Line, path, "must not be negative, got %s", n.Value)
		} else {
			p.errorf(n.Line, path, "%s is above the maximum %d", n.Value, limit)
		}
		return 0, false
	}
	var i int64
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&i) != nil {
		p.errorf(n.Line, path, "want a whole number, got %s", describe(n))
		return 0, false
	}
	if i < 0 {
		p.errorf(n.Line, path, "must not be negative, got %d", i)
		return 0, false
	}
	if uint64(i) > limit {
		p.errorf(n.Line, path, "%d is above the maximum %d", i, limit)
		return 0, false
	}
	return uint64(i), true
}

var decimal = regexp.MustCompile(`^[-+]?[0-9]+$`)

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntax reports a YAML decoding error with its line when the decoder gives one.
func (p *parser) syntax(err error) {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.errorf(line, "", "invalid YAML: %s", m[2])
		return
	}
	p.errorf(0, "", "invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
}

// parseFile compiles one document; on any error it returns nil and the collected errors.
func parseFile(name string, data []byte) (*domain, Errors) {
	p := &parser{file: name}
	d := p.file1(data)
	if len(p.errs) > 0 {
		p.errs.sort()
		return nil, p.errs
	}
	return d, nil
}

func (p *parser) file1(data []byte) *domain {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf(0, "", "empty file; want a mapping with domain and descriptors")
		} else {
			p.syntax(err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		p.errorf(extra.Line, "", "a file holds one document; found a second one")
		return nil
	case !errors.Is(err, io.EOF):
		p.syntax(err)
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		p.errorf(doc.Line, "", "empty file; want a mapping with domain and descriptors")
		return nil
	}
	root := doc.Content[0]
	fs := p.fields(root, "", rootKeys)
	if fs == nil {
		return nil
	}
	d := &domain{file: p.file, line: root.Line}
	if f, ok := fs["domain"]; ok {
		d.line = f.key.Line
		if s, ok := p.str(f.val, "domain"); ok {
			if reason := DomainNameProblem(s); reason != "" {
				p.errorf(f.key.Line, "domain", "%s", reason)
			}
			d.name = s
		}
	} else {
		p.errorf(root.Line, "domain", "missing; every file names its domain")
	}
	if f, ok := fs["descriptors"]; ok {
		p.descriptors(f.val, "descriptors", &d.root, d.name, 0, nil)
	}
	if f, ok := fs["http_rules"]; ok {
		d.http = p.httpRules(f.val, "http_rules", d.name)
	}
	d.rules = p.rules
	return d
}

// descriptors compiles a descriptor list into parent's children. rulePath is the envoyproxy-style path
// of parent ("api" or "api.user_vip"), depth the index of these entries in a request's descriptor,
// shared the parent's SharedValues.
func (p *parser) descriptors(n *yaml.Node, path string, parent *node, rulePath string, depth int, shared []string) {
	if depth >= maxDepth {
		p.errorf(lineOf(n), path, "descriptors nested deeper than %d levels", maxDepth)
		return
	}
	items, ok := p.list(n, path)
	if !ok {
		return
	}
	seen := make(map[entryKey]int, len(items))
	for i, item := range items {
		if p.exhausted {
			return
		}
		ipath := index(path, i)
		fs := p.fields(item, ipath, descriptorKeys)
		if fs == nil {
			continue
		}
		line := lineOf(item)
		var key, value string
		if f, ok := fs["key"]; ok {
			var valid bool
			key, valid = p.str(f.val, join(ipath, "key"))
			if valid && key == "" {
				p.errorf(f.key.Line, join(ipath, "key"), "must not be empty")
			}
		} else {
			p.errorf(line, join(ipath, "key"), "missing; every descriptor has a key")
		}
		if f, ok := fs["value"]; ok {
			value, _ = p.str(f.val, join(ipath, "value"))
		}
		segment := key
		if value != "" {
			segment += "_" + value
		}
		childPath := rulePath + "." + segment

		flags := make(map[string]bool, 5)
		for _, name := range []string{"shadow_mode", "quota_mode", "detailed_metric", "value_to_metric", "share_threshold"} {
			if f, ok := fs[name]; ok {
				flags[name], _ = p.boolean(f.val, join(ipath, name))
			}
		}
		if f, ok := fs["metadata"]; ok {
			// Envoy response metadata in envoyproxy/ratelimit; accepted and not used by Floodgate.
			if m := p.resolve(f.val); m != nil && m.Kind != yaml.MappingNode && !(m.Kind == yaml.ScalarNode && m.Tag == "!!null") {
				p.errorf(m.Line, join(ipath, "metadata"), "want a mapping, got %s", describe(m))
			}
		}
		wild := strings.Contains(value, "*")
		if flags["share_threshold"] && !wild {
			p.errorf(fs["share_threshold"].key.Line, join(ipath, "share_threshold"),
				"only allowed with a wildcard value (containing '*')")
		}
		var childShared []string
		if shared != nil || flags["share_threshold"] {
			childShared = make([]string, depth+1)
			copy(childShared, shared)
			if flags["share_threshold"] {
				childShared[depth] = value
			}
		}

		child := &node{}
		child.rule = p.rule(fs, ipath, childPath)
		if child.rule != nil {
			p.rules = append(p.rules, child.rule)
			child.rule.Shadow = flags["shadow_mode"]
			child.rule.Quota = flags["quota_mode"]
			child.rule.DetailedMetric = flags["detailed_metric"]
			child.rule.SharedValues = childShared
		}
		if f, ok := fs["descriptors"]; ok {
			p.descriptors(f.val, join(ipath, "descriptors"), child, childPath, depth+1, childShared)
		}

		if key == "" {
			continue
		}
		ek := entryKey{key, value}
		if first, dup := seen[ek]; dup {
			p.errorf(line, ipath, "duplicate descriptor %s (first at line %d)", childPath, first)
			continue
		}
		seen[ek] = line
		switch {
		case value == "":
			if parent.defaults == nil {
				parent.defaults = make(map[string]*node)
			}
			parent.defaults[key] = child
		case wild:
			parent.wildcards = append(parent.wildcards, wildcard{key: key, parts: strings.Split(value, "*"), node: child})
		default:
			if parent.exact == nil {
				parent.exact = make(map[entryKey]*node)
			}
			parent.exact[ek] = child
		}
	}
}

// limitSpec is one parsed rate_limit mapping.
type limitSpec struct {
	limit     Limit
	unlimited bool
	name      string
	replaces  []string
	line      int
	path      string
}

// rule compiles the rate_limit or rate_limits field of a descriptor or HTTP rule; nil when neither is set
// (or they are invalid: the error is recorded).
func (p *parser) rule(fs map[string]field, path, rulePath string) *Rule {
	one, hasOne := fs["rate_limit"]
	many, hasMany := fs["rate_limits"]
	if hasOne && hasMany {
		p.errorf(many.key.Line, join(path, "rate_limits"), "cannot be combined with rate_limit")
		return nil
	}
	var specs []limitSpec
	switch {
	case hasOne:
		s, ok := p.limitSpec(one.val, join(path, "rate_limit"), false)
		if !ok {
			return nil
		}
		specs = append(specs, s)
	case hasMany:
		lpath := join(path, "rate_limits")
		items, ok := p.list(many.val, lpath)
		if !ok {
			return nil
		}
		if len(items) == 0 {
			p.errorf(many.key.Line, lpath, "empty list; want at least one limit")
			return nil
		}
		for i, item := range items {
			s, ok := p.limitSpec(item, index(lpath, i), true)
			if ok {
				specs = append(specs, s)
			}
		}
		if len(specs) != len(items) {
			return nil
		}
	default:
		return nil
	}

	r := &Rule{Name: rulePath, Path: rulePath}
	if !hasMany && specs[0].name != "" {
		r.Name = specs[0].name
	}
	if specs[0].unlimited {
		r.Unlimited = true
	}
	names := make(map[string]int, len(specs))
	valid := true
	for i, s := range specs {
		if s.unlimited {
			continue
		}
		l := s.limit
		switch {
		case s.name != "":
			l.Name = s.name
		case hasMany:
			l.Name = r.Name + "#" + strconv.Itoa(i+1)
		default:
			l.Name = r.Name
		}
		if j, dup := names[l.Name]; dup {
			p.errorf(s.line, join(s.path, "name"), "duplicate limit name %q (also rate_limits[%d])", l.Name, j)
			valid = false
		}
		names[l.Name] = i
		for j := range i {
			o := specs[j].limit
			if o.Algorithm == l.Algorithm && o.Window == l.Window {
				p.errorf(s.line, s.path, "same algorithm and window as rate_limits[%d] (%s per %s); merge them", j, l.Algorithm, l.Window)
				valid = false
			}
		}
		r.Limits = append(r.Limits, l)
	}
	for _, s := range specs {
		for _, name := range s.replaces {
			if _, own := names[name]; own || name == r.Name {
				p.errorf(s.line, join(s.path, "replaces"), "must not name its own rule %q", name)
				valid = false
				continue
			}
			if !slices.Contains(r.Replaces, name) {
				r.Replaces = append(r.Replaces, name)
			}
		}
	}
	if !valid {
		return nil
	}
	return r
}

// limitSpec parses one rate_limit mapping. inList is true inside rate_limits.
func (p *parser) limitSpec(n *yaml.Node, path string, inList bool) (limitSpec, bool) {
	s := limitSpec{path: path}
	fs := p.fields(n, path, rateLimitKeys)
	if fs == nil {
		return s, false
	}
	s.line = lineOf(n)
	before := p.count
	if f, ok := fs["name"]; ok {
		var valid bool
		s.name, valid = p.str(f.val, join(path, "name"))
		if valid && s.name == "" {
			p.errorf(f.key.Line, join(path, "name"), "must not be empty when given")
		}
	}
	if f, ok := fs["replaces"]; ok {
		rpath := join(path, "replaces")
		items, _ := p.list(f.val, rpath)
		for i, item := range items {
			ipath := index(rpath, i)
			rf := p.fields(item, ipath, replacesKeys)
			if rf == nil {
				continue
			}
			nf, ok := rf["name"]
			if !ok {
				p.errorf(lineOf(item), join(ipath, "name"), "missing")
				continue
			}
			name, valid := p.str(nf.val, join(ipath, "name"))
			if !valid {
				continue
			}
			if name == "" {
				p.errorf(nf.key.Line, join(ipath, "name"), "must not be empty")
				continue
			}
			s.replaces = append(s.replaces, name)
		}
	}
	if f, ok := fs["unlimited"]; ok {
		s.unlimited, _ = p.boolean(f.val, join(path, "unlimited"))
	}
	if s.unlimited {
		if inList {
			p.errorf(fs["unlimited"].key.Line, join(path, "unlimited"), "not allowed in rate_limits; use rate_limit: {unlimited: true}")
		}
		for _, k := range []string{"unit", "requests_per_unit", "unit_multiplier", "window", "algorithm", "burst"} {
			if f, ok := fs[k]; ok {
				p.errorf(f.key.Line, join(path, k), "cannot be combined with unlimited: true")
			}
		}
		return s, p.count == before
	}

	l := &s.limit
	l.Algorithm = limiter.FixedWindow
	if f, ok := fs["algorithm"]; ok {
		if v, ok := p.str(f.val, join(path, "algorithm")); ok {
			a, err := limiter.ParseAlgorithm(strings.ToLower(v))
			if err != nil || v == "" {
				p.errorf(f.val.Line, join(path, "algorithm"), "unknown algorithm %q (want fixed_window, sliding_window, token_bucket or gcra)", v)
			}
			l.Algorithm = a
		}
	}
	if f, ok := fs["requests_per_unit"]; ok {
		l.Requests, _ = p.whole(f.val, join(path, "requests_per_unit"), limiter.MaxRequests)
		l.RequestsPerUnit = l.Requests
	} else {
		p.errorf(s.line, join(path, "requests_per_unit"), "missing (0 blocks every request; write it if you mean it)")
	}
	if f, ok := fs["burst"]; ok {
		if b, ok := p.whole(f.val, join(path, "burst"), limiter.MaxRequests); ok {
			switch {
			case l.Algorithm != limiter.TokenBucket:
				p.errorf(f.key.Line, join(path, "burst"), "only allowed with algorithm: token_bucket")
			case b == 0:
				p.errorf(f.val.Line, join(path, "burst"), "must be at least 1")
			}
			l.Burst = b
		}
	}

	unitF, hasUnit := fs["unit"]
	windowF, hasWindow := fs["window"]
	multF, hasMult := fs["unit_multiplier"]
	switch {
	case hasUnit && hasWindow:
		p.errorf(windowF.key.Line, join(path, "window"), "cannot be combined with unit")
	case hasWindow:
		if hasMult {
			p.errorf(multF.key.Line, join(path, "unit_multiplier"), "only allowed with unit, not with window")
		}
		v, ok := p.str(windowF.val, join(path, "window"))
		if !ok {
			break
		}
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			p.errorf(windowF.val.Line, join(path, "window"), "invalid duration %q (want e.g. 30s, 1m30s, 250ms)", v)
		case d < time.Millisecond || d%time.Millisecond != 0:
			p.errorf(windowF.val.Line, join(path, "window"), "%s is not a whole number of milliseconds of at least 1ms", v)
		case d > maxWindow:
			p.errorf(windowF.val.Line, join(path, "window"), "%s is longer than the maximum 10 years", v)
		default:
			l.Window = d
			l.Unit, l.UnitMultiplier = unitFor(d)
		}
	case hasUnit:
		v, ok := p.str(unitF.val, join(path, "unit"))
		if !ok {
			break
		}
		u, ok := parseUnit(v)
		if !ok {
			p.errorf(unitF.val.Line, join(path, "unit"), "unknown unit %q (want %s)", v, unitList)
			break
		}
		mult := uint64(1)
		if hasMult {
			m, ok := p.whole(multF.val, join(path, "unit_multiplier"), uint64(maxWindow/u.Duration()))
			if !ok {
				break
			}
			if m == 0 {
				p.errorf(multF.val.Line, join(path, "unit_multiplier"), "must be at least 1")
				break
			}
			mult = m
		}
		l.Unit, l.UnitMultiplier = u, uint32(mult)
		l.Window = time.Duration(mult) * u.Duration()
	default:
		p.errorf(s.line, join(path, "unit"), "missing (want %s, or a window such as 30s)", unitList)
	}
	if p.count != before {
		return s, false
	}
	if err := l.Limit.Validate(); err != nil {
		p.errorf(s.line, path, "%v", err)
		return s, false
	}
	return s, true
}
