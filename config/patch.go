package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Errors of the document edits, for callers to branch on (the admin API answers 404).
var (
	// ErrNoSuchRule: no descriptor rule with that path and no HTTP rule with that name in the domain.
	ErrNoSuchRule = errors.New("no such rule")
	// ErrNoSuchDomain: no file of the document holds that domain.
	ErrNoSuchDomain = errors.New("no such domain")
)

// RulePatch changes some fields of one rule; a nil field is left as it is. The result is not validated
// here: compile it (ParseFiles) before using it.
type RulePatch struct {
	RequestsPerUnit *uint64 `json:"requests_per_unit"`
	Unit            *string `json:"unit"`
	// UnitMultiplier 0 removes unit_multiplier (one unit).
	UnitMultiplier *uint32 `json:"unit_multiplier"`
	Algorithm      *string `json:"algorithm"`
	// Burst 0 removes burst (token_bucket capacity = requests_per_unit).
	Burst *uint64 `json:"burst"`
	// Name is the rate_limit's name; "" removes it (the rule is then named by its path).
	Name *string `json:"name"`
	// Unlimited true makes the rule unlimited: the other limit fields are removed (and ignored if given);
	// false removes unlimited (requests_per_unit and unit are then needed).
	Unlimited  *bool `json:"unlimited"`
	ShadowMode *bool `json:"shadow_mode"`
}

// limitFields are the rate_limit keys unlimited: true excludes.
var limitFields = []string{"unit", "requests_per_unit", "unit_multiplier", "window", "algorithm", "burst"}

// blankMarker stands for a blank line while a file is edited as a node tree (yaml.v3 drops blank lines;
// as comment lines they survive, and become blank again in the output).
const blankMarker = "#floodgate:blank-line"

// yamlDoc is one decoded limits file, ready to edit and encode again.
type yamlDoc struct {
	file File
	root *yaml.Node // the DocumentNode
	// marked is true when blank lines were turned into blankMarker comments (see decodeDoc).
	marked bool
}

// decodeDoc decodes f as one YAML document. Syntax problems are returned as Errors, like ParseFiles'.
// Blank lines are kept as marker comments when that is safe: no block scalar (| or >) and no scalar
// spanning a blank line, whose text a comment line would change.
func decodeDoc(f File) (*yamlDoc, error) {
	root, err := decodeOne(f, f.Data)
	if err != nil {
		return nil, err
	}
	d := &yamlDoc{file: f, root: root}
	if bytes.Contains(f.Data, []byte(blankMarker)) || !markable(root) {
		return d, nil
	}
	lines := strings.Split(string(f.Data), "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) == "" && i != len(lines)-1 {
			lines[i] = blankMarker
		}
	}
	if marked, err := decodeOne(f, []byte(strings.Join(lines, "\n"))); err == nil {
		d.root, d.marked = marked, true
	}
	return d, nil
}

func decodeOne(f File, data []byte) (*yaml.Node, error) {
	p := &parser{file: f.Name}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: f.Name, Reason: "empty document; want a mapping with domain and descriptors"}
		}
		p.syntax(err)
		return nil, p.errs
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, &Error{File: f.Name, Line: extra.Line, Reason: "a file holds one document; found a second one"}
	case !errors.Is(err, io.EOF):
		p.syntax(err)
		return nil, p.errs
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return nil, &Error{File: f.Name, Line: root.Line, Reason: "empty document; want a mapping with domain and descriptors"}
	}
	return &root, nil
}

// markable reports whether no scalar of n is a block scalar or holds a line break.
func markable(n *yaml.Node) bool {
	if n.Kind == yaml.ScalarNode && (n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 || strings.Contains(n.Value, "\n")) {
		return false
	}
	for _, c := range n.Content {
		if !markable(c) {
			return false
		}
	}
	return true
}

// encode writes the document again (two-space indentation, comments kept, blank lines restored).
func (d *yamlDoc) encode() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(d.root); err != nil {
		return nil, fmt.Errorf("encode %s: %w", d.file.Name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode %s: %w", d.file.Name, err)
	}
	out := buf.Bytes()
	if bytes.HasPrefix(d.file.Data, []byte("---")) && !bytes.HasPrefix(out, []byte("---")) {
		out = append([]byte("---\n"), out...) // an explicit document start, as written
	}
	if !d.marked {
		return out, nil
	}
	lines := strings.Split(string(out), "\n")
	for i, l := range lines {
		switch {
		case strings.TrimSpace(l) == blankMarker:
			lines[i] = ""
		case strings.Contains(l, " "+blankMarker): // attached to a value as a line comment
			lines[i] = strings.TrimRight(strings.ReplaceAll(l, " "+blankMarker, ""), " ")
		}
	}
	return []byte(strings.Join(lines, "\n")), nil
}

