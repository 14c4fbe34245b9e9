package envoy

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/config"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(data)
}

func exampleLimits(t *testing.T) limitDomains {
	t.Helper()
	limits, err := loadLimitDomains("../examples")
	if err != nil {
		t.Fatalf("load example limits: %v", err)
	}
	return limits
}

func TestEnvoyYAMLIsValid(t *testing.T) {
	facts, err := validateEnvoy([]byte(readFile(t, "envoy.yaml")), exampleLimits(t))
	if err != nil {
		t.Fatalf("envoy.yaml is invalid:\n%v", err)
	}
	want := &envoyFacts{
		ListenerPorts: []uint32{10000},
		AdminAddress:  "0.0.0.0",
		AdminPort:     9901,
		Clusters: map[string][]hostPort{
			"floodgate": {{"floodgate", 8081}},
			"upstream":  {{"upstream", 8080}},
		},
		XFFTrustedHops:   0,
		ExtAuthzTimeout:  50 * time.Millisecond,
		RateLimitTimeout: 20 * time.Millisecond,
	}
	if diff := cmp.Diff(want, facts, cmpopts.IgnoreFields(envoyFacts{}, "Descriptors", "AuthzDomains")); diff != "" {
		t.Errorf("envoy.yaml facts (-want +got):\n%s", diff)
	}
}

// TestEnvoyDescriptorsMatchConfig cross-checks the descriptors envoy.yaml produces against the real
// config package (config.Load of ../examples, Snapshot.Match), not only against this test's reading of
// the YAML: each must, for some request values, match a rule that limits (or is unlimited).
func TestEnvoyDescriptorsMatchConfig(t *testing.T) {
	limits := exampleLimits(t)
	facts, err := validateEnvoy([]byte(readFile(t, "envoy.yaml")), limits)
	if err != nil {
		t.Fatalf("envoy.yaml is invalid:\n%v", err)
	}
	snap, err := config.Load("../examples")
	if err != nil {
		t.Fatalf("config.Load(../examples): %v", err)
	}
	if diff := cmp.Diff(limits.names(), snap.Domains()); diff != "" {
		t.Errorf("domains (-this test's reading +config.Load):\n%s", diff)
	}
	for _, d := range facts.AuthzDomains {
		if len(snap.HTTPRules(d)) == 0 {
			t.Errorf("ext_authz domain %q: got no http_rules from config.Load, want some", d)
		}
	}
	if len(facts.Descriptors) < 7 {
		t.Fatalf("got %d descriptors from envoy.yaml, want at least 7", len(facts.Descriptors))
	}
	for _, d := range facts.Descriptors {
		var tried []string
		matched := ""
		for _, values := range limits[d.Domain].samples(d.Descriptor) {
			entries := make([]config.Entry, len(values))
			for i, v := range values {
				entries[i] = config.Entry{Key: d.Descriptor[i].key, Value: v}
			}
			tried = append(tried, fmt.Sprint(entries))
			if rule, ok := snap.Match(d.Domain, entries); ok && (rule.Unlimited || len(rule.Limits) > 0) {
				matched = rule.Name
				break
			}
		}
		if matched == "" {
			t.Errorf("%s: descriptor %s: got no limiting rule from config.Match for any of %v, want one", d.Path, d.Descriptor, tried)
			continue
		}
		t.Logf("%s: %s → rule %s", d.Path, d.Descriptor, matched)
	}
}

// mutation turns the valid file into a broken one; it fails the test if its anchor text is gone, so a
// mutation can never silently test the unmodified file.
type mutation func(t *testing.T, s string) string

// replace substitutes the only occurrence of old.
func replace(old, new string) mutation {
	return func(t *testing.T, s string) string {
		t.Helper()
		if n := strings.Count(s, old); n != 1 {
			t.Fatalf("mutation anchor %q occurs %d times, want 1", old, n)
		}
		return strings.Replace(s, old, new, 1)
	}
}

// moveBefore cuts block out and inserts it before anchor.
func moveBefore(block, anchor string) mutation {
	return func(t *testing.T, s string) string {
		t.Helper()
		s = replace(block, "")(t, s)
		return replace(anchor, block+anchor)(t, s)
	}
}

