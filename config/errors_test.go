package config

import (
	"errors"
	"strings"
	"testing"
)

// doc builds a YAML document from lines (tabs are not allowed in YAML, so tests write two spaces).
func doc(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		give string
		want string // the whole error text, one line per problem
	}{
		{"unknown descriptor key", doc(
			"domain: api",
			"descriptors:",
			"  - key: user",
			"    rate_limt: {unit: minute, requests_per_unit: 5}",
		), `limits/api.yaml:4: descriptors[0]: unknown key "rate_limt" (want key, value, rate_limit, rate_limits, descriptors, shadow_mode, quota_mode, detailed_metric, value_to_metric, share_threshold, metadata)`},
		{"unknown rate_limit key", "domain: api\ndescriptors:\n  - key: user\n    rate_limit:\n      unit: minute\n      requests_per_minute: 5\n",
			"limits/api.yaml:5: descriptors[0].rate_limit.requests_per_unit: missing (0 blocks every request; write it if you mean it)\nlimits/api.yaml:6: descriptors[0].rate_limit: unknown key \"requests_per_minute\" (want unit, requests_per_unit, unlimited, name, replaces, algorithm, burst, window, unit_multiplier)"},
		{"unknown root key", "domain: api\ndescriptor:\n  - key: user\n",
			"limits/api.yaml:2: unknown key \"descriptor\" (want domain, descriptors, http_rules)"},
		{"duplicate descriptor", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: 5}\n  - key: user\n    value: vip\n    rate_limit: {unit: minute, requests_per_unit: 10}\n  - key: user\n    value: vip\n    rate_limit: {unit: minute, requests_per_unit: 20}\n",
			"limits/api.yaml:8: descriptors[2]: duplicate descriptor api.user_vip (first at line 5)"},
		{"duplicate nested descriptor", "domain: api\ndescriptors:\n  - key: a\n    descriptors:\n      - key: b\n        value: '*'\n        rate_limit: {unit: minute, requests_per_unit: 5}\n      - key: b\n        value: '*'\n        rate_limit: {unit: minute, requests_per_unit: 5}\n",
			"limits/api.yaml:8: descriptors[0].descriptors[1]: duplicate descriptor api.a.b_* (first at line 5)"},
		{"duplicate map key", "domain: api\ndescriptors:\n  - key: user\n    rate_limit:\n      unit: minute\n      requests_per_unit: 5\n      requests_per_unit: 50\n",
			"limits/api.yaml:7: descriptors[0].rate_limit.requests_per_unit: duplicate key \"requests_per_unit\" (first at line 6)"},
		{"missing domain", "descriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: 5}\n",
			"limits/api.yaml:1: domain: missing; every file names its domain"},
		{"empty domain", "domain: ''\ndescriptors: []\n",
			"limits/api.yaml:1: domain: must not be empty"},
		{"bad unit", "domain: api\ndescriptors:\n  - key: user\n    rate_limit:\n      unit: minutes\n      requests_per_unit: 5\n",
			"limits/api.yaml:5: descriptors[0].rate_limit.unit: unknown unit \"minutes\" (want second, minute, hour, day, week, month or year)"},
		{"negative", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: -1}\n",
			"limits/api.yaml:4: descriptors[0].rate_limit.requests_per_unit: must not be negative, got -1"},
		{"above max", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: 1152921504606846976}\n",
			"limits/api.yaml:4: descriptors[0].rate_limit.requests_per_unit: 1152921504606846976 is above the maximum 1125899906842624"},
		{"overflow", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: 99999999999999999999}\n",
			"limits/api.yaml:4: descriptors[0].rate_limit.requests_per_unit: 99999999999999999999 is above the maximum 1125899906842624"},
		{"negative overflow", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: -99999999999999999999}\n",
			"limits/api.yaml:4: descriptors[0].rate_limit.requests_per_unit: must not be negative, got -99999999999999999999"},
		{"quoted number", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: \"5\"}\n",
			"limits/api.yaml:4: descriptors[0].rate_limit.requests_per_unit: want a whole number, got \"5\""},
		{"not a number", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: five}\n",
			"limits/api.yaml:4: descriptors[0].rate_limit.requests_per_unit: want a whole number, got \"five\""},
		{"float", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: 1.5}\n",
			"limits/api.yaml:4: descriptors[0].rate_limit.requests_per_unit: want a whole number, got \"1.5\""},
		{"unlimited with unit", "domain: api\ndescriptors:\n  - key: user\n    rate_limit:\n      unlimited: true\n      unit: minute\n",
			"limits/api.yaml:6: descriptors[0].rate_limit.unit: cannot be combined with unlimited: true"},
		{"unlimited with requests", "domain: api\ndescriptors:\n  - key: user\n    rate_limit:\n      unlimited: true\n      requests_per_unit: 5\n",
			"limits/api.yaml:6: descriptors[0].rate_limit.requests_per_unit: cannot be combined with unlimited: true"},
		{"empty key", "domain: api\ndescriptors:\n  - key: ''\n    rate_limit: {unit: minute, requests_per_unit: 5}\n",
			"limits/api.yaml:3: descriptors[0].key: must not be empty"},
		{"missing key", "domain: api\ndescriptors:\n  - value: x\n    rate_limit: {unit: minute, requests_per_unit: 5}\n",
			"limits/api.yaml:3: descriptors[0].key: missing; every descriptor has a key"},
		{"missing unit", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {requests_per_unit: 5}\n",
			"limits/api.yaml:4: descriptors[0].rate_limit.unit: missing (want second, minute, hour, day, week, month or year, or a window such as 30s)"},
		{"missing requests", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: second}\n",
			"limits/api.yaml:4: descriptors[0].rate_limit.requests_per_unit: missing (0 blocks every request; write it if you mean it)"},
		{"burst without token bucket", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: second, requests_per_unit: 5, burst: 10}\n",
			"limits/api.yaml:4: descriptors[0].rate_limit.burst: only allowed with algorithm: token_bucket"},
		{"burst zero", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: second, requests_per_unit: 5, burst: 0, algorithm: token_bucket}\n",
			"limits/api.yaml:4: descriptors[0].rate_limit.burst: must be at least 1"},
		{"window and unit", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: second, window: 30s, requests_per_unit: 5}\n",
			"limits/api.yaml:4: descriptors[0].rate_limit.window: cannot be combined with unit"},
		{"window multiplier", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit_multiplier: 2, window: 30s, requests_per_unit: 5}\n",
			"limits/api.yaml:4: descriptors[0].rate_limit.unit_multiplier: only allowed with unit, not with window"},
		{"bad window", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {window: 30 seconds, requests_per_unit: 5}\n",
			"limits/api.yaml:4: descriptors[0].rate_limit.window: invalid duration \"30 seconds\" (want e.g. 30s, 1m30s, 250ms)"},
		{"sub-ms window", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {window: 1500us, requests_per_unit: 5}\n",
			"limits/api.yaml:4: descriptors[0].rate_limit.window: 1500us is not a whole number of milliseconds of at least 1ms"},
		{"zero window", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {window: 0s, requests_per_unit: 5}\n",
			"limits/api.yaml:4: descriptors[0].rate_limit.window: 0s is not a whole number of milliseconds of at least 1ms"},
		{"huge window", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {window: 100000h, requests_per_unit: 5}\n",
			"limits/api.yaml:4: descriptors[0].rate_limit.window: 100000h is longer than the maximum 10 years"},
		{"zero multiplier", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, unit_multiplier: 0, requests_per_unit: 5}\n",
			"limits/api.yaml:4: descriptors[0].rate_limit.unit_multiplier: must be at least 1"},
		{"huge multiplier", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: year, unit_multiplier: 11, requests_per_unit: 5}\n",
			"limits/api.yaml:4: descriptors[0].rate_limit.unit_multiplier: 11 is above the maximum 10"},
		{"both rate_limit and rate_limits", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: second, requests_per_unit: 5}\n    rate_limits:\n      - {unit: day, requests_per_unit: 5}\n",
			"limits/api.yaml:5: descriptors[0].rate_limits: cannot be combined with rate_limit"},
		{"same algorithm and window", "domain: api\ndescriptors:\n  - key: user\n    rate_limits:\n      - {unit: minute, requests_per_unit: 5}\n      - {window: 60s, requests_per_unit: 9}\n",
			"limits/api.yaml:6: descriptors[0].rate_limits[1]: same algorithm and window as rate_limits[0] (fixed_window per 1m0s); merge them"},
		{"duplicate limit names", "domain: api\ndescriptors:\n  - key: user\n    rate_limits:\n      - {unit: minute, requests_per_unit: 5, name: x}\n      - {unit: hour, requests_per_unit: 9, name: x}\n",
			"limits/api.yaml:6: descriptors[0].rate_limits[1].name: duplicate limit name \"x\" (also rate_limits[0])"},
		{"empty rate_limits", "domain: api\ndescriptors:\n  - key: user\n    rate_limits: []\n",
			"limits/api.yaml:4: descriptors[0].rate_limits: empty list; want at least one limit"},
		{"unlimited in rate_limits", "domain: api\ndescriptors:\n  - key: user\n    rate_limits:\n      - {unlimited: true}\n",
			"limits/api.yaml:5: descriptors[0].rate_limits[0].unlimited: not allowed in rate_limits; use rate_limit: {unlimited: true}"},
		{"unknown algorithm", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: 5, algorithm: leaky_bucket}\n",
			"limits/api.yaml:4: descriptors[0].rate_limit.algorithm: unknown algorithm \"leaky_bucket\" (want fixed_window, sliding_window, token_bucket or gcra)"},
		{"replaces itself", "domain: api\ndescriptors:\n  - key: user\n    rate_limit:\n      name: u\n      replaces: [{name: u}]\n      unit: minute\n      requests_per_unit: 5\n",
			"limits/api.yaml:5: descriptors[0].rate_limit.replaces: must not name its own rule \"u\""},
		{"replaces empty", "domain: api\ndescriptors:\n  - key: user\n    rate_limit:\n      replaces: [{name: ''}]\n      unit: minute\n      requests_per_unit: 5\n",
			"limits/api.yaml:5: descriptors[0].rate_limit.replaces[0].name: must not be empty"},
		{"share_threshold without wildcard", "domain: api\ndescriptors:\n  - key: user\n    value: x\n    share_threshold: true\n    rate_limit: {unit: minute, requests_per_unit: 5}\n",
			"limits/api.yaml:5: descriptors[0].share_threshold: only allowed with a wildcard value (containing '*')"},
		{"bad bool", "domain: api\ndescriptors:\n  - key: user\n    shadow_mode: maybe\n    rate_limit: {unit: minute, requests_per_unit: 5}\n",
			"limits/api.yaml:4: descriptors[0].shadow_mode: want true or false, got \"maybe\""},
		{"second document", "domain: api\ndescriptors: []\n---\ndomain: other\n",
			"limits/api.yaml:3: a file holds one document; found a second one"},
		{"syntax error", "domain: api\ndescriptors:\n  - key: user\n   rate_limit: {unit: minute\n",
			"limits/api.yaml:2: invalid YAML: did not find expected '-' indicator"},
		{"empty file", "",
			"limits/api.yaml: empty file; want a mapping with domain and descriptors"},
		{"comments only", "# nothing\n",
			"limits/api.yaml: empty file; want a mapping with domain and descriptors"},
		{"list at root", "- domain: api\n",
			"limits/api.yaml:1: want a mapping, got a list"},
		{"descriptors not a list", "domain: api\ndescriptors: {key: user}\n",
			"limits/api.yaml:2: descriptors: want a list, got a mapping"},
		{"rate_limit null", "domain: api\ndescriptors:\n  - key: user\n    rate_limit:\n",
			"limits/api.yaml:4: descriptors[0].rate_limit: want a mapping, got nothing"},
		{"merge key", "domain: api\ndescriptors:\n  - key: a\n    rate_limit: &rl {unit: minute, requests_per_unit: 5}\n  - key: b\n    rate_limit:\n      <<: *rl\n      requests_per_unit: 6\n",
			"limits/api.yaml:7: descriptors[1].rate_limit: merge keys (<<) are not supported\nlimits/api.yaml:7: descriptors[1].rate_limit.unit: missing (want second, minute, hour, day, week, month or year, or a window such as 30s)"},
		{"several errors", "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: minutes, requests_per_unit: 5}\n  - key: ip\n    rate_limit: {unit: minute, requests_per_unit: -5}\n",
			"limits/api.yaml:4: descriptors[0].rate_limit.unit: unknown unit \"minutes\" (want second, minute, hour, day, week, month or year)\nlimits/api.yaml:6: descriptors[1].rate_limit.requests_per_unit: must not be negative, got -5"},
		{"http unknown key", "domain: edge\nhttp_rules:\n  - name: a\n    path_prefix: /x\n    rate_limit: {unit: minute, requests_per_unit: 5}\n",
			"limits/api.yaml:4: http_rules[0]: unknown key \"path_prefix\" (want name, match, key, on_missing, rate_limit, rate_limits, shadow_mode)"},
		{"http bad method", "domain: edge\nhttp_rules:\n  - name: a\n    match: {methods: [GET, FETCH]}\n    rate_limit: {unit: minute, requests_per_unit: 5}\n",
			"limits/api.yaml:4: http_rules[0].match.methods[1]: unknown method \"FETCH\" (want one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH)"},
		{"http duplicate method", "domain: edge\nhttp_rules:\n  - name: a\n    match: {methods: [get, GET]}\n    rate_limit: {unit: minute, requests_per_unit: 5}\n",
			"limits/api.yaml:4: http_rules[0].match.methods[1]: method GET listed twice"},
		{"http empty header", "domain: edge\nhttp_rules:\n  - name: a\n    key: [{header: ''}]\n    rate_limit: {unit: minute, requests_per_unit: 5}\n",
			"limits/api.yaml:4: http_rules[0].key[0].header: invalid header name \"\""},
		{"http bad header", "domain: edge\nhttp_rules:\n  - name: a\n    key: [{header: 'x api key'}]\n    rate_limit: {unit: minute, requests_per_unit: 5}\n",
			"limits/api.yaml:4: http_rules[0].key[0].header: invalid header name \"x api key\""},
		{"http duplicate name", "domain: edge\nhttp_rules:\n  - name: a\n    rate_limit: {unit: minute, requests_per_unit: 5}\n  - name: a\n    rate_limit: {unit: minute, requests_per_unit: 6}\n",
			"limits/api.yaml:5: http_rules[1].name: duplicate http rule name \"a\" (first at line 3)"},
		{"http missing name", "domain: edge\nhttp_rules:\n  - rate_limit: {unit: minute, requests_per_unit: 5}\n",
			"limits/api.yaml:3: http_rules[0].name: missing; every http rule has a unique name"},
		{"http bad on_missing", "domain: edge\nhttp_rules:\n  - name: a\n    on_missing: fallback\n    rate_limit: {unit: minute, requests_per_unit: 5}\n",
			"limits/api.yaml:4: http_rules[0].on_missing: unknown policy \"fallback\" (want client_ip, skip or deny)"},
		{"http unknown key source", "domain: edge\nhttp_rules:\n  - name: a\n    key: [client_ip, cookie]\n    rate_limit: {unit: minute, requests_per_unit: 5}\n",
			"limits/api.yaml:4: http_rules[0].key[1]: unknown key source \"cookie\" (want client_ip, path, method, host, {header: NAME} or {jwt_claim: NAME})"},
		{"http header and claim", "domain: edge\nhttp_rules:\n  - name: a\n    key: [{header: x, jwt_claim: sub}]\n    rate_limit: {unit: minute, requests_per_unit: 5}\n",
			"limits/api.yaml:4: http_rules[0].key[0]: header and jwt_claim are exclusive; use two key parts"},
		{"http empty key list", "domain: edge\nhttp_rules:\n  - name: a\n    key: []\n    rate_limit: {unit: minute, requests_per_unit: 5}\n",
			"limits/api.yaml:4: http_rules[0].key: empty list; omit key to key on the client IP"},
		{"http repeated key part", "domain: edge\nhttp_rules:\n  - name: a\n    key: [client_ip, client_ip]\n    rate_limit: {unit: minute, requests_per_unit: 5}\n",
			"limits/api.yaml:4: http_rules[0].key[1]: key part listed twice"},
		{"http missing limit", "domain: edge\nhttp_rules:\n  - name: a\n    key: [client_ip]\n",
			"limits/api.yaml:3: http_rules[0].rate_limit: missing; an http rule needs rate_limit or rate_limits"},
		{"http bad path prefix", "domain: edge\nhttp_rules:\n  - name: a\n    match: {path_prefix: login}\n    rate_limit: {unit: minute, requests_per_unit: 5}\n",
			"limits/api.yaml:4: http_rules[0].match.path_prefix: invalid path prefix \"login\" (want a path starting with /, without query)"},
		{"http bad host", "domain: edge\nhttp_rules:\n  - name: a\n    match: {host: 'api.example.com/x'}\n    rate_limit: {unit: minute, requests_per_unit: 5}\n",
			"limits/api.yaml:4: http_rules[0].match.host: invalid host \"api.example.com/x\" (want a host name such as api.example.com, optionally with :port)"},
		{"http unknown match key", "domain: edge\nhttp_rules:\n  - name: a\n    match: {path: /x}\n    rate_limit: {unit: minute, requests_per_unit: 5}\n",
			"limits/api.yaml:4: http_rules[0].match: unknown key \"path\" (want host, path_prefix, methods)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse("limits/api.yaml", []byte(tt.give))
			if err == nil {
				t.Fatalf("got snapshot %v, want error %q", s.Domains(), tt.want)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("got error type %T, want Errors", err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("got error\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}