// mapping returns the top mapping of the document (aliases followed), or nil.
func (d *yamlDoc) mapping() *yaml.Node {
	m := deref(d.root.Content[0])
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	return m
}

// domain reads the document's domain key.
func (d *yamlDoc) domain() (string, error) {
	m := d.mapping()
	if m == nil {
		return "", &Error{File: d.file.Name, Line: d.root.Content[0].Line, Reason: "want a mapping with domain and descriptors"}
	}
	k, v := lookup(m, "domain")
	if k == nil {
		return "", &Error{File: d.file.Name, Line: m.Line, Path: "domain", Reason: "missing; every file names its domain"}
	}
	v = deref(v)
	if v == nil || v.Kind != yaml.ScalarNode || scalar(v) == "" {
		return "", &Error{File: d.file.Name, Line: k.Line, Path: "domain", Reason: "must be a non-empty string"}
	}
	if reason := DomainNameProblem(v.Value); reason != "" {
		return "", &Error{File: d.file.Name, Line: k.Line, Path: "domain", Reason: reason}
	}
	return v.Value, nil
}

// DomainOf reads the domain key of a limits file without compiling it. Invalid YAML is reported as Errors
// (with lines), a missing, empty or invalid domain (DomainNameProblem) as an *Error on path "domain".
func DomainOf(f File) (string, error) {
	d, err := decodeDoc(f)
	if err != nil {
		return "", err
	}
	return d.domain()
}

// domainIndex returns the index of the file holding domain, or -1. Files that do not decode are skipped.
func domainIndex(files []File, domain string) int {
	for i, f := range files {
		if d, err := DomainOf(f); err == nil && d == domain {
			return i
		}
	}
	return -1
}

// ReplaceDomain returns files with the document of domain replaced by data (one YAML document, or a JSON
// object, which is stored as block YAML), keeping that file's Name; a new domain is appended as
// "api/<domain>.yaml". The domain key of data must equal domain, else an *Error on path "domain"; so is a
// domain that cannot be a name (DomainNameProblem; that *Error has no File). data is not validated beyond
// that: compile the result.
func ReplaceDomain(files []File, domain string, data []byte) ([]File, error) {
	if reason := DomainNameProblem(domain); reason != "" {
		return nil, &Error{Path: "domain", Reason: fmt.Sprintf("%s %s", quoteClipped(domain, 64), reason)}
	}
	i := domainIndex(files, domain)
	name := "api/" + domain + ".yaml"
	if i >= 0 {
		name = files[i].Name
	}
	f := File{Name: name, Data: data}
	d, err := decodeDoc(f)
	if err != nil {
		return nil, err
	}
	got, err := d.domain()
	if err != nil {
		return nil, err
	}
	if got != domain {
		k, _ := lookup(d.mapping(), "domain")
		return nil, &Error{File: name, Line: k.Line, Path: "domain",
			Reason: fmt.Sprintf("is %q, want %q (the domain being replaced)", got, domain)}
	}
	if json.Valid(bytes.TrimSpace(data)) {
		plain(d.root)
		if f.Data, err = d.encode(); err != nil {
			return nil, err
		}
	}
	out := slices.Clone(files)
	if i >= 0 {
		out[i] = f
	} else {
		out = append(out, f)
	}
	return out, nil
}

// quoteClipped quotes s (Go syntax) cut to its first n bytes ("..." marks the cut).
func quoteClipped(s string, n int) string {
	if len(s) <= n {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:n]) + "..."
}

// plain clears the flow and quoting styles of n and its children (JSON → block YAML; strings that would
// read as another type stay quoted: the encoder sees their !!str tag).
func plain(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		plain(c)
	}
}

// RemoveDomain returns files without the file of domain, or an error wrapping ErrNoSuchDomain.
func RemoveDomain(files []File, domain string) ([]File, error) {
	i := domainIndex(files, domain)
	if i < 0 {
		return nil, fmt.Errorf("remove domain %q: %w", domain, ErrNoSuchDomain)
	}
	return slices.Delete(slices.Clone(files), i, i+1), nil
}

// PatchRule returns files with one rule of domain changed by p. rule is a descriptor rule's Path (as
// Snapshot.Rules gives it, e.g. "api.user_vip") or an HTTP rule's name (or its Path,
// "domain.http_rules.name"). Only the file of domain is rewritten (comments, key order and blank lines
// kept); it is not validated: compile the result. Errors wrap ErrNoSuchDomain or ErrNoSuchRule, or are
// Errors for a rule the patch cannot express (several limits, YAML aliases).
func PatchRule(files []File, domain, rule string, p RulePatch) ([]File, error) {
	i := domainIndex(files, domain)
	if i < 0 {
		return nil, fmt.Errorf("patch rule %q: %w: %q", rule, ErrNoSuchDomain, domain)
	}
	d, err := decodeDoc(files[i])
	if err != nil {
		return nil, err
	}
	m := d.mapping()
	item := findHTTPRule(m, domain, rule)
	if item == nil {
		_, list := lookup(m, "descriptors")
		item = findDescriptor(list, domain, rule)
	}
	if item == nil {
		return nil, fmt.Errorf("patch rule %q of domain %q: %w", rule, domain, ErrNoSuchRule)
	}
	if err := d.apply(item, rule, p); err != nil {
		return nil, err
	}
	data, err := d.encode()
	if err != nil {
		return nil, err
	}
	out := slices.Clone(files)
	out[i] = File{Name: files[i].Name, Data: data}
	return out, nil
}

