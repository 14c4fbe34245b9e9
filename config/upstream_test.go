package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readUpstream(t *testing.T, name string) File {
	t.Helper()
	p := filepath.Join("testdata", "upstream", name)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return File{Name: p, Data: data}
}

// TestUpstreamFiles: every file envoyproxy/ratelimit's own tests accept loads unchanged; every file they
// reject is rejected here too, for the same reason.
func TestUpstreamFiles(t *testing.T) {
	good := []string{"basic_config.yaml", "wildcard.yaml", "metadata.yaml", "shadowmode_config.yaml",
		"share_threshold.yaml", "merge_domain_key1.yaml", "merge_domain_key2.yaml", "duplicate_domain.yaml",
		"example_config.yaml", "example_example.yaml"}
	for _, name := range good {
		f := readUpstream(t, name)
		if _, err := ParseFiles(f); err != nil {
			t.Errorf("%s: got error\n%v\nwant it to load", name, err)
		}
	}
	bad := []struct {
		files []string
		want  string // in the error text
	}{
		{[]string{"bad_limit_unit.yaml"}, `unknown unit "foo"`},
		{[]string{"bad_yaml.yaml"}, "invalid YAML"},
		{[]string{"duplicate_key.yaml"}, "duplicate descriptor test-domain.key1_value1"},
		{[]string{"empty_domain.yaml"}, "domain: missing"},
		{[]string{"empty_key.yaml"}, "descriptors[0].key: missing"},
		{[]string{"misspelled_key.yaml"}, `unknown key "ratelimit"`},
		{[]string{"misspelled_key2.yaml"}, `unknown key "requestsperunit"`},
		{[]string{"non_map_list.yaml"}, "descriptors[0]: want a mapping"},
		{[]string{"non_string_key.yaml"}, `unknown key "0.25"`},
		{[]string{"replaces_empty.yaml"}, "replaces[0].name: must not be empty"},
		{[]string{"replaces_self.yaml"}, `must not name its own rule "self"`},
		{[]string{"unlimited_with_unit.yaml"}, "unit: cannot be combined with unlimited: true"},
		{[]string{"basic_config.yaml", "duplicate_domain.yaml"}, `domain "test-domain" is already defined`},
		{[]string{"merge_domain_key1.yaml", "merge_domain_key2.yaml"}, "is already defined"},
	}
	for _, tt := range bad {
		var files []File
		for _, n := range tt.files {
			files = append(files, readUpstream(t, n))
		}
		s, err := ParseFiles(files...)
		if err == nil || !strings.Contains(err.Error(), tt.want) || s != nil {
			t.Errorf("%v: got error %v, want one containing %q", tt.files, err, tt.want)
		}
	}
}

