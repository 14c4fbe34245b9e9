package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/floodgate/floodgate/examples"
)

func ptr[T any](v T) *T { return &v }

// exampleFiles returns the bundled examples as Files, as Default reads them.
func exampleFiles(t *testing.T) []File {
	t.Helper()
	files, err := readDir(examples.FS, ".", "examples")
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// upstreamFiles returns the envoyproxy/ratelimit files of testdata that load, one File each.
func upstreamFiles(t *testing.T) []File {
	t.Helper()
	paths, _ := filepath.Glob("testdata/upstream/*.yaml")
	var out []File
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(p, data); err == nil {
			out = append(out, File{Name: p, Data: data})
		}
	}
	if len(out) < 5 {
		t.Fatalf("got %d loadable upstream files, want at least 5", len(out))
	}
	return out
}

// changedLines counts the lines of a and b that differ, position by position (both must have as many).
func changedLines(t *testing.T, a, b []byte) int {
	t.Helper()
	la, lb := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	if len(la) != len(lb) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lb), len(la), b)
	}
	n := 0
	for i := range la {
		if la[i] != lb[i] {
			n++
		}
	}
	return n
}

// TestPatchEveryRule bumps requests_per_unit of every single-limit rule of the examples and the upstream
// files: the result compiles, Diff reports exactly that change, and the file changes by exactly one line
// against the file written back unpatched (comments, order and blank lines survive; for the examples that
// is the file itself); the other files are untouched.
func TestPatchEveryRule(t *testing.T) {
	sets := map[string][]File{"examples": exampleFiles(t)}
	for _, f := range upstreamFiles(t) {
		sets[f.Name] = []File{f}
	}
	for name, files := range sets {
		before := mustParse(t, files...)
		for _, domain := range before.Domains() {
			rules := append([]*Rule(nil), before.Rules(domain)...)
			var httpNames []string
			for _, h := range before.HTTPRules(domain) {
				rules = append(rules, &h.Rule)
				httpNames = append(httpNames, h.Name)
			}
			for _, r := range rules {
				if len(r.Limits) != 1 {
					continue
				}
				id := r.Path
				if slices.Contains(httpNames, r.Name) && strings.Contains(r.Path, ".http_rules.") {
					id = r.Name
				}
				t.Run(name+"/"+id, func(t *testing.T) {
					want := r.Limits[0].RequestsPerUnit + 7
					out, err := PatchRule(files, domain, id, RulePatch{RequestsPerUnit: &want})
					if err != nil {
						t.Fatalf("PatchRule: %v", err)
					}
					after, err := ParseFiles(out...)
					if err != nil {
						t.Fatalf("patched files do not compile: %v", err)
					}
					cs := Diff(before, after)
					if len(cs) != 1 || cs[0].Op != OpChange || !slices.Equal(cs[0].Fields, []string{"requests_per_unit"}) {
						t.Fatalf("Diff: got %+v, want one requests_per_unit change", cs)
					}
					if got := cs[0].After.Limits[0].RequestsPerUnit; got != want {
						t.Errorf("requests_per_unit: got %d, want %d", got, want)
					}
					rt, err := PatchRule(files, domain, id, RulePatch{})
					if err != nil {
						t.Fatalf("PatchRule without changes: %v", err)
					}
					changed := 0
					for i := range files {
						if name == "examples" && string(rt[i].Data) != string(files[i].Data) {
							t.Errorf("%s written back unpatched differs:\n%s", files[i].Name, rt[i].Data)
						}
						if files[i].Name != out[i].Name {
							t.Errorf("file %d renamed from %s to %s", i, files[i].Name, out[i].Name)
						}
						if string(files[i].Data) != string(out[i].Data) {
							changed++
							if n := changedLines(t, rt[i].Data, out[i].Data); n != 1 {
								t.Errorf("%s: got %d changed lines, want 1:\n%s", files[i].Name, n, out[i].Data)
							}
						}
					}
					if changed != 1 {
						t.Errorf("got %d files changed, want 1", changed)
					}
				})
			}
		}
	}
}

