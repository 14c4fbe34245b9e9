package extauthz

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"
)

const edgePerIP = `
domain: edge
http_rules:
  - name: per_ip
    key: [client_ip]
    rate_limit:
      unit: minute
      requests_per_unit: 5
`

func overwrite(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
}

// The exact shapes of an allowed and a denied CheckResponse (NOTES §2).
func TestCheckShape(t *testing.T) {
	b := memoryBackend(t)
	h := serve(t, b, edgePerIP, nil)
	b.startWindow(t, time.Minute, 500*time.Millisecond, 0)
	req := checkReq{source: "198.51.100.7", method: "POST", host: "api.example.com", path: "/login?user=x"}

	got := h.callCheck(t, req)
	want := &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: 0},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{
				overwrite("RateLimit-Policy", `"per_ip";q=5;w=60`),
				overwrite("RateLimit", `"per_ip";r=4;t=60`),
			},
		}},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("allowed response (-want +got):\n%s", diff)
	}
	o := h.obs.last(t)
	wantObs := Observation{Service: "authz", Domain: "edge", Code: OutcomeOK, ClientIP: "198.51.100.7",
		ProxyIP: "198.51.100.7", Method: "POST", Host: "api.example.com", Path: "/login"}
	if diff := cmp.Diff(wantObs, o, cmpopts.IgnoreFields(Observation{}, "Duration", "StoreDuration", "Rules", "ConfigVersion")); diff != "" {
		t.Errorf("observation (-want +got):\n%s", diff)
	}
	if len(o.Rules) != 1 || o.Rules[0].Rule.Name != "per_ip" || !o.Rules[0].Result.Allowed || o.Rules[0].Result.Remaining != 4 {
		t.Errorf("got rules %+v, want per_ip allowed with 4 remaining", o.Rules)
	}

	for range 4 {
		h.callCheck(t, req)
	}
	got = h.callCheck(t, req)
	body := got.GetDeniedResponse().GetBody()
	want = &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: 8, Message: "rate limited"},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_TooManyRequests},
			Headers: []*corev3.HeaderValueOption{
				overwrite("RateLimit-Policy", `"per_ip";q=5;w=60`),
				overwrite("RateLimit", `"per_ip";r=0;t=60`),
				overwrite("Retry-After", "60"),
				overwrite("content-type", "application/problem+json"),
			},
			Body: body,
		}},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("denied response (-want +got):\n%s", diff)
	}
	var p problem
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	wantP := problem{Type: "about:blank", Title: "Too Many Requests", Status: 429, RetryAfter: 60,
		Detail: `rate limit "per_ip" exceeded: 5 requests per 1m0s; retry in 60 s`}
	if diff := cmp.Diff(wantP, p); diff != "" {
		t.Errorf("problem body (-want +got):\n%s", diff)
	}
	if o := h.obs.last(t); o.Code != OutcomeOverLimit {
		t.Errorf("got outcome %v, want over_limit", o.Code)
	}
}

// B28: with trusted hops 1 (only the calling Envoy), a client-supplied X-Forwarded-For is never the key.
func TestSpoofedXFFB28(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		h := serve(t, b, edgePerIP, func(o *Options) { o.TrustedProxyHops = 1 })
		b.startWindow(t, time.Minute, 100*time.Millisecond, 3*time.Second)
		ok := 0
		for i := 1; i <= 20; i++ {
			c := h.callCheck(t, checkReq{source: "203.0.113.7", xff: "198.51.100." + strconv.Itoa(i) + ", 203.0.113.7"})
			if allowed(t, c) {
				ok++
			}
			if o := h.obs.last(t); o.ClientIP != "203.0.113.7" {
				t.Errorf("call %d: got client %q, want 203.0.113.7", i, o.ClientIP)
			}
		}
		if ok != 5 {
			t.Errorf("got %d allowed of 20, want 5", ok)
		}
		if got := h.countChecks(t, 20, checkReq{source: "203.0.113.8"}); got != 5 {
			t.Errorf("without XFF: got %d allowed of 20, want 5", got)
		}
		if b.client != nil {
			for _, k := range b.keys(t) {
				if strings.Contains(k, "198.51.100") {
					t.Errorf("redis key %q contains the spoofed address", k)
				}
			}
		}
	})
}