const routerBlock = `                  # The router must be the last HTTP filter.
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
`

const h2Block = `      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config:
            http2_protocol_options:
              # Envoy pings idle connections every 30s (±15 % jitter); Floodgate's keepalive policy accepts
              # pings 5s apart or more, so it does not answer with GOAWAY "too_many_pings".
              connection_keepalive:
                interval: "30s"
                timeout: "5s"
`

func TestEnvoyYAMLRejectsBrokenFiles(t *testing.T) {
	valid := readFile(t, "envoy.yaml")
	limits := exampleLimits(t)
	tests := []struct {
		name     string
		give     mutation
		wantErr  string
		alsoWant string // a second part of the message, if any
	}{
		{
			name:    "router not last",
			give:    moveBefore(routerBlock, "                  - name: envoy.filters.http.ratelimit\n"),
			wantErr: "the router (envoy.filters.http.router) must be the last HTTP filter",
		},
		{
			name:    "missing gRPC cluster",
			give:    replace("envoy_grpc: {cluster_name: floodgate}\n                        # Envoy's", "envoy_grpc: {cluster_name: floodgate-grpc}\n                        # Envoy's"),
			wantErr: `envoy_grpc cluster "floodgate-grpc" is not defined`,
		},
		{
			name:    "missing route cluster",
			give:    replace("- match: {prefix: /}\n                          route:\n                            cluster: upstream", "- match: {prefix: /}\n                          route:\n                            cluster: app"),
			wantErr: `route cluster "app" is not defined`,
		},
		{
			name:     "unquoted duration",
			give:     replace(`timeout: "0.02s"`, `timeout: 0.02`),
			wantErr:  "http_filters[1].typed_config.timeout: proto: syntax error",
			alsoWant: `unexpected token 0.02 (durations are quoted strings such as "0.25s")`,
		},
		{
			name: "duration without seconds unit",
			give: replace(`connect_timeout: "0.25s"
      lb_policy: ROUND_ROBIN
      typed_extension_protocol_options`, `connect_timeout: "250ms"
      lb_policy: ROUND_ROBIN
      typed_extension_protocol_options`),
			wantErr: "google.protobuf.Duration",
		},
		{
			name:    "unknown field",
			give:    replace("    - name: floodgate\n      type: STRICT_DNS\n", "    - name: floodgate\n      type: STRICT_DNS\n      conect_timeout: \"1s\"\n"),
			wantErr: `unknown field "conect_timeout"`,
		},
		{
			name:    "duplicate key",
			give:    replace("    - name: floodgate\n      type: STRICT_DNS\n", "    - name: floodgate\n      type: STRICT_DNS\n      type: STATIC\n"),
			wantErr: `key "type" already set in map`,
		},
		{
			name:    "gRPC cluster on HTTP/1",
			give:    replace(h2Block, ""),
			wantErr: `cluster "floodgate": used by envoy_grpc but not HTTP/2`,
		},
		{
			name:    "gRPC cluster without gRPC health check",
			give:    replace("          grpc_health_check: {}\n", "          http_health_check: {path: /healthz}\n"),
			wantErr: `cluster "floodgate": used by envoy_grpc but has no grpc_health_check`,
		},
		{
			name:    "ext_authz without transport_api_version",
			give:    replace("                      transport_api_version: V3\n                      # Floodgate unreachable", "                      # Floodgate unreachable"),
			wantErr: "transport_api_version is AUTO, must be V3",
		},
		{
			name:    "ratelimit service on V2",
			give:    replace("                          envoy_grpc: {cluster_name: floodgate}\n                        transport_api_version: V3", "                          envoy_grpc: {cluster_name: floodgate}\n                        transport_api_version: V2"),
			wantErr: "rate_limit_service.transport_api_version is V2, must be V3",
		},
		{
			name:    "typo inside a typed_config Any",
			give:    replace("failure_mode_allow: true", "failure_mode_alow: true"),
			wantErr: `unknown field "failure_mode_alow"`,
		},
		{
			name:    "unknown extension type",
			give:    replace("envoy.extensions.filters.http.router.v3.Router", "envoy.extensions.filters.http.router.v3.Routr"),
			wantErr: "envoy.extensions.filters.http.router.v3.Routr",
		},
		{
			name:    "validation rule inside an Any",
			give:    replace("                      stage: 0\n", "                      stage: 11\n"),
			wantErr: "RateLimit.Stage: value must be less than or equal to 10",
		},
		{
			name:    "validation rule of the bootstrap",
			give:    replace("port_value: 8081", "port_value: 80810"),
			wantErr: "PortValue: value must be less than or equal to 65535",
		},
		{
			name:    "not the edge",
			give:    replace("use_remote_address: true", "use_remote_address: false"),
			wantErr: "use_remote_address must be true",
		},
		{
			name:    "ratelimit domain unknown",
			give:    replace("domain: api\n", "domain: apis\n"),
			wantErr: `domain "apis" is not a domain of the example limits (api, edge)`,
		},
		{
			name:    "ext_authz domain unknown",
			give:    replace("domain: edge\n", "domain: edges\n"),
			wantErr: `ext_authz domain "edges" is not a domain of the example limits`,
		},
		{
			name:    "ext_authz domain without http_rules",
			give:    replace("domain: edge\n", "domain: api\n                              other: x\n"),
			wantErr: `ext_authz domain "api" has no http_rules`,
		},
		{
			name:    "descriptor key not in the domain",
			give:    replace("descriptor_key: user\n", "descriptor_key: users\n"),
			wantErr: "descriptor (users=<from request>) matches no limited descriptor of domain \"api\"",
		},
		{
			name:    "fixed descriptor value not in the domain",
			give:    replace("descriptor_value: /reports\n", "descriptor_value: /report\n"),
			wantErr: "descriptor (endpoint=/report) matches no limited descriptor",
		},
		{
			name:    "descriptor deeper than the config",
			give:    replace("                                header_name: x-client-id\n                                descriptor_key: client_id\n", "                                header_name: x-client-id\n                                descriptor_key: client_id\n                            - remote_address: {}\n"),
			wantErr: "descriptor (client_id=<from request>, remote_address=<from request>) matches no limited descriptor",
		},
		{
			name:    "rate limit stage never sent",
			give:    replace("                        - actions:\n                            - remote_address: {}\n", "                        - stage: 1\n                          actions:\n                            - remote_address: {}\n"),
			wantErr: "stage 1, but the ratelimit filter runs stage 0",
		},
		{
			name:    "per-route config for a missing filter",
			give:    replace("                        envoy.filters.http.ext_authz:\n", "                        envoy.filters.http.extauthz:\n"),
			wantErr: `no HTTP filter is named "envoy.filters.http.extauthz"`,
		},
		{
			name:    "per-route config of the wrong type",
			give:    replace("envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute\n                              vh_rate_limits: INCLUDE", "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute\n                              disabled: true"),
			wantErr: `the envoy.extensions.filters.http.ratelimit.v3.RateLimit filter takes "envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			broken := tt.give(t, valid)
			_, err := validateEnvoy([]byte(broken), limits)
			if err == nil {
				t.Fatalf("got no error, want one containing %q", tt.wantErr)
			}
			// protobuf-go randomly puts a non-breaking space in its messages to stop exact matching.
			msg := strings.ReplaceAll(err.Error(), "\u00a0", " ")
			for _, want := range []string{tt.wantErr, tt.alsoWant} {
				if !strings.Contains(msg, want) {
					t.Errorf("got error\n%v\nwant it to contain %q", err, want)
				}
			}
		})
	}
}

func TestWildcardMatch(t *testing.T) {
	tests := []struct {
		pattern, give string
		want          bool
	}{
		{"/api/*", "/api/x", true},
		{"/api/*", "/api/", true},
		{"/api/*", "/ap", false},
		{"/api/*/export", "/api/a/b/export", true},
		{"/api/*/export", "/api/export", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "acb", false},
		{"ab*ba", "aba", false},
		{"exact", "exact", true},
		{"exact", "exact2", false},
	}
	for _, tt := range tests {
		if got := wildcardMatch(tt.pattern, tt.give); got != tt.want {
			t.Errorf("wildcardMatch(%q, %q): got %v, want %v", tt.pattern, tt.give, got, tt.want)
		}
	}
}