func TestPatchRule(t *testing.T) {
	const api = `# head comment
domain: api
descriptors:
  # users
  - key: user
    rate_limit:
      unit: minute # per minute
      requests_per_unit: 10

  - key: user
    value: vip
    shadow_mode: true
    rate_limit:
      algorithm: token_bucket
      window: 30s
      requests_per_unit: 100
      burst: 200
  - key: free
    rate_limit:
      unlimited: true
  - key: tenant
    descriptors:
      - key: path
        value: /api/*/export
        rate_limits:
          - name: export
            unit: second
            requests_per_unit: 2
      - key: method
        rate_limits:
          - {unit: second, requests_per_unit: 2}
          - {unit: hour, requests_per_unit: 20}
http_rules:
  - name: login
    rate_limit: {unit: minute, requests_per_unit: 5}
`
	tests := []struct {
		name  string
		rule  string
		patch RulePatch
		want  string // the patched document; "" when only the compiled rule is checked
		check func(t *testing.T, s *Snapshot)
	}{
		{name: "requests and unit", rule: "api.user", patch: RulePatch{RequestsPerUnit: ptr[uint64](20), Unit: ptr("hour")},
			want: strings.Replace(strings.Replace(api, "unit: minute # per minute", "unit: hour # per minute", 1),
				"requests_per_unit: 10\n", "requests_per_unit: 20\n", 1)},
		{name: "unit replaces window, burst dropped with the algorithm", rule: "api.user_vip",
			patch: RulePatch{Unit: ptr("second"), UnitMultiplier: ptr[uint32](5), Algorithm: ptr("sliding_window"), ShadowMode: ptr(false)},
			check: func(t *testing.T, s *Snapshot) {
				r := findRule(t, s, "api", "api.user_vip")
				l := r.Limits[0]
				if l.Algorithm.String() != "sliding_window" || l.Unit != UnitSecond || l.UnitMultiplier != 5 || l.Burst != 0 || r.Shadow {
					t.Errorf("got %+v shadow %v, want sliding_window 100 per 5 seconds, no burst, no shadow", l, r.Shadow)
				}
			}},
		{name: "unlimited on", rule: "api.user", patch: RulePatch{Unlimited: ptr(true), RequestsPerUnit: ptr[uint64](3)},
			check: func(t *testing.T, s *Snapshot) {
				if r := findRule(t, s, "api", "api.user"); !r.Unlimited || len(r.Limits) != 0 {
					t.Errorf("got %+v, want unlimited", r)
				}
			}},
		{name: "unlimited off", rule: "api.free", patch: RulePatch{RequestsPerUnit: ptr[uint64](3), Unit: ptr("day")},
			check: func(t *testing.T, s *Snapshot) {
				if r := findRule(t, s, "api", "api.free"); r.Unlimited || r.Limits[0].Requests != 3 || r.Limits[0].Unit != UnitDay {
					t.Errorf("got %+v, want 3/day", r)
				}
			}},
		{name: "name and burst", rule: "api.user_vip", patch: RulePatch{Name: ptr("vip"), Burst: ptr[uint64](150)},
			check: func(t *testing.T, s *Snapshot) {
				if r := findRule(t, s, "api", "api.user_vip"); r.Name != "vip" || r.Limits[0].Burst != 150 {
					t.Errorf("got %+v, want name vip burst 150", r)
				}
			}},
		{name: "nested wildcard single rate_limits entry", rule: "api.tenant.path_/api/*/export", patch: RulePatch{RequestsPerUnit: ptr[uint64](4), Name: ptr("")},
			check: func(t *testing.T, s *Snapshot) {
				r := findRule(t, s, "api", "api.tenant.path_/api/*/export")
				if r.Limits[0].Requests != 4 || r.Limits[0].Name != "api.tenant.path_/api/*/export#1" {
					t.Errorf("got %+v, want 4 named by the path", r.Limits[0])
				}
			}},
		{name: "shadow on a rule with several limits", rule: "api.tenant.method", patch: RulePatch{ShadowMode: ptr(true)},
			check: func(t *testing.T, s *Snapshot) {
				if r := findRule(t, s, "api", "api.tenant.method"); !r.Shadow {
					t.Errorf("got %+v, want shadow", r)
				}
			}},
		{name: "http rule by name", rule: "login", patch: RulePatch{RequestsPerUnit: ptr[uint64](6)},
			want: strings.Replace(api, "{unit: minute, requests_per_unit: 5}", "{unit: minute, requests_per_unit: 6}", 1)},
		{name: "http rule by path", rule: "api.http_rules.login", patch: RulePatch{ShadowMode: ptr(true)},
			check: func(t *testing.T, s *Snapshot) {
				if hs := s.HTTPRules("api"); !hs[0].Shadow {
					t.Errorf("got %+v, want shadow", hs[0])
				}
			}},
	}
	other := File{Name: "other.yaml", Data: []byte("domain: other\ndescriptors: []\n")}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := []File{other, {Name: "api.yaml", Data: []byte(api)}}
			out, err := PatchRule(files, "api", tt.rule, tt.patch)
			if err != nil {
				t.Fatalf("PatchRule: %v", err)
			}
			if string(out[0].Data) != string(other.Data) {
				t.Errorf("the other domain's file changed:\n%s", out[0].Data)
			}
			if string(files[1].Data) != api {
				t.Error("PatchRule modified its input")
			}
			if tt.want != "" {
				if d := cmp.Diff(tt.want, string(out[1].Data)); d != "" {
					t.Errorf("document (-want +got):\n%s", d)
				}
			}
			s, err := ParseFiles(out...)
			if err != nil {
				t.Fatalf("patched document does not compile: %v\n%s", err, out[1].Data)
			}
			if tt.check != nil {
				tt.check(t, s)
			}
			if !strings.Contains(string(out[1].Data), "# head comment\n") || !strings.Contains(string(out[1].Data), "  # users\n") {
				t.Errorf("comments lost:\n%s", out[1].Data)
			}
		})
	}

	errTests := []struct {
		name, domain, rule string
		patch              RulePatch
		wantIs             error
		wantReason         string
	}{
		{"unknown rule", "api", "api.nobody", RulePatch{}, ErrNoSuchRule, ""},
		{"node without limit", "api", "api.tenant", RulePatch{}, ErrNoSuchRule, ""},
		{"unknown domain", "nope", "api.user", RulePatch{}, ErrNoSuchDomain, ""},
		{"several limits", "api", "api.tenant.method", RulePatch{RequestsPerUnit: ptr[uint64](1)}, nil, "the rule has 2 limits"},
		{"unlimited in rate_limits", "api", "api.tenant.path_/api/*/export", RulePatch{Unlimited: ptr(true)}, nil, "unlimited is not allowed in rate_limits"},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := PatchRule([]File{{Name: "api.yaml", Data: []byte(api)}}, tt.domain, tt.rule, tt.patch)
			if err == nil {
				t.Fatal("got no error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("got %v, want an error wrapping %v", err, tt.wantIs)
			}
			var es Errors
			if tt.wantReason != "" && (!errors.As(err, &es) || !strings.Contains(es[0].Reason, tt.wantReason) || es[0].Path != tt.rule) {
				t.Errorf("got %v, want Errors on %s with %q", err, tt.rule, tt.wantReason)
			}
		})
	}
}

