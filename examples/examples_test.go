package examples_test

import (
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/config"
	"github.com/floodgate/floodgate/examples"
)

// TestExamplesDocumented: every example file loads on its own, and README.md names every rule the
// examples define, so the documented table cannot silently drift from the files.
func TestExamplesDocumented(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	names, err := fs.Glob(examples.FS, "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 2 {
		t.Fatalf("got example files %v, want ratelimit.yaml and floodgate.yaml", names)
	}
	for _, n := range names {
		data, err := fs.ReadFile(examples.FS, n)
		if err != nil {
			t.Fatal(err)
		}
		s, err := config.Parse(n, data)
		if err != nil {
			t.Fatalf("example %s does not load:\n%v", n, err)
		}
		for _, d := range s.Domains() {
			if !strings.Contains(string(readme), "domain `"+d+"`") {
				t.Errorf("README.md: got no section for domain %q, want one", d)
			}
			var rules []string
			for _, r := range s.Rules(d) {
				rules = append(rules, r.Name)
				for _, l := range r.Limits {
					rules = append(rules, l.Name)
				}
			}
			for _, hr := range s.HTTPRules(d) {
				rules = append(rules, hr.Name)
			}
			if len(rules) == 0 {
				t.Errorf("%s: got no rules in domain %q, want some", n, d)
			}
			for _, name := range rules {
				if !strings.Contains(string(readme), "`"+name+"`") {
					t.Errorf("README.md: got no mention of rule %q of %s, want it documented", name, n)
				}
			}
		}
	}
}