// findDescriptor walks a descriptor list computing each node's path as the parser does (domain, then key or
// key_value per level, joined with '.') and returns the first item, in file order, whose path is rule and
// which has rate_limit or rate_limits.
func findDescriptor(list *yaml.Node, path, rule string) *yaml.Node {
	list = deref(list)
	if list == nil || list.Kind != yaml.SequenceNode {
		return nil
	}
	for _, item := range list.Content {
		m := deref(item)
		if m == nil || m.Kind != yaml.MappingNode {
			continue
		}
		_, kv := lookup(m, "key")
		_, vv := lookup(m, "value")
		segment := scalar(deref(kv))
		if v := scalar(deref(vv)); v != "" {
			segment += "_" + v
		}
		p := path + "." + segment
		if p == rule && hasLimit(m) {
			return item
		}
		if strings.HasPrefix(rule, p+".") {
			_, children := lookup(m, "descriptors")
			if found := findDescriptor(children, p, rule); found != nil {
				return found
			}
		}
	}
	return nil
}

// findHTTPRule returns the http_rules item named rule (or whose path, domain.http_rules.name, is rule).
func findHTTPRule(m *yaml.Node, domain, rule string) *yaml.Node {
	_, list := lookup(m, "http_rules")
	list = deref(list)
	if list == nil || list.Kind != yaml.SequenceNode {
		return nil
	}
	for _, item := range list.Content {
		im := deref(item)
		if im == nil || im.Kind != yaml.MappingNode {
			continue
		}
		_, nv := lookup(im, "name")
		if name := scalar(deref(nv)); name != "" && (name == rule || domain+".http_rules."+name == rule) && hasLimit(im) {
			return item
		}
	}
	return nil
}

func hasLimit(m *yaml.Node) bool {
	k1, _ := lookup(m, "rate_limit")
	k2, _ := lookup(m, "rate_limits")
	return k1 != nil || k2 != nil
}

// apply edits the rule item (a descriptor or an http_rules entry).
func (d *yamlDoc) apply(item *yaml.Node, rule string, p RulePatch) error {
	refuse := func(n *yaml.Node, reason string) error {
		return Errors{&Error{File: d.file.Name, Line: lineOf(n), Path: rule, Reason: reason}}
	}
	if shared(item) {
		return refuse(item, "the rule is written with a YAML anchor or alias; edit the domain's YAML instead")
	}
	if p.ShadowMode != nil {
		k, _ := lookup(item, "shadow_mode")
		if *p.ShadowMode || k != nil {
			d.set(item, "shadow_mode", boolNode(*p.ShadowMode))
		}
	}
	limitPatch := p.RequestsPerUnit != nil || p.Unit != nil || p.UnitMultiplier != nil || p.Algorithm != nil ||
		p.Burst != nil || p.Unlimited != nil || p.Name != nil
	if !limitPatch {
		return nil
	}
	rl := d.rateLimit(item)
	if rl == nil {
		_, many := lookup(item, "rate_limits")
		n := 0
		if many = deref(many); many != nil {
			n = len(many.Content)
		}
		return refuse(item, fmt.Sprintf("the rule has %d limits (rate_limits); edit the domain's YAML to change them", n))
	}
	if shared(rl) {
		return refuse(rl, "the rule's rate_limit is a YAML anchor or alias; edit the domain's YAML instead")
	}
	if p.Unlimited != nil && *p.Unlimited {
		if _, many := lookup(item, "rate_limits"); many != nil {
			return refuse(item, "unlimited is not allowed in rate_limits; edit the domain's YAML instead")
		}
		for _, k := range limitFields {
			d.del(rl, k)
		}
		d.set(rl, "unlimited", boolNode(true))
	} else {
		if p.Unlimited != nil || p.RequestsPerUnit != nil || p.Unit != nil || p.UnitMultiplier != nil ||
			p.Algorithm != nil || p.Burst != nil {
			d.del(rl, "unlimited") // setting a quota makes the rule limited
		}
		if p.Algorithm != nil {
			d.set(rl, "algorithm", strNode(*p.Algorithm))
			if a := strings.ToLower(*p.Algorithm); a != "token_bucket" && a != "gcra" && p.Burst == nil {
				d.del(rl, "burst") // only a token bucket has one
			}
		}
		if p.Unit != nil {
			d.set(rl, "unit", strNode(*p.Unit))
			d.del(rl, "window") // exclusive with unit
		}
		if p.UnitMultiplier != nil {
			if *p.UnitMultiplier == 0 {
				d.del(rl, "unit_multiplier")
			} else {
				d.set(rl, "unit_multiplier", intNode(uint64(*p.UnitMultiplier)))
			}
		}
		if p.RequestsPerUnit != nil {
			d.set(rl, "requests_per_unit", intNode(*p.RequestsPerUnit))
		}
		if p.Burst != nil {
			if *p.Burst == 0 {
				d.del(rl, "burst")
			} else {
				d.set(rl, "burst", intNode(*p.Burst))
			}
		}
	}
	if p.Name != nil {
		if *p.Name == "" {
			d.del(rl, "name")
		} else {
			d.set(rl, "name", strNode(*p.Name))
		}
	}
	return nil
}