func TestPatchRuleAliases(t *testing.T) {
	const aliased = `domain: api
descriptors:
  - key: a
    rate_limit: &l {unit: minute, requests_per_unit: 5}
  - key: b
    rate_limit: *l
  - key: c
    rate_limit: {unit: minute, requests_per_unit: &n 7}
  - key: d
    rate_limit: {unit: minute, requests_per_unit: *n}
`
	files := []File{{Name: "api.yaml", Data: []byte(aliased)}}
	for _, rule := range []string{"api.a", "api.b"} {
		_, err := PatchRule(files, "api", rule, RulePatch{RequestsPerUnit: ptr[uint64](1)})
		var es Errors
		if !errors.As(err, &es) || !strings.Contains(es[0].Reason, "anchor or alias") {
			t.Errorf("%s: got %v, want a refusal naming the alias", rule, err)
		}
	}
	// A shared value is replaced, not edited: the alias keeps the old value.
	out, err := PatchRule(files, "api", "api.c", RulePatch{RequestsPerUnit: ptr[uint64](9)})
	if err != nil {
		t.Fatal(err)
	}
	s := mustParse(t, out...)
	if c, d := findRule(t, s, "api", "api.c").Limits[0].Requests, findRule(t, s, "api", "api.d").Limits[0].Requests; c != 9 || d != 7 {
		t.Errorf("got c=%d d=%d, want c=9 d=7", c, d)
	}
}

func findRule(t *testing.T, s *Snapshot, domain, path string) *Rule {
	t.Helper()
	for _, r := range s.Rules(domain) {
		if r.Path == path {
			return r
		}
	}
	t.Fatalf("no rule %s in %s", path, domain)
	return nil
}

