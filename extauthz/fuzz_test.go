package extauthz

import (
	"context"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/floodgate/floodgate/limiter"
)

const fuzzLimits = `
domain: api
descriptors:
  - key: user
    rate_limit:
      unit: second
      requests_per_unit: 3
  - key: path
    value: /api/*
    rate_limit:
      algorithm: sliding_window
      unit: minute
      requests_per_unit: 2
  - key: tb
    rate_limit:
      algorithm: token_bucket
      unit: second
      requests_per_unit: 1
      burst: 2
  - key: unl
    rate_limit:
      unlimited: true
  - key: zero
    rate_limit:
      unit: second
      requests_per_unit: 0
  - key: group
    rate_limit:
      unit: minute
      requests_per_unit: 10
    descriptors:
      - key: route
        rate_limit:
          name: route
          unit: minute
          requests_per_unit: 1
          replaces:
            - name: api.group
http_rules:
  - name: ip
    key: [client_ip]
    rate_limit:
      unit: second
      requests_per_unit: 5
  - name: keyed
    match:
      path_prefix: /k
    key: [{header: x-key, hash: true}, method, host, path, {jwt_claim: sub}]
    on_missing: deny
    rate_limit:
      unit: minute
      requests_per_unit: 2
  - name: skip
    match:
      path_prefix: /s
    key: [{header: x-key}]
    on_missing: skip
    rate_limit:
      unit: minute
      requests_per_unit: 1
`

func fuzzService(t testing.TB, o Options) *Service {
	t.Helper()
	o.Limits = staticLimits{mustParse(t, fuzzLimits)}
	o.Store = limiter.NewMemory(limiter.MemoryOptions{Now: (&fakeClock{t: epoch}).Now})
	o.Logger = discard()
	svc, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// FuzzDescriptors: any request gets a well-formed response or InvalidArgument (called directly, so the
// values may be invalid UTF-8, which gRPC would refuse before the handler).
func FuzzDescriptors(f *testing.F) {
	f.Add("api", "user=u1", uint32(0), int64(-1), false, int32(-1), uint32(0), uint32(0))
	f.Add("api", "path=/api/x\ngroup=g,route=r\ngroup=g", uint32(3), int64(0), true, int32(2), uint32(5), uint32(1))
	f.Add("api", "unl=1\nzero=z\ntb=\xff\xfe", uint32(1), int64(1<<52), false, int32(0), uint32(0), uint32(0))
	f.Add("", "=\n\n,", uint32(0), int64(5), false, int32(9), uint32(1), uint32(0))
	f.Add("nope", "a=b", uint32(7), int64(2), true, int32(6), uint32(1<<31), uint32(1<<31))
	svc := fuzzService(f, Options{})
	f.Fuzz(func(t *testing.T, domain, spec string, hits uint32, wrapper int64, negative bool, unit int32, rpu, mult uint32) {
		req := &rlsv3.RateLimitRequest{Domain: domain, HitsAddend: hits}
		for i, line := range strings.Split(spec, "\n") {
			d := &ratelimitv3.RateLimitDescriptor{IsNegativeHits: negative && i%2 == 0}
			for _, kv := range strings.Split(line, ",") {
				if kv == "" {
					continue
				}
				k, v, _ := strings.Cut(kv, "=")
				d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: k, Value: v})
			}
			if wrapper >= 0 && i%3 == 1 {
				d.HitsAddend = wrapperspb.UInt64(uint64(wrapper))
			}
			if unit >= 0 && i%2 == 1 {
				d.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: rpu, Unit: typev3.RateLimitUnit(unit)}
				if mult != 1 {
					d.Limit.UnitMultiplier = wrapperspb.UInt32(mult)
				}
			}
			req.Descriptors = append(req.Descriptors, d)
		}
		resp, err := svc.ShouldRateLimit(context.Background(), req)
		if err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("got %v, want a response or InvalidArgument", err)
			}
			return
		}
		if len(resp.GetStatuses()) != len(req.GetDescriptors()) {
			t.Fatalf("got %d statuses for %d descriptors", len(resp.GetStatuses()), len(req.GetDescriptors()))
		}
		overall := resp.GetOverallCode()
		if overall != rlsv3.RateLimitResponse_OK && overall != rlsv3.RateLimitResponse_OVER_LIMIT {
			t.Fatalf("overall_code %v", overall)
		}
		anyOver := false
		for _, st := range resp.GetStatuses() {
			anyOver = anyOver || st.GetCode() == rlsv3.RateLimitResponse_OVER_LIMIT
			if d := st.GetDurationUntilReset(); d != nil && d.AsDuration() <= 0 {
				t.Fatalf("duration_until_reset %v", d.AsDuration())
			}
		}
		if anyOver != (overall == rlsv3.RateLimitResponse_OVER_LIMIT) {
			t.Fatalf("overall %v but statuses %v", overall, resp.GetStatuses())
		}
	})
}

