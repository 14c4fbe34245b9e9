// Package envoy holds the Envoy configuration that puts Floodgate in front of an application
// (envoy.yaml) and the tests that prove it, and the deployment files around it, are consistent.
// It has no Go API: the package exists for its tests.
//
// Invariants the tests enforce, without an Envoy binary or a Docker engine:
//   - envoy.yaml is strict YAML (no duplicate keys) of the Envoy v3 API of the go-control-plane envoy
//     module in go.mod (v1.40.0 = Envoy v1.40): it unmarshals into a Bootstrap with no unknown fields,
//     durations are quoted strings, every typed_config (google.protobuf.Any) names an extension the test
//     knows, and the Bootstrap and every message inside every Any pass their protoc-gen-validate rules.
//   - Semantics Envoy would only report at runtime, or never: every referenced cluster exists, gRPC
//     clusters speak HTTP/2 and are gRPC-health-checked, the router is the last HTTP filter, ext_authz and
//     ratelimit use transport_api_version V3, the listener uses the remote address (Envoy is the edge),
//     per-route filter configs name an existing filter, the ratelimit domain and the ext_authz context
//     extension "domain" exist in examples/, and every descriptor the rate_limits actions can produce
//     reaches a limited node of that domain.
//   - docker-compose.yaml, the Dockerfile, .dockerignore and deploy/prometheus/prometheus.yml agree with
//     envoy.yaml and with each other: service names and ports of Envoy's clusters, Floodgate's flags,
//     Prometheus' scrape targets and paths, the image versions (Envoy image = envoy module release, Go
//     builder = go.mod), EXPOSEd ports, mounted files that exist, and build inputs not docker-ignored.
//
// Each check has a table test feeding a mutated copy of the files, so a broken file fails the build.
package envoy