func TestDomainOf(t *testing.T) {
	tests := []struct {
		name, give string
		want       string
		wantErr    string // the error text
	}{
		{"yaml", "# c\ndomain: api\ndescriptors: []\n", "api", ""},
		{"json", `{"domain": "edge", "descriptors": []}`, "edge", ""},
		{"number", "domain: 42\n", "42", ""},
		{"missing", "descriptors: []\n", "", "f.yaml:1: domain: missing; every file names its domain"},
		{"empty", "domain: ''\n", "", "f.yaml:1: domain: must be a non-empty string"},
		{"list", "domain: [a]\n", "", "f.yaml:1: domain: must be a non-empty string"},
		{"not a mapping", "- a\n", "", "f.yaml:1: want a mapping with domain and descriptors"},
		{"empty file", "", "", "f.yaml: empty document; want a mapping with domain and descriptors"},
		{"two documents", "domain: a\n---\ndomain: b\n", "", "f.yaml:2: a file holds one document; found a second one"},
		{"syntax", "domain: [a\n", "", "f.yaml:1: invalid YAML: did not find expected ',' or ']'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DomainOf(File{Name: "f.yaml", Data: []byte(tt.give)})
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("got %q, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestReplaceAndRemoveDomain(t *testing.T) {
	files := exampleFiles(t)
	const api2 = "# new api\ndomain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: 1}\n"

	out, err := ReplaceDomain(files, "api", []byte(api2))
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(files) {
		t.Fatalf("got %d files, want %d", len(out), len(files))
	}
	i := slices.IndexFunc(out, func(f File) bool { return string(f.Data) == api2 })
	if i < 0 || out[i].Name != files[i].Name {
		t.Fatalf("replaced file: got index %d, want the api file's name kept", i)
	}
	if s := mustParse(t, out...); len(s.Rules("api")) != 1 {
		t.Errorf("got %d api rules, want 1", len(s.Rules("api")))
	}

	// A new domain is appended under api/; JSON is stored as block YAML.
	js := `{"domain": "shop", "descriptors": [{"key": "sku", "value": "123", "rate_limit": {"unit": "second", "requests_per_unit": 3}}]}`
	out, err = ReplaceDomain(files, "shop", []byte(js))
	if err != nil {
		t.Fatal(err)
	}
	last := out[len(out)-1]
	wantYAML := "domain: shop\ndescriptors:\n  - key: sku\n    value: \"123\"\n    rate_limit:\n      unit: second\n      requests_per_unit: 3\n"
	if last.Name != "api/shop.yaml" || string(last.Data) != wantYAML {
		t.Errorf("got %s:\n%s\nwant api/shop.yaml:\n%s", last.Name, last.Data, wantYAML)
	}
	if s := mustParse(t, out...); !s.HasDomain("shop") || !s.HasDomain("api") {
		t.Errorf("got domains %v, want shop added", s.Domains())
	}

	// The document's domain must be the one replaced.
	_, err = ReplaceDomain(files, "shop", []byte("domain: api\ndescriptors: []\n"))
	var e *Error
	if !errors.As(err, &e) || e.Path != "domain" || e.Line != 1 {
		t.Errorf("got %v, want an *Error on domain line 1", err)
	}
	_, err = ReplaceDomain(files, "api", []byte("domain: api\n  bad: [\n"))
	var es Errors
	if !errors.As(err, &es) || es[0].Line == 0 {
		t.Errorf("got %v, want Errors with a line", err)
	}

	out, err = RemoveDomain(files, "edge")
	if err != nil {
		t.Fatal(err)
	}
	if s := mustParse(t, out...); s.HasDomain("edge") || !s.HasDomain("api") || len(out) != len(files)-1 {
		t.Errorf("got domains %v in %d files, want only api", s.Domains(), len(out))
	}
	if _, err := RemoveDomain(files, "nope"); !errors.Is(err, ErrNoSuchDomain) {
		t.Errorf("got %v, want ErrNoSuchDomain", err)
	}
}

// FuzzPatchRule: PatchRule, DomainOf and ReplaceDomain never panic on any document, and a patch of a rule
// that compiled before gives a document that still decodes.
func FuzzPatchRule(f *testing.F) {
	names, _ := fs.Glob(examples.FS, "*.yaml")
	for _, n := range names {
		data, _ := fs.ReadFile(examples.FS, n)
		f.Add(data, "api.user", uint64(5))
	}
	f.Add([]byte("domain: a\ndescriptors:\n  - key: k\n    rate_limit: &x {unit: second, requests_per_unit: 1}\n  - key: j\n    rate_limit: *x\n"), "a.j", uint64(1))
	f.Add([]byte("domain: a\ndescriptors:\n  - key: k\n    value: |\n      x\n\n      y\n    rate_limit:\n      unit: second\n\n      requests_per_unit: 1\n"), "a.k_x\n\ny\n", uint64(2))
	f.Add([]byte("domain: a\nhttp_rules:\n  - name: n\n    rate_limit:\n"), "n", uint64(0))
	f.Fuzz(func(t *testing.T, data []byte, rule string, n uint64) {
		files := []File{{Name: "f.yaml", Data: data}}
		domain, err := DomainOf(files[0])
		if err != nil {
			return
		}
		_, _ = ReplaceDomain(files, domain, data)
		out, err := PatchRule(files, domain, rule, RulePatch{RequestsPerUnit: &n, ShadowMode: ptr(true), Unit: ptr("second")})
		if err != nil {
			return
		}
		if _, err := DomainOf(out[0]); err != nil {
			t.Fatalf("patched document does not decode: %v\n%s", err, out[0].Data)
		}
	})
}