// TestUpstreamMatches ports the expectations of envoyproxy/ratelimit's TestBasicConfig and
// TestWildcardConfig (test/config/config_test.go); Rule.Path equals upstream's stats key.
func TestUpstreamMatches(t *testing.T) {
	type want struct {
		path      string // "" = nil limit upstream
		requests  uint64
		unit      Unit
		unlimited bool
	}
	tests := []struct {
		file string
		give []Entry
		want want
	}{
		{"basic_config.yaml", nil, want{}},
		{"basic_config.yaml", entries("key1", "something"), want{}},
		{"basic_config.yaml", entries("key1", "value1"), want{}},
		{"basic_config.yaml", entries("key2", "value2", "subkey", "subvalue"), want{}},
		{"basic_config.yaml", entries("key5", "value5", "subkey5", "subvalue"), want{}},
		{"basic_config.yaml", entries("key1", "value1", "subkey1", "something"), want{"test-domain.key1_value1.subkey1", 5, UnitSecond, false}},
		{"basic_config.yaml", entries("key1", "value1", "subkey1", "subvalue1"), want{"test-domain.key1_value1.subkey1_subvalue1", 10, UnitSecond, false}},
		{"basic_config.yaml", entries("key2", "something"), want{"test-domain.key2", 20, UnitMinute, false}},
		{"basic_config.yaml", entries("key2", "value2"), want{"test-domain.key2_value2", 30, UnitMinute, false}},
		{"basic_config.yaml", entries("key2", "value3"), want{}},
		{"basic_config.yaml", entries("key3", "foo"), want{"test-domain.key3", 1, UnitHour, false}},
		{"basic_config.yaml", entries("key4", "foo"), want{"test-domain.key4", 1, UnitDay, false}},
		{"basic_config.yaml", entries("key5", "value5"), want{"test-domain.key5_value5", 15, UnitDay, false}},
		{"basic_config.yaml", entries("key5", "value5", "subkey5", "subvalue5"), want{"test-domain.key5_value5.subkey5_subvalue5", 25, UnitDay, false}},
		{"basic_config.yaml", entries("key6", "foo"), want{path: "test-domain.key6", unlimited: true}},
		{"basic_config.yaml", entries("key7", "unspecified"), want{"test-domain.key7", 70, UnitMinute, false}},
		{"wildcard.yaml", entries("noVal", "foo1"), want{"test-domain.noVal", 20, UnitMinute, false}},
		{"wildcard.yaml", entries("wild", "foo1"), want{"test-domain.wild_foo*", 20, UnitMinute, false}},
		{"wildcard.yaml", entries("nestedWild", "val1", "wild", "goo2"), want{"test-domain.nestedWild_val1.wild_goo*", 20, UnitMinute, false}},
		{"wildcard.yaml", entries("wild", "bar"), want{}},
		{"wildcard.yaml", entries("noWild", "foo1"), want{}},
		{"wildcard.yaml", entries("midWild", "barab"), want{"test-domain.midWild_bar*b", 20, UnitMinute, false}},
		{"wildcard.yaml", entries("midWild", "barb"), want{"test-domain.midWild_bar*b", 20, UnitMinute, false}},
		{"wildcard.yaml", entries("midWild", "bara"), want{}},
		{"wildcard.yaml", entries("midWild", "xbarb"), want{}},
		{"wildcard.yaml", entries("multiWild", "foo123bar456baz"), want{"test-domain.multiWild_foo*bar*baz", 10, UnitMinute, false}},
		{"wildcard.yaml", entries("multiWild", "foobarbaz"), want{"test-domain.multiWild_foo*bar*baz", 10, UnitMinute, false}},
		{"wildcard.yaml", entries("multiWild", "foo123baz"), want{}},
		{"wildcard.yaml", entries("multiWild", "bar456baz"), want{}},
	}
	snaps := map[string]*Snapshot{}
	for _, tt := range tests {
		s := snaps[tt.file]
		if s == nil {
			var err error
			if s, err = ParseFiles(readUpstream(t, tt.file)); err != nil {
				t.Fatal(err)
			}
			snaps[tt.file] = s
		}
		var got want
		if r, ok := s.Match("test-domain", tt.give); ok {
			got = want{path: r.Path, unlimited: r.Unlimited}
			if len(r.Limits) > 0 {
				got.requests, got.unit = r.Limits[0].RequestsPerUnit, r.Limits[0].Unit
				if r.Limits[0].Window != r.Limits[0].Unit.Duration() {
					t.Errorf("%s %v: got window %s, want one %s", tt.file, tt.give, r.Limits[0].Window, r.Limits[0].Unit)
				}
			}
		}
		if got != tt.want {
			t.Errorf("%s %v: got %+v, want %+v", tt.file, tt.give, got, tt.want)
		}
	}
	// key4 carries an explicit name, which is the rule name (and the replaces target).
	if r, _ := snaps["basic_config.yaml"].Match("test-domain", entries("key4", "x")); r.Name != "key4_rate_limit" {
		t.Errorf("key4: got name %q, want key4_rate_limit", r.Name)
	}
}
