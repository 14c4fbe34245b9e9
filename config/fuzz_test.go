package config

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/examples"
)

// FuzzParseLimits: Parse never panics, and a snapshot it returns answers Match, HTTPRules and Matches
// without panicking, with valid limits only.
func FuzzParseLimits(f *testing.F) {
	names, _ := fs.Glob(examples.FS, "*.yaml")
	for _, n := range names {
		data, _ := fs.ReadFile(examples.FS, n)
		f.Add(data)
	}
	seeds, _ := filepath.Glob("testdata/upstream/*.yaml")
	for _, p := range append(seeds, "testdata/conformance.yaml") {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	for _, s := range []string{
		"",
		"domain: a\ndescriptors:\n  - key: k\n    value: 'a*b*'\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
		"domain: a\ndescriptors:\n  - key: k\n    rate_limit: &r {window: 1ms, requests_per_unit: 0}\n  - key: j\n    rate_limit: *r\n",
		"domain: a\nhttp_rules:\n  - name: x\n    key: [{header: ':authority', hash: true}, client_ip]\n    rate_limits: [{unit: day, requests_per_unit: 1}]\n",
		"domain: a\ndescriptors:\n  - key: k\n    rate_limit:\n      <<: {unit: second}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("fuzz.yaml", data)
		if err != nil {
			if s != nil {
				t.Fatalf("got a snapshot and error %v, want only the error", err)
			}
			if err.Error() == "" {
				t.Fatal("got an empty error message")
			}
			return
		}
		// Probe with entries made of the document's own words, so keys and values that exist are hit.
		words := strings.FieldsFunc(string(data), func(r rune) bool { return strings.ContainsRune(" \n:{}[],'\"-", r) })
		if len(words) > 40 {
			words = words[:40]
		}
		for _, d := range s.Domains() {
			for i := 0; i+1 < len(words); i++ {
				for depth := 1; depth <= 3 && i+2*depth <= len(words); depth++ {
					es := make([]Entry, depth)
					for j := range es {
						es[j] = Entry{Key: words[i+2*j], Value: words[i+2*j+1]}
					}
					if r, ok := s.Match(d, es); ok {
						if r == nil || (!r.Unlimited && len(r.Limits) == 0) {
							t.Fatalf("Match(%s, %v): got ok with rule %+v, want limits or unlimited", d, es, r)
						}
						for _, l := range r.Limits {
							if err := l.Limit.Validate(); err != nil {
								t.Fatalf("rule %s limit %s: %v", r.Name, l.Name, err)
							}
						}
					}
				}
			}
			for _, hr := range s.HTTPRules(d) {
				if len(hr.Key) == 0 || hr.Name == "" {
					t.Fatalf("http rule %+v: want a name and a key", hr)
				}
				for _, w := range words {
					hr.Matches(w, w, w)
				}
			}
		}
	})
}