// B29: IPv6 clients share their /64; spellings of one address share a bucket.
func TestIPv6PrefixB29(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		h := serve(t, b, edgePerIP, nil)
		b.startWindow(t, time.Minute, 100*time.Millisecond, 4*time.Second)
		ok := 0
		for i := 1; i <= 20; i++ {
			if allowed(t, h.callCheck(t, checkReq{source: "2001:db8:1:2::" + strconv.FormatInt(int64(i), 16)})) {
				ok++
			}
		}
		if ok != 5 {
			t.Errorf("one /64: got %d allowed of 20, want 5", ok)
		}
		if o := h.obs.last(t); o.ClientIP != "2001:db8:1:2::/64" {
			t.Errorf("got client key %q, want 2001:db8:1:2::/64", o.ClientIP)
		}
		if !allowed(t, h.callCheck(t, checkReq{source: "2001:db8:1:3::1"})) {
			t.Error("another /64 was denied")
		}
		for _, pair := range [][2]string{
			{"2001:db8:a::1", "2001:0db8:000a:0000:0000:0000:0000:0001"},
			{"::ffff:198.51.100.7", "198.51.100.7"},
		} {
			ok := 0
			for i := range 6 {
				if allowed(t, h.callCheck(t, checkReq{source: pair[i%2]})) {
					ok++
				}
			}
			if ok != 5 {
				t.Errorf("%s and %s: got %d allowed of 6, want 5 (one bucket)", pair[0], pair[1], ok)
			}
		}
	})
}

// B47: behind trusted proxy networks the client is the first untrusted X-Forwarded-For entry.
func TestTrustedProxiesB47(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		h := serve(t, b, edgePerIP, func(o *Options) { o.TrustedProxies = mustPrefixes(t, "10.0.0.0/8") })
		b.startWindow(t, time.Minute, 100*time.Millisecond, 3*time.Second)
		for _, client := range []string{"198.51.100.1", "198.51.100.2"} {
			ok := 0
			for range 6 {
				c := h.callCheck(t, checkReq{source: "10.0.0.5", xff: client + ", 10.0.0.5"})
				if allowed(t, c) {
					ok++
				}
				if o := h.obs.last(t); o.ClientIP != client || o.ProxyIP != "10.0.0.5" {
					t.Errorf("got client %q proxy %q, want %s and 10.0.0.5", o.ClientIP, o.ProxyIP, client)
				}
			}
			if ok != 5 {
				t.Errorf("client %s: got %d allowed of 6, want 5", client, ok)
			}
		}
	})
}

const edgeMissing = `
domain: edge
http_rules:
  - name: fallback
    match:
      path_prefix: /fallback
    key: [{header: x-api-key}]
    rate_limit:
      unit: minute
      requests_per_unit: 2
  - name: skip
    match:
      path_prefix: /skip
    key: [{header: x-api-key}]
    on_missing: skip
    rate_limit:
      unit: minute
      requests_per_unit: 2
  - name: deny
    match:
      path_prefix: /deny
    key: [{header: x-api-key}]
    on_missing: deny
    rate_limit:
      unit: minute
      requests_per_unit: 2
  - name: jwt
    match:
      path_prefix: /jwt
    key: [{jwt_claim: sub}]
    on_missing: deny
    rate_limit:
      unit: minute
      requests_per_unit: 2
  - name: user_header
    match:
      path_prefix: /user
      methods: [GET]
      host: users.example.com
    key: [{header: x-user}, path]
    rate_limit:
      unit: minute
      requests_per_unit: 2
`

