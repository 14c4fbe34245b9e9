package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestParseNames: control characters (below 0x20, and 0x7f) are refused in every name the parser reads;
// a domain names a file, so it is also refused empty, longer than 128 bytes, with '/' or '\' or a leading
// '.'. Each problem is one *Error naming the field.
func TestParseNames(t *testing.T) {
	rl := "rate_limit: {unit: minute, requests_per_unit: 5}"
	tests := []struct {
		name, give, want string
	}{
		{"domain NUL", doc(`domain: "a\0b"`, "descriptors: []"),
			`limits/api.yaml:1: domain: must not contain control characters (0x00 at byte 1)`},
		{"domain tab", doc(`domain: "a\tb"`, "descriptors: []"),
			`limits/api.yaml:1: domain: must not contain control characters (0x09 at byte 1)`},
		{"domain CR", doc(`domain: "api\r"`, "descriptors: []"),
			`limits/api.yaml:1: domain: must not contain control characters (0x0d at byte 3)`},
		{"domain DEL", doc(`domain: "\x7fapi"`, "descriptors: []"),
			`limits/api.yaml:1: domain: must not contain control characters (0x7f at byte 0)`},
		{"domain slash", doc(`domain: ../etc/passwd`, "descriptors: []"),
			`limits/api.yaml:1: domain: must not contain '/' or '\' (the domain names a file)`},
		{"domain inner slash", doc(`domain: a/b`, "descriptors: []"),
			`limits/api.yaml:1: domain: must not contain '/' or '\' (the domain names a file)`},
		{"domain backslash", doc(`domain: 'a\b'`, "descriptors: []"),
			`limits/api.yaml:1: domain: must not contain '/' or '\' (the domain names a file)`},
		{"domain dot", doc(`domain: .api`, "descriptors: []"),
			`limits/api.yaml:1: domain: must not start with '.' (the domain names a file)`},
		{"domain long", doc("domain: "+strings.Repeat("d", 129), "descriptors: []"),
			`limits/api.yaml:1: domain: is 129 bytes long; at most 128 (the domain names a file)`},
		{"domain null", doc("domain:", "descriptors: []"),
			`limits/api.yaml:1: domain: must not be empty`},
		{"key LF", doc("domain: api", "descriptors:", `  - key: "us\ner"`, "    "+rl),
			`limits/api.yaml:3: descriptors[0].key: must not contain control characters (0x0a at byte 2)`},
		{"nested key NUL", doc("domain: api", "descriptors:", "  - key: a", "    descriptors:", `      - key: "b\0"`, "        "+rl),
			`limits/api.yaml:5: descriptors[0].descriptors[0].key: must not contain control characters (0x00 at byte 1)`},
		{"value NUL", doc("domain: api", "descriptors:", "  - key: user", `    value: "vip\0"`, "    "+rl),
			`limits/api.yaml:4: descriptors[0].value: must not contain control characters (0x00 at byte 3)`},
		{"wildcard value TAB", doc("domain: api", "descriptors:", "  - key: path", `    value: "/a\t*"`, "    "+rl),
			`limits/api.yaml:4: descriptors[0].value: must not contain control characters (0x09 at byte 2)`},
		{"rate_limit name", doc("domain: api", "descriptors:", "  - key: user", "    rate_limit:", `      name: "n\r"`, "      unit: minute", "      requests_per_unit: 5"),
			`limits/api.yaml:5: descriptors[0].rate_limit.name: must not contain control characters (0x0d at byte 1)`},
		{"rate_limits name", doc("domain: api", "descriptors:", "  - key: user", "    rate_limits:", `      - {name: "\x01", unit: minute, requests_per_unit: 5}`),
			`limits/api.yaml:5: descriptors[0].rate_limits[0].name: must not contain control characters (0x01 at byte 0)`},
		{"replaces name", doc("domain: api", "descriptors:", "  - key: user", "    rate_limit:", `      replaces: [{name: "x\x1f"}]`, "      unit: minute", "      requests_per_unit: 5"),
			`limits/api.yaml:5: descriptors[0].rate_limit.replaces[0].name: must not contain control characters (0x1f at byte 1)`},
		{"http rule name", doc("domain: edge", "http_rules:", `  - name: "lo\tgin"`, "    "+rl),
			`limits/api.yaml:3: http_rules[0].name: must not contain control characters (0x09 at byte 2)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse("limits/api.yaml", []byte(tt.give))
			if err == nil || s != nil {
				t.Fatalf("got %v, want error %q", err, tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("got error\n%s\nwant\n%s", got, tt.want)
			}
			var es Errors
			if !errors.As(err, &es) || len(es) != 1 {
				t.Errorf("got %T %v, want Errors with one *Error", err, err)
			}
		})
	}

	// What names in the wild look like still loads: identifiers, dots, dashes, unicode, 128 bytes, and
	// values with '/', '*', spaces and ':'.
	for _, d := range []string{"api", "rl-2.prod_eu", "ünï", strings.Repeat("d", 128), "a.b", "x..y", "history"} {
		give := doc(fmt.Sprintf("domain: %q", d), "descriptors:", "  - key: 'x-api key'", "    value: '/api/* v1:2'",
			"    rate_limit: {name: 'a b/c', unit: minute, requests_per_unit: 5}",
			"http_rules:", "  - name: 'login / POST'", "    "+rl)
		if _, err := Parse("limits/api.yaml", []byte(give)); err != nil {
			t.Errorf("domain %q: got %v, want it to load", d, err)
		}
	}
}

// TestDomainNameChecks: the document edits refuse a domain name that cannot be a file name before it
// becomes one (ReplaceDomain's file is api/<domain>.yaml), and DomainOf reports such a name as an *Error.
func TestDomainNameChecks(t *testing.T) {
	files := exampleFiles(t)
	for _, d := range []string{"", "../../etc/cron.d/x", "a/b", `a\b`, ".env", "a\x00b", "a\nb", strings.Repeat("x", 129)} {
		data := fmt.Appendf(nil, "domain: %q\ndescriptors: []\n", d)
		out, err := ReplaceDomain(files, d, data)
		var e *Error
		if !errors.As(err, &e) || e.Path != "domain" || out != nil {
			t.Errorf("ReplaceDomain(%q): got %v, want an *Error on domain", d, err)
		} else if strings.Contains(e.File, d) && d != "" {
			t.Errorf("ReplaceDomain(%q): the error's file %q is built from the bad name", d, e.File)
		}
		if got, err := DomainOf(File{Name: "f.yaml", Data: data}); !errors.As(err, &e) || e.Path != "domain" {
			t.Errorf("DomainOf(domain %q): got %q, %v; want an *Error on domain", d, got, err)
		}
	}
}