// FuzzCheckRequest: any CheckRequest is allowed or denied with 429 (or 400 for a missing key), never an
// error or a panic.
func FuzzCheckRequest(f *testing.F) {
	f.Add("203.0.113.7", "198.51.100.1, 203.0.113.7", "/k/x?y", "h.example", "GET", "x-key", "v", "s", false, 1)
	f.Add("::ffff:1.2.3.4", "", "/s", "", "", "x-key", "", "", true, 0)
	f.Add("", "\xff,\x00", "/k", "h:99", "POST", "X-KEY", "\xff", "sub", true, 3)
	f.Add("fe80::1%lo", "[::1]:80", "", "[::1]:8080", "PATCH", "", "", "\x00", false, 2)
	svcs := []*Service{
		fuzzService(f, Options{}),
		fuzzService(f, Options{TrustedProxyHops: 2, Headers: HeadersBoth, IPv6Prefix: 48, IPv4Prefix: 24}),
		fuzzService(f, Options{TrustedProxies: mustPrefixes(f, "10.0.0.0/8", "::1/128"), Shadow: true}),
	}
	f.Fuzz(func(t *testing.T, source, xff, path, host, method, hname, hval, claim string, raw bool, which int) {
		if which < 0 {
			which = -which
		}
		svc := svcs[which%len(svcs)]
		c := checkReq{source: source, xff: xff, path: path, host: host, method: method,
			headers: map[string]string{hname: hval}, ext: map[string]string{"domain": "api"}}
		if claim != "" {
			// Built by hand: structpb.NewStruct refuses invalid UTF-8, Envoy's metadata need not be valid.
			payload := &structpb.Struct{Fields: map[string]*structpb.Value{"sub": structpb.NewStringValue(claim)}}
			c.meta = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{jwtFilter: {
				Fields: map[string]*structpb.Value{"provider": structpb.NewStructValue(payload)}}}}
		}
		if raw {
			c.raw = []*corev3.HeaderValue{{Key: hname, RawValue: []byte(hval)}, {Key: "x-forwarded-for", Value: xff},
				{Key: hname, Value: hval}}
		}
		req := c.proto()
		if which%5 == 4 {
			req = &authv3.CheckRequest{}
		}
		resp, err := svc.Check(context.Background(), req)
		if err != nil {
			t.Fatalf("got error %v", err)
		}
		switch resp.GetStatus().GetCode() {
		case 0:
			if resp.GetOkResponse() == nil {
				t.Fatalf("status 0 without ok_response: %v", resp)
			}
		case 8:
			if resp.GetDeniedResponse().GetStatus().GetCode() != 429 {
				t.Fatalf("status 8 without HTTP 429: %v", resp)
			}
		case 3: // on_missing: deny
			if resp.GetDeniedResponse().GetStatus().GetCode() != 400 {
				t.Fatalf("status 3 without HTTP 400: %v", resp)
			}
		default:
			t.Fatalf("unexpected status %v", resp.GetStatus())
		}
	})
}