func TestMissingKey(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		h := serve(t, b, edgeMissing, nil)
		b.startWindow(t, time.Minute, 100*time.Millisecond, 3*time.Second)
		key := map[string]string{"x-api-key": "k1"}

		// client_ip (default): keyed on the client, per client, apart from keyed requests.
		if got := h.countChecks(t, 3, checkReq{source: "192.0.2.1", path: "/fallback"}); got != 2 {
			t.Errorf("fallback 192.0.2.1: got %d allowed of 3, want 2", got)
		}
		if got := h.countChecks(t, 3, checkReq{source: "192.0.2.2", path: "/fallback"}); got != 2 {
			t.Errorf("fallback 192.0.2.2: got %d allowed of 3, want 2", got)
		}
		if got := h.countChecks(t, 3, checkReq{source: "192.0.2.1", path: "/fallback", headers: key}); got != 2 {
			t.Errorf("fallback with key: got %d allowed of 3, want 2", got)
		}

		// skip: not limited without the key, no store call.
		before := h.store.decides.Load()
		if got := h.countChecks(t, 5, checkReq{source: "192.0.2.1", path: "/skip"}); got != 5 {
			t.Errorf("skip: got %d allowed of 5, want 5", got)
		}
		if got := h.store.decides.Load() - before; got != 0 {
			t.Errorf("skip: got %d store calls, want 0", got)
		}
		if got := h.countChecks(t, 3, checkReq{source: "192.0.2.1", path: "/skip", headers: key}); got != 2 {
			t.Errorf("skip with key: got %d allowed of 3, want 2", got)
		}

		// deny: 400 at once (a client error, not a rate), nothing counted.
		before = h.store.decides.Load()
		c := h.callCheck(t, checkReq{source: "192.0.2.1", path: "/deny"})
		wantMissing(t, c, "missing header x-api-key required by rule deny")
		if got := h.store.decides.Load() - before; got != 0 {
			t.Errorf("deny: got %d store calls, want 0", got)
		}
		if o := h.obs.last(t); o.Code != OutcomeInvalid {
			t.Errorf("deny: got outcome %v, want invalid", o.Code)
		}
		if got := h.countChecks(t, 3, checkReq{source: "192.0.2.1", path: "/deny", headers: key}); got != 2 {
			t.Errorf("deny with key: got %d allowed of 3, want 2", got)
		}
	})
}

// wantMissing checks the on_missing: deny answer: status INVALID_ARGUMENT, HTTP 400, a problem body with
// detail, no Retry-After and no rate limit headers.
func wantMissing(t testing.TB, c *authv3.CheckResponse, detail string) {
	t.Helper()
	want := &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: 3, Message: "missing rate limit key"},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_BadRequest},
			Headers: []*corev3.HeaderValueOption{overwrite("content-type", "application/problem+json")},
			Body:    c.GetDeniedResponse().GetBody(),
		}},
	}
	if diff := cmp.Diff(want, c, protocmp.Transform()); diff != "" {
		t.Errorf("missing key response (-want +got):\n%s", diff)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(c.GetDeniedResponse().GetBody()), &got); err != nil {
		t.Fatalf("body %q: %v", c.GetDeniedResponse().GetBody(), err)
	}
	wantP := map[string]any{"type": "about:blank", "title": "Bad Request", "status": float64(400), "detail": detail}
	if diff := cmp.Diff(wantP, got); diff != "" {
		t.Errorf("missing key problem (-want +got):\n%s", diff)
	}
}

func jwtMeta(t testing.TB, claims map[string]any) *corev3.Metadata {
	t.Helper()
	payload, err := structpb.NewStruct(map[string]any{"my_provider": claims})
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{jwtFilter: payload}}
}

func TestJWTClaimKey(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		h := serve(t, b, edgeMissing, nil)
		b.startWindow(t, time.Minute, 100*time.Millisecond, 3*time.Second)
		alice := checkReq{source: "192.0.2.1", path: "/jwt", meta: jwtMeta(t, map[string]any{"sub": "alice"})}
		if got := h.countChecks(t, 3, alice); got != 2 {
			t.Errorf("alice: got %d allowed of 3, want 2", got)
		}
		// Same client IP, another subject: its own bucket.
		bob := checkReq{source: "192.0.2.1", path: "/jwt", meta: jwtMeta(t, map[string]any{"sub": "bob"})}
		if got := h.countChecks(t, 3, bob); got != 2 {
			t.Errorf("bob: got %d allowed of 3, want 2", got)
		}
		num := checkReq{source: "192.0.2.1", path: "/jwt", meta: jwtMeta(t, map[string]any{"sub": 12345.0})}
		if got := h.countChecks(t, 3, num); got != 2 {
			t.Errorf("numeric sub: got %d allowed of 3, want 2", got)
		}
		// Claim absent (other claims only) and metadata absent: on_missing deny.
		for _, c := range []checkReq{
			{source: "192.0.2.1", path: "/jwt", meta: jwtMeta(t, map[string]any{"iss": "x"})},
			{source: "192.0.2.1", path: "/jwt"},
		} {
			wantMissing(t, h.callCheck(t, c), "missing jwt_claim sub required by rule jwt")
		}
	})
}