// rateLimit returns the rule's one rate_limit mapping: rate_limit, or the single entry of rate_limits; nil
// when the rule has several limits (or a malformed one).
func (d *yamlDoc) rateLimit(item *yaml.Node) *yaml.Node {
	m := deref(item)
	if _, one := lookup(m, "rate_limit"); one != nil {
		if one.Kind == yaml.AliasNode {
			return one // refused by the caller
		}
		if one.Kind == yaml.ScalarNode && one.Tag == "!!null" { // "rate_limit:" with nothing: fill it in
			*one = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: one.Line, Column: one.Column,
				LineComment: one.LineComment}
		}
		if one.Kind == yaml.MappingNode {
			return one
		}
		return nil
	}
	_, many := lookup(m, "rate_limits")
	if many = deref(many); many != nil && many.Kind == yaml.SequenceNode && len(many.Content) == 1 {
		if e := many.Content[0]; e.Kind == yaml.AliasNode || e.Kind == yaml.MappingNode {
			return e
		}
	}
	return nil
}

// shared reports whether editing n in place would change other parts of the document too (or n itself
// is such a reference).
func shared(n *yaml.Node) bool {
	return n.Kind == yaml.AliasNode || n.Anchor != ""
}

// deref follows aliases (bounded, as the parser does).
func deref(n *yaml.Node) *yaml.Node {
	for hops := 0; n != nil && n.Kind == yaml.AliasNode; hops++ {
		if hops > 100 {
			return nil
		}
		n = n.Alias
	}
	return n
}

// scalar reads a scalar as the parser's str does ("" for null or a non-scalar).
func scalar(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return ""
	}
	return n.Value
}

// lookup returns the key and value nodes of key in mapping m (nil, nil when absent).
func lookup(m *yaml.Node, key string) (k, v *yaml.Node) {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if kn := deref(m.Content[i]); kn != nil && kn.Kind == yaml.ScalarNode && kn.Value == key {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}

// set gives key the value v in mapping m: the old value node is replaced (never edited, so a value shared
// through an anchor stays as it is where it is used), keeping its comments; a new key is appended.
func (d *yamlDoc) set(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if kn := deref(m.Content[i]); kn != nil && kn.Kind == yaml.ScalarNode && kn.Value == key {
			old := m.Content[i+1]
			v.HeadComment, v.LineComment, v.FootComment = old.HeadComment, old.LineComment, old.FootComment
			m.Content[i+1] = v
			d.detach(old)
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
}

// del removes key from mapping m, moving a head comment of the key to the next one.
func (d *yamlDoc) del(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if kn := deref(m.Content[i]); kn != nil && kn.Kind == yaml.ScalarNode && kn.Value == key {
			if head := m.Content[i].HeadComment; head != "" && i+2 < len(m.Content) && m.Content[i+2].HeadComment == "" {
				m.Content[i+2].HeadComment = head
			}
			old := m.Content[i+1]
			m.Content = slices.Delete(m.Content, i, i+2)
			d.detach(old)
			return
		}
	}
}

// detach keeps the aliases of a node that left the document valid: each becomes a copy of the node.
func (d *yamlDoc) detach(old *yaml.Node) {
	if old.Anchor == "" {
		return
	}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		for i, c := range n.Content {
			if c.Kind == yaml.AliasNode && c.Alias == old {
				cp := *old
				cp.Anchor = ""
				cp.HeadComment, cp.LineComment, cp.FootComment = c.HeadComment, c.LineComment, c.FootComment
				n.Content[i] = &cp
				continue
			}
			walk(c)
		}
	}
	walk(d.root)
}

func intNode(v uint64) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatUint(v, 10)}
}

func boolNode(v bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v)}
}

func strNode(v string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v}
}