// Headers from the lower-case map and from the raw header_map count the same.
func TestHeaderForms(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		h := serve(t, b, edgeMissing, func(o *Options) { o.TrustedProxyHops = 2 })
		b.startWindow(t, time.Minute, 100*time.Millisecond, 3*time.Second)
		base := checkReq{source: "203.0.113.7", host: "users.example.com:8443", path: "/user/1?a=1"}
		mapped := base
		mapped.headers = map[string]string{"x-user": "u1"}
		raw := base
		raw.path = "/user/1?a=2" // the query string is not part of the path key
		raw.raw = []*corev3.HeaderValue{
			{Key: "X-User", RawValue: []byte("u1")},
			{Key: "x-forwarded-for", Value: "198.51.100.5"},
			{Key: "x-forwarded-for", Value: "203.0.113.7"},
		}
		if !allowed(t, h.callCheck(t, mapped)) || !allowed(t, h.callCheck(t, raw)) {
			t.Fatal("first two calls denied")
		}
		if o := h.obs.last(t); o.ClientIP != "198.51.100.5" {
			t.Errorf("raw repeated x-forwarded-for: got client %q, want 198.51.100.5 (2nd from the right)", o.ClientIP)
		}
		if allowed(t, h.callCheck(t, mapped)) {
			t.Error("third call allowed: the two header forms did not share a bucket")
		}
		// Another method or host does not match the rule: no limit.
		post := mapped
		post.method = "POST"
		other := mapped
		other.host = "other.example.com"
		for _, c := range []checkReq{post, other} {
			if got := h.countChecks(t, 3, c); got != 3 {
				t.Errorf("non-matching %s %s: got %d allowed of 3, want 3", c.method, c.host, got)
			}
		}
	})
}

// Odd and oversized input is answered, never a panic or a gRPC error.
func TestCheckOddInput(t *testing.T) {
	h := serve(t, memoryBackend(t), edgeMissing+`
  - name: everything
    key: [client_ip, method, host, path, {header: x-api-key, hash: true}]
    rate_limit:
      unit: minute
      requests_per_unit: 1000
`, nil)
	many := map[string]string{}
	for i := range 10000 {
		many["x-h-"+strconv.Itoa(i)] = "v"
	}
	huge := strings.Repeat("\x00x{}", 1<<18) // 1 MiB with NUL bytes and braces
	reqs := map[string]*authv3.CheckRequest{
		"empty":       {},
		"no http":     {Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}},
		"no source":   checkReq{path: "/fallback"}.proto(),
		"10k headers": checkReq{source: "192.0.2.9", headers: many}.proto(),
		"1 MiB value": checkReq{source: "192.0.2.9", headers: map[string]string{"x-api-key": huge, "x-user": huge}, path: "/user"}.proto(),
		"1 MiB path":  checkReq{source: "192.0.2.9", path: "/" + huge}.proto(),
		"pipe source": {Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/tmp/x"}}}}}},
		"raw invalid utf8": checkReq{source: "192.0.2.9", raw: []*corev3.HeaderValue{
			{Key: "x-api-key", RawValue: []byte{0xff, 0xfe, 0x00}},
			{Key: "x-forwarded-for", RawValue: []byte{0xff}},
		}, path: "/deny"}.proto(),
	}
	for name, req := range reqs {
		t.Run(name, func(t *testing.T) {
			resp, err := h.authz.Check(ctxT(t), req)
			if err != nil {
				t.Fatalf("got error %v", err)
			}
			allowed(t, resp) // fails on anything but a well-formed allow or 429
		})
	}
}

func TestCheckUnknownDomain(t *testing.T) {
	h := serve(t, memoryBackend(t), edgePerIP, nil)
	for range 10 {
		if !allowed(t, h.callCheck(t, checkReq{source: "192.0.2.1", ext: map[string]string{"domain": "nope"}})) {
			t.Fatal("unknown domain denied")
		}
	}
	if got := h.store.decides.Load(); got != 0 {
		t.Errorf("got %d store calls, want 0", got)
	}
}
